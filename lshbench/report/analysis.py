"""The tidy points behind ``lshbench report``: runs loaded, rows normalized, series, slices.

Everything here is pandas/NumPy; no plotting. The report reads sweep tables (docs/design.md
section 7), one per results directory ("run"), and turns them into

* *series*: one line of a plot, i.e. one configuration of one run whose sequence length L
  varies. Axes that are a function of L inside a series (``n_buckets`` under the default
  rule ``2L/chunk_len``, ``batch`` when ``batch * L`` is held fixed) are absorbed into the
  series; repeated seeds are folded by the median.
* *points*: one row per (series, L) with median metrics over its ``ok`` rows, or the status
  of its failure.

The tables built on the points live next door: fits and crossovers in
:mod:`lshbench.report.scaling`, the Pareto front and error budgets in
:mod:`lshbench.report.tradeoffs`, the flattened metadata in :mod:`lshbench.report.metadata`.

A *run* of the report is one machine's rows of one results directory: a directory holding
several machines' rows (``machine_id``) is split into one run per machine, so that two
machines are never merged into one line (:mod:`lshbench.report.machines` labels them). On
one machine only the newest ``code_id``'s rows are kept (older code is superseded).

Times are per sequence, ``time_median_s / batch`` (seconds), so that runs with different
batch sizes compare; memory is bytes per call. Every output is sorted, so the same tables
give the same report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lshbench.core.config import ConfigError, fail
from lshbench.report.columns import (
    DEFAULT_METHOD,
    DEFAULT_WEIGHTING,
    METHOD_ORDER,
    OPTIONAL_NUMERIC,
    REQUIRED_COLUMNS,
    input_label,
    with_optional_columns,
)
from lshbench.report.labels import bucket_label, bucket_total
from lshbench.report.machines import machine_facts, machine_label, newest_code
from lshbench.results.columns import TRACEMALLOC_BLIND
from lshbench.results.store import RESULT_FILES, load_results
from lshbench.util import one_line

__all__ = [
    "COMMON_AXES",
    "LSH_AXES",
    "REFERENCE_BACKEND",
    "REFERENCE_LSH_BACKEND",
    "REQUIRED_COLUMNS",
    "SERIES_KEY",
    "SPREAD_METRICS",
    "VARIANT_AXES",
    "Run",
    "canon",
    "compact_labels",
    "failed_cells",
    "in_slice",
    "load_run",
    "prepare",
    "reference_slice",
    "series_label",
    "series_points",
    "varying_axes",
]

#: The study's named reference, the exact backend the sweep measures every error against:
#: crossovers and speedups are measured against it. Which backends are exact is read from
#: the rows (see :func:`prepare`), not from their names.
REFERENCE_BACKEND = "dense"
#: The readable reference implementation of LSH attention (docs/design.md section 4): where a run
#: holds several LSH backends, the error figures show this one (errors do not depend on the
#: implementation), or the first by name when it is absent.
REFERENCE_LSH_BACKEND = "numpy"

_NUMERIC = (
    "seqlen", "batch", "d", "dv", "n_hashes", "chunk_len", "chunks_before", "chunks_after",
    "threads", "seed", "time_median_s", *OPTIONAL_NUMERIC,
)  # fmt: skip
#: The variants of docs/design.md section 2b (text; "" for exact backends); ``oracle_k``
#: tells the oracle's two budgets apart (distinct keys, slots).
VARIANT_AXES = ("method", "weighting", "oracle_k")
LSH_AXES = ("n_hashes", "chunk_len", "chunks_before", "chunks_after", *VARIANT_AXES)
#: ``input`` is the input label with its parameters (see ``columns.input_label``).
COMMON_AXES = ("input", "causal", "dtype", "threads", "d", "dv", "pass", "device")
#: Columns that identify a series before the L-dependent axes (nb, batch) are considered.
SERIES_KEY = ("run", "backend", *LSH_AXES, *COMMON_AXES)
#: Metrics folded by the median over the ok rows of one (series, L) point.
_METRICS = (
    "time_seq", "time_tok", "time_median_s", "mem_alloc_peak_bytes", "mem_rss_peak_bytes",
    "mem_model_bytes", "gflops", "tokens_per_s", "attn_tv", "mass_recall", "top1_recall",
    "keys_slots", "keys_distinct", "attn_entropy", "out_err_v", "task_acc", "rel_err",
    "max_abs_err", "cos_sim", "grad_err_qk", "grad_err_v",
)  # fmt: skip
#: Accuracy metrics whose spread over the rows folded into a point (rotation draws,
#: ``--rotation-seeds``, and input seeds) :func:`series_points` keeps: ``<metric>_lo`` and
#: ``<metric>_hi``, the smallest and largest value.
SPREAD_METRICS = ("attn_tv", "mass_recall", "top1_recall", "task_acc", "keys_distinct")
_POINT_ATTRS = (
    *SERIES_KEY, "run_index", "exact", "short", "nb", "nb_total", "batch", "tokens",
    "nb_desc", "batch_desc", "series_order", "input_kind", "target_entropy", "value_corr",
    "local_share",
    "dir", "machine", "machine_id", "method_order",
)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One results directory: its label in the report, its rows (the newest code's on each
    machine), its metadata, and the older code's rows left out (``superseded``: one
    ``{"machine_id", "code_id", "rows", "newest"}`` per code version)."""

    label: str
    path: str
    table: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)
    superseded: tuple[dict[str, Any], ...] = ()


# --------------------------------------------------------------------------- loading


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a sweep directory with :func:`lshbench.load_results`, and its ``metadata.json``.

    Raises ConfigError (one line) when the directory is missing, holds no table, the table
    is empty or lacks a column of :data:`~lshbench.report.columns.REQUIRED_COLUMNS`. Rows of
    older code on a machine that also has newer code's rows are left out
    (:func:`~lshbench.report.machines.newest_code`).
    """
    p = Path(path)
    if not p.is_dir():
        fail("DIR", str(path), "no such directory (give a `lshbench sweep --out` directory)")
    if not any((p / name).is_file() for name in RESULT_FILES):  # what load_results reads
        names = " or ".join(RESULT_FILES)
        fail("DIR", str(path), f"holds no results ({names}; run `lshbench sweep --out DIR`)")
    try:
        table = load_results(p)
    except ConfigError:
        raise
    except Exception as exc:  # a corrupt file: say which, on one line
        fail("DIR", str(path), f"cannot read the results table ({one_line(exc)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        fail("DIR", str(path), f"results table lacks required columns: {', '.join(missing)}")
    if table.empty:
        fail("DIR", str(path), "results table has no rows")
    metadata: dict[str, Any] = {}
    meta_path = p / "metadata.json"
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            metadata = {"error": f"metadata.json unreadable: {exc}"}
    if not isinstance(metadata, dict):
        metadata = {"error": "metadata.json is not an object"}
    table, superseded = newest_code(table, metadata)
    return Run(label or p.resolve().name, str(path), table, metadata, tuple(superseded))


# --------------------------------------------------------------------------- preparing


def _to_bool(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return pd.NA


def canon(value: Any) -> str:
    """A value as stable text for grouping (NaN -> "", 64.0 -> "64")."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return str(int(value)) if value == int(value) else repr(float(value))
    return str(value)


def _group_label(dir_label: str, machine: str, known: bool, n_machines: int, dirs: int) -> str:
    """A run's label: the directory, the machine, or both (see :func:`prepare`)."""
    show_machine = n_machines > 1 or (dirs > 1 and known)
    if not show_machine:
        return dir_label
    return f"{dir_label}: {machine}" if dirs > 1 else machine


def _split_machines(runs: Sequence[Run]) -> list[pd.DataFrame]:
    """Every directory's rows split by machine_id, each part labelled as one run."""
    frames: list[pd.DataFrame] = []
    for run in runs:
        frame = with_optional_columns(run.table)
        facts = machine_facts(run.metadata)
        mids = frame["machine_id"].map(canon)
        labels = {m: machine_label(m, facts.get(m)) for m in set(mids)}
        for mid in sorted(labels, key=lambda m: (m == "", labels[m], m)):
            part = frame[mids == mid].copy()
            label = _group_label(run.label, labels[mid], mid != "", len(labels), len(runs))
            part.insert(0, "run", label)
            part.insert(1, "run_index", len(frames))
            part["dir"], part["dir_path"], part["machine"] = run.label, run.path, labels[mid]
            frames.append(part)
    return frames


def prepare(runs: Sequence[Run]) -> pd.DataFrame:
    """All runs' rows in one frame with normalized types and derived columns.

    A directory holding several machines' rows becomes one run per machine: ``run`` is the
    directory label when it holds one machine and the report one directory, the machine's
    label (:func:`~lshbench.report.machines.machine_label`) for several machines in one
    directory, ``"DIR: machine"`` for several directories. Adds ``run``, ``run_index``,
    ``dir``, ``dir_path``, ``machine``, ``exact`` (a backend whose rows carry no hashing
    configuration: ``n_hashes`` missing in all of them), ``input_kind`` (the generator or
    file; ``input`` becomes its label with ``target_entropy`` / ``value_corr`` /
    ``local_share``), ``nb``
    (n_buckets as text), ``nb_total``, ``tokens = batch * seqlen``, ``time_seq =
    time_median_s / batch`` (s per sequence), ``time_tok`` (s per token), ``short`` (an LSH
    row with L <= chunk_len, computed exactly), ``method_order``, ``series``,
    ``series_order``, ``nb_desc`` and ``batch_desc``. ``mem_alloc_peak_bytes`` is emptied
    on rows whose message says tracemalloc cannot see the backend's allocator
    (:data:`~lshbench.results.columns.TRACEMALLOC_BLIND`). Hashing fields of exact backends are
    blanked; their missing ``attn_tv``, ``out_err_v`` and ``rel_err`` are 0, their missing
    recalls 1, and their missing ``task_acc`` on duplicate input 1.
    """
    df = pd.concat(_split_machines(runs), ignore_index=True)
    for col in _NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("causal", "unstable"):
        df[col] = df[col].map(_to_bool).astype(object)
    text = ("backend", "input", "dtype", "run_id", "machine_id", "code_id", "pass", "device")
    for col in (*text, *VARIANT_AXES):
        df[col] = df[col].map(canon).str.strip()
    df["status"] = df["status"].map(canon).str.strip().str.lower().replace("", "unknown")
    df["message"] = df["message"].map(canon)
    blind = df["message"].str.contains(TRACEMALLOC_BLIND, regex=False)
    df.loc[blind, "mem_alloc_peak_bytes"] = math.nan  # not the backend's own memory
    df["input_kind"] = df["input"]
    df["input"] = [input_label(*v) for v in zip(df["input"], df["target_entropy"],
                                                 df["value_corr"], df["local_share"],
                                                 strict=True)]  # fmt: skip
    nb = df["n_buckets"].map(bucket_label)
    if "n_buckets_spec" in df:  # the sweep's text form: "16x32" for factors
        spec = df["n_buckets_spec"].map(bucket_label)
        nb = spec.where(spec != "", nb)
    df["nb"] = nb
    no_hashing = df["n_hashes"].isna().groupby(df["backend"]).all()  # rows without LSH fields
    df["exact"] = df["backend"].map(no_hashing).astype(bool)
    _fill_variants_and_exact(df)
    df["nb_total"] = df["nb"].map(bucket_total)
    df["tokens"] = df["batch"] * df["seqlen"]
    df["time_seq"] = df["time_median_s"] / df["batch"]
    df["time_tok"] = df["time_median_s"] / df["tokens"]
    df["short"] = ~df["exact"] & (df["seqlen"] <= df["chunk_len"])
    return _assign_series(df)


def _fill_variants_and_exact(df: pd.DataFrame) -> None:
    """In place: blank hashing fields and exact values on exact rows (see :func:`prepare`;
    LSH rows of older tables got their variant when read, :mod:`lshbench.results.upgrade`)."""
    exact = df["exact"]
    numeric_axes = [c for c in LSH_AXES if c not in VARIANT_AXES]
    df.loc[exact, numeric_axes] = math.nan
    df.loc[exact, [*VARIANT_AXES, "nb"]] = ""
    df["method_order"] = df["method"].map(METHOD_ORDER).fillna(len(METHOD_ORDER))
    ok_exact = exact & (df["status"] == "ok")
    fills = {"attn_tv": 0.0, "out_err_v": 0.0, "rel_err": 0.0, "mass_recall": 1.0,
             "top1_recall": 1.0}  # fmt: skip
    for col, value in fills.items():
        df.loc[ok_exact, col] = df.loc[ok_exact, col].fillna(value)
    dup = ok_exact & (df["input_kind"] == "duplicate")
    df.loc[dup, "task_acc"] = df.loc[dup, "task_acc"].fillna(1.0)


def varying_axes(df: pd.DataFrame) -> set[str]:
    """Axes with more than one value in the data: these are named in labels."""
    cols = ("run", "backend", *LSH_AXES, *COMMON_AXES, "nb", "batch")
    found = set()
    for c in cols:
        values = df[c].map(canon)
        if values[values != ""].nunique() > 1:  # "" (no value) is not a value of the axis
            found.add(c)
    return found


def _nb_desc(g: pd.DataFrame) -> str:
    values = sorted(set(g["nb"]) - {""}, key=lambda s: (bucket_total(s), s))
    if len(values) <= 1:
        return values[0] if values else ""
    rule = 2 * g["seqlen"] / g["chunk_len"]
    return "2L/m" if np.allclose(g["nb_total"], rule) else "per-L"


def _batch_desc(g: pd.DataFrame) -> str:
    batches = sorted(g["batch"].dropna().unique())
    if len(batches) <= 1:
        return canon(batches[0]) if batches else ""
    tokens = g["tokens"].dropna().unique()
    return f"B*L={canon(tokens[0])}" if len(tokens) == 1 else "per-L"


def series_label(row: Mapping[str, Any], show: set[str]) -> str:
    """Short text naming a series: backend and hashing fields, then the axes that vary."""
    parts = [f"[{row['run']}]"] if "run" in show else []
    parts.append(str(row["backend"]))
    if not row["exact"]:
        if "method" in show:
            parts.append(str(row["method"]))
        budget = row.get("oracle_k")
        if isinstance(budget, str) and budget:  # the oracle: k at which key count
            parts.append(f"k={budget}")
        parts.append(f"H={canon(row['n_hashes'])}")
        if "chunk_len" in show:
            parts.append(f"m={canon(row['chunk_len'])}")
        if "nb" in show and row["nb_desc"]:
            parts.append(f"nb={row['nb_desc']}")
        if {"chunks_before", "chunks_after"} & show:
            parts.append(f"look={canon(row['chunks_before'])}/{canon(row['chunks_after'])}")
        if "weighting" in show:
            parts.append(str(row["weighting"]))
    if "input" in show:
        parts.append(str(row["input"]))
    if "causal" in show:
        parts.append("causal" if row["causal"] is True else "non-causal")
    if "dtype" in show:
        parts.append(str(row["dtype"]))
    if "threads" in show:
        parts.append(f"T={canon(row['threads'])}")
    if "d" in show:
        parts.append(f"d={canon(row['d'])}")
    if "dv" in show:
        parts.append(f"dv={canon(row['dv'])}")
    if "pass" in show:
        parts.append(str(row["pass"]))
    if "device" in show:
        parts.append(str(row["device"]))
    if "batch" in show and row["batch_desc"]:
        parts.append(
            f"B={row['batch_desc']}" if "L" not in row["batch_desc"] else row["batch_desc"]
        )
    return " ".join(parts)


def compact_labels(points: pd.DataFrame, drop: Iterable[str] = ()) -> dict[str, str]:
    """Series labels naming only the axes that vary among ``points``' series (not ``drop``).

    Used where a figure or table shows a subset of the series, so its labels stay short.
    """
    first = points.drop_duplicates("series")
    lsh = first[~first["exact"].astype(bool)]
    sources = {c: c for c in SERIES_KEY} | {"nb": "nb_desc", "batch": "batch_desc"}
    show = set()
    for col, source in sources.items():
        rows = lsh if col in (*LSH_AXES, "nb") else first
        if col not in drop and rows[source].map(str).nunique() > 1:
            show.add(col)
    return {row["series"]: series_label(row, show) for _, row in first.iterrows()}


def _assign_series(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``series`` labels: a series is one configuration of one run over L.

    ``n_buckets`` and ``batch`` split a series only when one L holds several values;
    otherwise they are functions of L, described by ``nb_desc`` / ``batch_desc``. Labels name
    the axes whose values (or descriptions) differ between series.
    """
    keys = df[list(SERIES_KEY)].map(canon)
    df["nb_desc"] = ""
    df["batch_desc"] = ""
    df["series"] = ""
    n = 0
    for _, index in sorted(keys.groupby(list(SERIES_KEY), sort=True).groups.items()):
        group = df.loc[index]
        per_l = group.groupby("seqlen")
        split = [c for c in ("nb", "batch") if per_l[c].nunique(dropna=False).max() > 1]
        subgroups = group.groupby(split, sort=True).groups.values() if split else [group.index]
        for sub in subgroups:
            g = df.loc[sub]
            df.loc[sub, ["nb_desc", "batch_desc", "series"]] = [_nb_desc(g), _batch_desc(g), str(n)]
            n += 1
    labels, used = compact_labels(df), set[str]()
    for key in sorted(labels, key=int):
        label = base = labels[key]
        while label in used:  # never merge two configurations under one label
            label = f"{base} #{sum(u.startswith(base) for u in used) + 1}"
        used.add(label)
        labels[key] = label
    df["series"] = df["series"].map(labels)
    numeric_axes = [c for c in LSH_AXES if c != "method"]  # methods: LSH, then baselines
    order_cols = ["run_index", "exact", "backend", "method_order", *numeric_axes, *COMMON_AXES]
    order_cols += ["nb_total", "batch", "series"]
    first = df.assign(causal=df["causal"].map(canon)).sort_values(
        order_cols, na_position="last", kind="mergesort"
    )
    order = {s: i for i, s in enumerate(dict.fromkeys(first["series"]))}
    df["series_order"] = df["series"].map(order)
    return df


def series_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, L): medians over ok rows, else the failure's status.

    Columns: the series attributes, ``seqlen``, ``status`` ("ok" when any row is ok, else the
    first failing status in sorted order), ``message``, ``n_rows``, ``n_ok`` (ok rows: one
    per rotation draw and input seed), the metrics of ``_METRICS`` (NaN for failed points)
    and the min-max range of each of :data:`SPREAD_METRICS` (``<metric>_lo``,
    ``<metric>_hi``) over the ok rows. Sorted by series order, then L.
    """
    keys = ["series", "seqlen"]
    attrs = df.groupby(keys, sort=True)[list(_POINT_ATTRS)].first()
    ok = df[df["status"] == "ok"]
    metrics = ok.groupby(keys, sort=True)[list(_METRICS)].median()
    spread = ok.groupby(keys, sort=True)[list(SPREAD_METRICS)]
    metrics = metrics.join(spread.min().add_suffix("_lo")).join(spread.max().add_suffix("_hi"))
    metrics["n_ok"] = ok.groupby(keys, sort=True).size()
    bad = df[df["status"] != "ok"].sort_values(["status", "message"], kind="mergesort")
    failure = bad.groupby(keys, sort=True)[["status", "message"]].first()
    out = attrs.join(metrics).join(failure)
    out["n_rows"] = df.groupby(keys, sort=True).size()
    out.loc[out.index.isin(metrics.index), ["status", "message"]] = ["ok", ""]
    out = out.reset_index()
    out["causal"] = out["causal"].astype(object)
    return out.sort_values(["series_order", "seqlen"], kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------- slices


def _mode(values: Iterable[Any], prefer: Any = None) -> Any:
    """Most frequent value; ties go to the smallest; ``prefer`` wins when present."""
    values = [v for v in values if canon(v) != ""]
    if not values:
        return None
    if prefer is not None and prefer in values:
        return prefer
    counts: dict[str, list[Any]] = {}
    for v in values:
        counts.setdefault(canon(v), []).append(v)

    def key(item: tuple[str, list[Any]]) -> tuple[int, float, str]:
        text, group = item
        number = group[0] if isinstance(group[0], (int, float)) else math.nan
        return (-len(group), number if not math.isnan(number) else math.inf, text)

    return sorted(counts.items(), key=key)[0][1][0]


def reference_slice(points: pd.DataFrame) -> dict[str, Any]:
    """The value of each non-plotted axis used by the L-axis figures, per the data.

    The most frequent value among ok points (LSH points for hashing fields); ``gaussian`` is
    preferred for the input (the hard case; time does not depend on it), the default of
    docs/design.md section 2 for the method (lsh) and the weighting (multiplicity).
    """
    ok = points[points["status"] == "ok"]
    base = ok if not ok.empty else points
    lsh = base[~base["exact"].astype(bool)]
    out: dict[str, Any] = {}
    for col in COMMON_AXES:
        out[col] = _mode(base[col].tolist(), prefer="gaussian" if col == "input" else None)
    for col in ("chunk_len", "chunks_before", "chunks_after"):
        out[col] = _mode(lsh[col].tolist())
    out["method"] = _mode(lsh["method"].tolist(), prefer=DEFAULT_METHOD)
    out["weighting"] = _mode(lsh["weighting"].tolist(), prefer=DEFAULT_WEIGHTING)
    return out


def in_slice(points: pd.DataFrame, ref: Mapping[str, Any]) -> pd.Series:
    """Rows matching ``ref``; hashing fields are matched for LSH rows only."""
    mask = pd.Series(True, index=points.index)
    exact = points["exact"].astype(bool)
    for col, value in ref.items():
        if value is None:
            continue
        match = points[col].map(canon) == canon(value)
        mask &= match | exact if col in LSH_AXES else match
    return mask


# --------------------------------------------------------------------------- failures


def failed_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is not ``ok``, one per row, sorted by run, series, L, seed."""
    bad = df[df["status"] != "ok"]
    cols = ["run_index", "series_order", "seqlen", "batch", "seed", "status", "message"]
    return bad.sort_values(cols, kind="mergesort")[[*cols, "run", "series"]].reset_index(drop=True)
