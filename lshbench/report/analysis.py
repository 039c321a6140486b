"""The numbers behind ``lshbench report``: tidy points, exponent fits, crossovers, budgets.

Everything here is pandas/NumPy/SciPy; no plotting. The report reads sweep tables (DESIGN.md
section 6), one per results directory ("run"), and turns them into

* *series*: one line of a plot, i.e. one configuration of one run whose sequence length L
  varies. Axes that are a function of L inside a series (``n_buckets`` under the default
  rule ``2L/chunk_len``, ``batch`` when ``batch * L`` is held fixed) are absorbed into the
  series; repeated seeds are folded by the median.
* *points*: one row per (series, L) with median metrics over its ``ok`` rows, or the status
  of its failure.
* tables: fitted scaling exponents, crossover L against dense, the cheapest configuration
  under an error budget, failed cells, and the flattened metadata.

Times are per sequence, ``time_median_s / batch`` (seconds), so that runs with different
batch sizes compare; memory is bytes per call. Every output is sorted, so the same tables
give the same report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lshbench.core.config import ConfigError, fail
from lshbench.results.store import COLUMNS, LOG_NAME, PARQUET_NAME

__all__ = [
    "BUDGETS",
    "EXACT_BACKENDS",
    "REQUIRED_COLUMNS",
    "Run",
    "budget_picks",
    "compact_labels",
    "crossovers",
    "failed_cells",
    "fit_exponents",
    "load_run",
    "metadata_table",
    "pareto_mask",
    "prepare",
    "reference_slice",
    "series_points",
    "varying_axes",
]

#: Columns every results table must hold (DESIGN.md section 6), as the sweep writes them.
REQUIRED_COLUMNS: tuple[str, ...] = COLUMNS

#: Backends that compute exact attention: their hashing fields are ignored. A backend whose
#: rows all lack ``n_hashes`` counts as exact too.
EXACT_BACKENDS = frozenset({"dense", "torch-sdpa"})
#: The exact backend that crossovers and speedups are measured against.
REFERENCE_BACKEND = "dense"
#: Error budgets (relative Frobenius error) of the budget table.
BUDGETS: tuple[float, ...] = (0.01, 0.05, 0.10)

_NUMERIC = (
    "seqlen", "batch", "d", "dv", "n_hashes", "chunk_len", "chunks_before", "chunks_after",
    "threads", "seed", "compile_s", "time_median_s", "time_iqr_s", "time_min_s", "n_samples",
    "mem_alloc_peak_bytes", "mem_rss_peak_bytes", "mem_model_bytes", "flops", "gflops",
    "tokens_per_s", "rel_err", "max_abs_err", "cos_sim", "mass_recall", "top1_agree",
)  # fmt: skip
_LSH_AXES = ("n_hashes", "chunk_len", "chunks_before", "chunks_after")
_COMMON_AXES = ("input", "causal", "dtype", "threads", "d", "dv")
#: Columns that identify a series before the L-dependent axes (nb, batch) are considered.
SERIES_KEY = ("run", "backend", *_LSH_AXES, *_COMMON_AXES)
#: Metrics folded by the median over the ok rows of one (series, L) point.
_METRICS = (
    "time_seq", "time_tok", "time_median_s", "mem_alloc_peak_bytes", "mem_rss_peak_bytes",
    "mem_model_bytes", "gflops", "tokens_per_s", "rel_err", "mass_recall", "max_abs_err",
    "cos_sim", "top1_agree",
)  # fmt: skip
_POINT_ATTRS = (
    *SERIES_KEY, "run_index", "exact", "short", "nb", "nb_total", "batch", "tokens",
    "nb_desc", "batch_desc", "series_order",
)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One results directory: its label in the report, its rows and its metadata."""

    label: str
    path: str
    table: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a sweep directory with :func:`lshbench.load_results`, and its ``metadata.json``.

    Raises ConfigError (one line) when the directory is missing, holds no table, the table
    is empty or lacks a column of :data:`REQUIRED_COLUMNS`.
    """
    p = Path(path)
    if not p.is_dir():
        fail("DIR", str(path), "no such directory (give a `lshbench sweep --out` directory)")
    names = (LOG_NAME, PARQUET_NAME)  # what lshbench.load_results reads
    if not any((p / name).is_file() for name in names):
        fail("DIR", str(path), f"holds no {' or '.join(names)} (run `lshbench sweep --out DIR`)")
    try:
        from lshbench import load_results

        table = load_results(p)
    except ConfigError:
        raise
    except Exception as exc:  # a corrupt file: say which, on one line
        text = " ".join(str(exc).split())
        fail("DIR", str(path), f"cannot read the results table ({type(exc).__name__}: {text})")
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
    return Run(label or p.resolve().name, str(path), table, metadata)


# --------------------------------------------------------------------------- preparing


def bucket_label(value: Any) -> str:
    """``n_buckets`` as text: ``"64"``, ``"16x32"`` for a factorized value, ``""`` if missing.

    Accepts an int, a float from CSV, a list/tuple/array, or text such as ``"(16, 32)"``,
    ``"[16, 32]"`` or ``"16x32"``.
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "x".join(str(int(v)) for v in value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else str(int(value)) if value == int(value) else str(value)
    text = str(value).strip()
    if text.lower() in ("", "nan", "none", "<na>"):
        return ""
    try:
        number = float(text)
    except ValueError:
        numbers = re.findall(r"\d+", text)
        return "x".join(numbers) if numbers else text
    return str(int(number)) if number == int(number) else text


def _bucket_total(label: str) -> float:
    parts = label.split("x")
    if not label or not all(p.isdigit() for p in parts):
        return math.nan
    return float(math.prod(int(p) for p in parts))


def _to_bool(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return pd.NA


def _canon(value: Any) -> str:
    """A value as stable text for grouping (NaN -> "", 64.0 -> "64")."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return str(int(value)) if value == int(value) else repr(float(value))
    return str(value)


def prepare(runs: Sequence[Run]) -> pd.DataFrame:
    """All runs' rows in one frame with normalized types and derived columns.

    Adds ``run`` (label), ``run_index`` (order given), ``exact`` (exact backend), ``nb``
    (n_buckets as text), ``nb_total``, ``tokens = batch * seqlen``, ``time_seq =
    time_median_s / batch`` (s per sequence), ``time_tok`` (s per token), ``short`` (an LSH row
    with L <= chunk_len, computed exactly), ``series``, ``series_order``, ``nb_desc`` and
    ``batch_desc``. Hashing fields of exact backends are blanked; their missing error is 0
    and their missing recall 1.
    """
    frames = []
    for index, run in enumerate(runs):
        frame = run.table.copy()
        frame.insert(0, "run", run.label)
        frame.insert(1, "run_index", index)
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    for col in _NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("causal", "unstable"):
        df[col] = df[col].map(_to_bool).astype(object)
    for col in ("backend", "input", "dtype", "run_id"):
        df[col] = df[col].map(_canon)
    df["status"] = df["status"].map(_canon).str.strip().str.lower().replace("", "unknown")
    df["message"] = df["message"].map(_canon)
    nb = df["n_buckets"].map(bucket_label)
    if "n_buckets_spec" in df:  # the sweep's text form: "16x32" for factors
        spec = df["n_buckets_spec"].map(bucket_label)
        nb = spec.where(spec != "", nb)
    df["nb"] = nb
    no_hashing = df["n_hashes"].isna().groupby(df["backend"]).all()  # rows without LSH fields
    df["exact"] = df["backend"].isin(EXACT_BACKENDS) | df["backend"].map(no_hashing)
    df.loc[df["exact"], list(_LSH_AXES)] = math.nan
    df.loc[df["exact"], "nb"] = ""
    df["nb_total"] = df["nb"].map(_bucket_total)
    ok_exact = df["exact"] & (df["status"] == "ok")
    df.loc[ok_exact, "rel_err"] = df.loc[ok_exact, "rel_err"].fillna(0.0)
    df.loc[ok_exact, "mass_recall"] = df.loc[ok_exact, "mass_recall"].fillna(1.0)
    df["tokens"] = df["batch"] * df["seqlen"]
    df["time_seq"] = df["time_median_s"] / df["batch"]
    df["time_tok"] = df["time_median_s"] / df["tokens"]
    df["short"] = ~df["exact"] & (df["seqlen"] <= df["chunk_len"])
    return _assign_series(df)


def varying_axes(df: pd.DataFrame) -> set[str]:
    """Axes with more than one value in the data: these are named in labels."""
    cols = ("run", "backend", *_LSH_AXES, *_COMMON_AXES, "nb", "batch")
    return {c for c in cols if df[c].map(_canon).replace("", np.nan).nunique() > 1}


def _nb_desc(g: pd.DataFrame) -> str:
    values = sorted(set(g["nb"]) - {""}, key=lambda s: (_bucket_total(s), s))
    if len(values) <= 1:
        return values[0] if values else ""
    rule = 2 * g["seqlen"] / g["chunk_len"]
    return "2L/m" if np.allclose(g["nb_total"], rule) else "per-L"


def _batch_desc(g: pd.DataFrame) -> str:
    batches = sorted(g["batch"].dropna().unique())
    if len(batches) <= 1:
        return _canon(batches[0]) if batches else ""
    tokens = g["tokens"].dropna().unique()
    return f"B*L={_canon(tokens[0])}" if len(tokens) == 1 else "per-L"


def series_label(row: Mapping[str, Any], show: set[str]) -> str:
    """Short text naming a series: backend and hashing fields, then the axes that vary."""
    parts = [f"[{row['run']}]"] if "run" in show else []
    parts.append(str(row["backend"]))
    if not row["exact"]:
        parts.append(f"H={_canon(row['n_hashes'])}")
        if "chunk_len" in show:
            parts.append(f"m={_canon(row['chunk_len'])}")
        if "nb" in show and row["nb_desc"]:
            parts.append(f"nb={row['nb_desc']}")
        if {"chunks_before", "chunks_after"} & show:
            parts.append(f"look={_canon(row['chunks_before'])}/{_canon(row['chunks_after'])}")
    if "input" in show:
        parts.append(str(row["input"]))
    if "causal" in show:
        parts.append("causal" if row["causal"] is True else "non-causal")
    if "dtype" in show:
        parts.append(str(row["dtype"]))
    if "threads" in show:
        parts.append(f"T={_canon(row['threads'])}")
    if "d" in show:
        parts.append(f"d={_canon(row['d'])}")
    if "dv" in show:
        parts.append(f"dv={_canon(row['dv'])}")
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
        rows = lsh if col in (*_LSH_AXES, "nb") else first
        if col not in drop and rows[source].map(str).nunique() > 1:
            show.add(col)
    return {row["series"]: series_label(row, show) for _, row in first.iterrows()}


def _assign_series(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``series`` labels: a series is one configuration of one run over L.

    ``n_buckets`` and ``batch`` split a series only when one L holds several values;
    otherwise they are functions of L, described by ``nb_desc`` / ``batch_desc``. Labels name
    the axes whose values (or descriptions) differ between series.
    """
    keys = df[list(SERIES_KEY)].map(_canon)
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
    labels, used = compact_labels(df), set()
    for key in sorted(labels, key=int):
        label = base = labels[key]
        while label in used:  # never merge two configurations under one label
            label = f"{base} #{sum(u.startswith(base) for u in used) + 1}"
        used.add(label)
        labels[key] = label
    df["series"] = df["series"].map(labels)
    order_cols = ["run_index", "exact", "backend", *_LSH_AXES, *_COMMON_AXES]
    order_cols += ["nb_total", "batch", "series"]
    first = df.assign(causal=df["causal"].map(_canon)).sort_values(
        order_cols, na_position="last", kind="mergesort"
    )
    order = {s: i for i, s in enumerate(dict.fromkeys(first["series"]))}
    df["series_order"] = df["series"].map(order)
    return df


def series_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, L): medians over ok rows, else the failure's status.

    Columns: the series attributes, ``seqlen``, ``status`` ("ok" when any row is ok, else the
    first failing status in sorted order), ``message``, ``n_rows`` and the metrics of
    ``_METRICS`` (NaN for failed points). Sorted by series order, then L.
    """
    keys = ["series", "seqlen"]
    attrs = df.groupby(keys, sort=True)[list(_POINT_ATTRS)].first()
    ok = df[df["status"] == "ok"]
    metrics = ok.groupby(keys, sort=True)[list(_METRICS)].median()
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
    values = [v for v in values if _canon(v) != ""]
    if not values:
        return None
    if prefer is not None and prefer in values:
        return prefer
    counts: dict[str, list[Any]] = {}
    for v in values:
        counts.setdefault(_canon(v), []).append(v)

    def key(item: tuple[str, list[Any]]) -> tuple[int, float, str]:
        text, group = item
        number = group[0] if isinstance(group[0], (int, float)) else math.nan
        return (-len(group), number if not math.isnan(number) else math.inf, text)

    return sorted(counts.items(), key=key)[0][1][0]


def reference_slice(points: pd.DataFrame) -> dict[str, Any]:
    """The value of each non-plotted axis used by the L-axis figures, per the data.

    The most frequent value among ok points (LSH points for hashing fields); ``gaussian`` is
    preferred for the input (the hard case; time does not depend on it).
    """
    ok = points[points["status"] == "ok"]
    base = ok if not ok.empty else points
    lsh = base[~base["exact"].astype(bool)]
    out: dict[str, Any] = {}
    for col in _COMMON_AXES:
        out[col] = _mode(base[col].tolist(), prefer="gaussian" if col == "input" else None)
    for col in ("chunk_len", "chunks_before", "chunks_after"):
        out[col] = _mode(lsh[col].tolist())
    return out


def in_slice(points: pd.DataFrame, ref: Mapping[str, Any]) -> pd.Series:
    """Rows matching ``ref``; hashing fields are matched for LSH rows only."""
    mask = pd.Series(True, index=points.index)
    exact = points["exact"].astype(bool)
    for col, value in ref.items():
        if value is None:
            continue
        match = points[col].map(_canon) == _canon(value)
        mask &= match | exact if col in _LSH_AXES else match
    return mask


# --------------------------------------------------------------------------- fits


def _fit_loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``log y = a + k log x``: (k, a, R^2); R^2 NaN below three points."""
    from scipy.stats import linregress

    res = linregress(np.log(x), np.log(y))
    r2 = res.rvalue**2 if len(x) >= 3 else math.nan
    return float(res.slope), float(res.intercept), float(r2)


def fit_exponents(points: pd.DataFrame) -> pd.DataFrame:
    """Scaling exponent k of ``time per sequence ~ L^k`` per series.

    Uses the ok points with a positive time; an LSH point with L <= chunk_len is left out
    (it runs the exact dense path). Series with fewer than two L are left out. Columns:
    series, series_order, exact, n, L_min, L_max, exponent, intercept, r2, gflops_at_max,
    tokens_per_s_at_max.
    """
    rows = []
    usable = points[(points["status"] == "ok") & ~points["short"].astype(bool)]
    usable = usable[np.isfinite(usable["time_seq"]) & (usable["time_seq"] > 0)]
    for series, g in usable.groupby("series", sort=False):
        if g["seqlen"].nunique() < 2:
            continue
        k, a, r2 = _fit_loglog(g["seqlen"].to_numpy(), g["time_seq"].to_numpy())
        last = g.loc[g["seqlen"].idxmax()]
        rows.append(
            {
                "series": series,
                "series_order": g["series_order"].iloc[0],
                "exact": bool(g["exact"].iloc[0]),
                "n": len(g),
                "L_min": g["seqlen"].min(),
                "L_max": g["seqlen"].max(),
                "exponent": k,
                "intercept": a,
                "r2": r2,
                "gflops_at_max": last["gflops"],
                "tokens_per_s_at_max": last["tokens_per_s"],
            }
        )
    cols = ["series", "series_order", "exact", "n", "L_min", "L_max", "exponent", "intercept"]
    cols += ["r2", "gflops_at_max", "tokens_per_s_at_max"]
    return pd.DataFrame(rows, columns=cols).sort_values("series_order", kind="mergesort")


# --------------------------------------------------------------------------- crossover

_MATCH = ("run", *_COMMON_AXES)


def dense_times(points: pd.DataFrame) -> pd.DataFrame:
    """Median dense time per sequence keyed by (run, common axes, seqlen, batch)."""
    dense = points[(points["backend"] == REFERENCE_BACKEND) & (points["status"] == "ok")]
    dense = dense[np.isfinite(dense["time_seq"])]
    keys = pd.concat([dense[list(_MATCH)].map(_canon), dense[["seqlen", "batch"]]], axis=1)
    return (
        dense.assign(**{c: keys[c] for c in _MATCH})
        .groupby([*_MATCH, "seqlen", "batch"], sort=True)[["time_seq"]]
        .median()
    )


def with_dense_time(target: pd.DataFrame, points: pd.DataFrame) -> pd.Series:
    """For each row of ``target``, the dense time per sequence in ``points`` on the same
    run, axes, L and batch (NaN when none)."""
    table = dense_times(points)
    if table.empty:
        return pd.Series(math.nan, index=target.index)
    keys = target[list(_MATCH)].map(_canon)
    index = pd.MultiIndex.from_frame(pd.concat([keys, target[["seqlen", "batch"]]], axis=1))
    return pd.Series(table["time_seq"].reindex(index).to_numpy(), index=target.index)


def crossovers(points: pd.DataFrame) -> pd.DataFrame:
    """Where each LSH series becomes faster than dense, from the measured ratio.

    ``ratio(L) = t_lsh / t_dense`` at the L both measured (same run, axes and batch). The
    crossover is the start of the last stretch of L where LSH is faster (ratio < 1),
    interpolated linearly in (log L, log ratio) between the two bracketing L; exact for power
    laws. ``kind`` is ``measured``, ``below`` (faster at every measured L, crossover <= L_min)
    or ``above`` (never faster; ``trend_L`` extrapolates the fitted log-ratio line when it
    falls). ``speedup_at_max`` = t_dense / t_lsh at the largest common L.
    """
    pts = points[(points["status"] == "ok") & ~points["exact"].astype(bool)].copy()
    pts["dense_seq"] = with_dense_time(pts, points)
    pts = pts[np.isfinite(pts["time_seq"]) & np.isfinite(pts["dense_seq"])]
    pts = pts[(pts["time_seq"] > 0) & (pts["dense_seq"] > 0)]
    rows = []
    for series, g in pts.groupby("series", sort=False):
        g = g.sort_values("seqlen")
        L = g["seqlen"].to_numpy(float)
        log_r = np.log(g["time_seq"].to_numpy() / g["dense_seq"].to_numpy())
        faster = log_r < 0
        crossover, kind, lo, hi = math.nan, "above", math.nan, math.nan
        if faster.all():
            kind, hi = "below", L[0]
        elif faster[-1]:
            i = len(L) - int(np.argmin(faster[::-1]))  # first index of the last faster run
            lo, hi = L[i - 1], L[i]
            frac = log_r[i - 1] / (log_r[i - 1] - log_r[i])
            crossover = math.exp(math.log(lo) + frac * (math.log(hi) - math.log(lo)))
            kind = "measured"
        trend = math.nan
        if len(L) >= 2 and np.ptp(L) > 0:
            slope, intercept = np.polyfit(np.log(L), log_r, 1)
            if slope < 0:
                trend = math.exp(-intercept / slope)
        rows.append(
            {
                "series": series,
                "series_order": g["series_order"].iloc[0],
                "kind": kind,
                "crossover_L": crossover,
                "slower_L": lo,
                "faster_L": hi,
                "trend_L": trend,
                "n_common": len(L),
                "L_max": L[-1],
                "speedup_at_max": math.exp(-log_r[-1]),
                "crossover_time_seq": _interp_loglog(L, g["time_seq"].to_numpy(), crossover),
            }
        )
    cols = ["series", "series_order", "kind", "crossover_L", "slower_L", "faster_L", "trend_L"]
    cols += ["n_common", "L_max", "speedup_at_max", "crossover_time_seq"]
    return pd.DataFrame(rows, columns=cols).sort_values("series_order", kind="mergesort")


def _interp_loglog(x: np.ndarray, y: np.ndarray, at: float) -> float:
    if not math.isfinite(at):
        return math.nan
    return float(np.exp(np.interp(math.log(at), np.log(x), np.log(y))))


# --------------------------------------------------------------------------- cost vs error


def pareto_mask(time: Sequence[float], error: Sequence[float]) -> np.ndarray:
    """True for points no other point beats in both time and error (ties: first kept)."""
    t, e = np.asarray(time, float), np.asarray(error, float)
    order = np.lexsort((e, t))
    keep = np.zeros(len(t), bool)
    best = math.inf
    for i in order:
        if e[i] < best:
            keep[i] = True
            best = e[i]
    return keep


def candidates(points: pd.DataFrame) -> pd.DataFrame:
    """Points that can be picked under an error budget: ok, timed, with a relative error.

    Exact backends count with error 0; LSH points with L <= chunk_len are left out (they
    run the dense path). Adds ``dense_seq`` (dense time on the same scenario).
    """
    c = points[(points["status"] == "ok") & ~points["short"].astype(bool)].copy()
    c = c[np.isfinite(c["time_seq"]) & np.isfinite(c["rel_err"])]
    c["dense_seq"] = with_dense_time(c, points)
    return c


def budget_picks(points: pd.DataFrame, budgets: Sequence[float] = BUDGETS) -> pd.DataFrame:
    """The fastest configuration with ``rel_err <= budget`` per scenario and budget.

    A scenario is (run, input, causal, dtype, threads, d, dv, L); time is per sequence.
    Columns: the scenario, ``budget``, ``series`` ("" when nothing meets it), ``time_seq``,
    ``rel_err``, ``mass_recall``, ``speedup`` (dense time / picked time), ``best_err`` and
    ``best_err_series`` (lowest error of the scenario, said when nothing meets the budget).
    """
    c = candidates(points)
    scen = ["run_index", "run", *_COMMON_AXES, "seqlen"]
    rows = []
    keys = c[scen].map(_canon).assign(run_index=c["run_index"], seqlen=c["seqlen"])
    for _, index in sorted(keys.groupby(scen, sort=True).groups.items()):
        g = c.loc[index].sort_values(["time_seq", "series_order"], kind="mergesort")
        lowest = g.sort_values(["rel_err", "time_seq"], kind="mergesort").iloc[0]
        for budget in budgets:
            ok = g[g["rel_err"] <= budget]
            row = {col: g[col].iloc[0] for col in scen}
            row.update(budget=budget, best_err=lowest["rel_err"], best_err_series=lowest["series"])
            if ok.empty:
                row.update(series="", time_seq=math.nan, rel_err=math.nan, mass_recall=math.nan)
                row["speedup"] = math.nan
            else:
                pick = ok.iloc[0]
                row.update(series=pick["series"], time_seq=pick["time_seq"])
                row.update(rel_err=pick["rel_err"], mass_recall=pick["mass_recall"])
                row["speedup"] = pick["dense_seq"] / pick["time_seq"]
            rows.append(row)
    cols = [*scen, "budget", "series", "time_seq", "rel_err", "mass_recall", "speedup"]
    return pd.DataFrame(rows, columns=[*cols, "best_err", "best_err_series"])


# --------------------------------------------------------------------------- failures, metadata


def failed_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is not ``ok``, one per row, sorted by run, series, L, seed."""
    bad = df[df["status"] != "ok"]
    cols = ["run_index", "series_order", "seqlen", "batch", "seed", "status", "message"]
    return bad.sort_values(cols, kind="mergesort")[[*cols, "run", "series"]].reset_index(drop=True)


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key in value:
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = " ".join(str(v) for v in value)
    else:
        out[prefix] = "" if value is None else str(value)


#: Metadata keys shown first, in this order; the rest follow sorted.
_META_FIRST = (
    "run_id", "start_time", "end_time", "command_line", "git", "host", "platform", "cpu",
    "versions", "workers", "executor",
)  # fmt: skip


def _meta_key(key: str) -> tuple[int, str]:
    top = re.split(r"[.\[]", key, maxsplit=1)[0]
    return (_META_FIRST.index(top) if top in _META_FIRST else len(_META_FIRST), key)


def metadata_table(runs: Sequence[Run], width: int = 200) -> pd.DataFrame:
    """Metadata flattened to ``key -> value`` with one column per run.

    Nested keys are joined with dots and list items indexed (``workers.1.blas[0].version``);
    values are cut at ``width`` characters. The ``runs`` history the sweep keeps (one entry
    per invocation, the latest repeated at the top level) is summarized as a count.
    """
    flat = []
    for run in runs:
        out: dict[str, str] = {}
        meta = dict(run.metadata)
        history = meta.pop("runs", None)
        _flatten(meta, "", out)
        if isinstance(history, list):
            out["sweep invocations"] = str(len(history))
        flat.append({k: (v if len(v) <= width else v[: width - 3] + "...") for k, v in out.items()})
    keys = sorted(set().union(*flat), key=_meta_key) if flat else []
    table = pd.DataFrame({"key": keys})
    labels = [run.label for run in runs]
    for label, values in zip(labels, flat, strict=True):
        table[label] = [values.get(k, "") for k in keys]
    return table
