"""The accuracy and provenance sections of the report document, as text and tables.

Each ``section_*`` / ``table_*`` function appends blocks to a
:class:`lshbench.report.document.Doc` (``doc.h``, ``doc.p``, ``doc.table``) from the tidy
points of :mod:`lshbench.report.analysis`: what the tables hold and lack, the error-budget
table (on ``attn_tv``; ``rel_err`` for older tables), what hashing buys over the random and
local baselines, copy retrieval on the duplication input, and the machines. How to read them:
docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lshbench.report.analysis import canon
from lshbench.report.labels import METRIC_NAMES, plain
from lshbench.util import fmt_length, fmt_num, fmt_seconds

__all__ = [
    "section_columns",
    "section_hashing",
    "table_budgets",
    "table_hashing",
    "table_machines",
    "table_passes",
    "table_task",
]

METRICS_DOC = "docs/metrics.md"


def _err(metric: str, value: float) -> str:
    return f"{metric} {value:.3g}" if math.isfinite(value) else "-"


# --------------------------------------------------------------------------- provenance


def section_columns(doc: Any, runs: Sequence[Any]) -> None:
    """Say, per directory, which newer columns its table lacks and which older code's rows
    were left out; nothing when every table is complete."""
    from lshbench.report.columns import missing_columns

    for run in runs:
        missing = missing_columns(run.table)
        if missing:
            doc.p(
                f"*`{run.label}`: the table has no {', '.join(f'`{c}`' for c in missing)} "
                "(written by an older lshbench). What needs them is drawn from what exists "
                "(`rel_err` stands in for `attn_tv`; LSH rows without `method` / `weighting` "
                "are read as the default, lsh with multiplicity weighting) or left out with "
                "a reason.*"
            )
        for d in run.superseded:
            doc.p(
                f"*`{run.label}`: {d['rows']} rows of older code `{d['code_id']}` on machine "
                f"`{d['machine_id'][:8]}` left out; that machine's rows of the newest code "
                f"`{d['newest']}` are shown.*"
            )


def table_machines(doc: Any, runs: Sequence[Any], df: pd.DataFrame) -> None:
    """One row per (directory, machine): the machines every series was measured on."""
    from lshbench.report.machines import machines_table

    doc.appendix("Machines")
    table = machines_table(runs, df)
    doc.p(
        "Each machine (`machine_id`: CPU, memory, OS and library versions) is its own series "
        "in the figures, labelled as in the first column; rows of one machine are never "
        "merged with another's. On each machine only the newest code version's rows "
        "(`code_id`) are shown; older code's rows are superseded."
    )
    doc.table(list(table.columns), table.astype(str).to_numpy().tolist())


# --------------------------------------------------------------------------- budgets


def table_budgets(doc: Any, points: pd.DataFrame, several_runs: bool) -> None:
    """The fastest configuration under each error budget, per run, input and L: one table on
    attn_tv, and one on rel_err for runs whose tables predate attn_tv."""
    from lshbench.report.tradeoffs import HEADLINE_METRIC, candidates, error_metric

    doc.appendix("Best configuration under an error budget")
    by_metric: dict[str, list[pd.DataFrame]] = {}
    for _, g in points.groupby("run_index", sort=True):
        by_metric.setdefault(error_metric(g), []).append(g)
    if all(candidates(pd.concat(gs), m)["exact"].all() for m, gs in by_metric.items()):
        doc.p("*Left out: no ok LSH rows with both a time and an error (attn_tv or rel_err).*")
        return
    for metric in sorted(by_metric, key=lambda m: m != HEADLINE_METRIC):
        if metric == HEADLINE_METRIC:
            doc.p(
                f"The fastest configuration (time per sequence) whose `{metric}` "
                f"({METRIC_NAMES[metric]}: the share of attention mass put in the wrong "
                "place, 0 for exact attention) is within the budget, at each L and input. "
                "Every configuration that can run competes: LSH, its random and local "
                "baselines, and the exact backends (attn_tv 0); never the oracle (the best k "
                "keys, known only from the exact scores). An error is the median over the "
                "configuration's rows (rotation draws and input seeds), with the largest in "
                "parentheses when they differ. Each cell: configuration, time, error, "
                "speedup over the exact baseline: the fastest exact backend measured at that "
                "L in the same run and scenario, named in the last column with its GFLOP/s. "
                f"How to read it: `{METRICS_DOC}`."
            )
        else:
            doc.p(
                f"*These runs' tables have no `attn_tv` (older lshbench): their budgets are on "
                f"`{metric}`, the relative Frobenius error of the output against dense, which "
                "misleads on near-uniform attention (an all-zero output scores 1.0; "
                f"`{METRICS_DOC}`). Re-run the sweep for attn_tv budgets.*"
            )
        _budget_rows(doc, pd.concat(by_metric[metric]), metric, several_runs)


def _budget_rows(doc: Any, points: pd.DataFrame, metric: str, several_runs: bool) -> None:
    from lshbench.report.analysis import compact_labels
    from lshbench.report.tradeoffs import budget_picks, budgets_for, candidates

    budgets = budgets_for(metric)
    picks = budget_picks(points, budgets, metric)
    names = {"": ""}  # short labels per run: run and input have their own columns
    for _, g in candidates(points, metric).groupby("run_index", sort=True):
        names |= compact_labels(g, drop=("run", "input"))
    scen = ["run_index", "run", "input", "causal", "dtype", "threads", "d", "dv", "seqlen"]
    rows = []
    for _, g in picks.groupby(scen, sort=False):
        first = g.iloc[0]
        row = [str(first["run"])] if several_runs else []
        row += [str(first["input"]), fmt_length(first["seqlen"])]
        for budget in budgets:
            r = g[g["budget"] == budget].iloc[0]
            if r["series"]:
                speed = f", {fmt_num(r['speedup'], 2)}x" if math.isfinite(r["speedup"]) else ""
                error, hi = _err(metric, r["error"]), r["error_hi"]
                if math.isfinite(hi) and f"{hi:.3g}" != f"{r['error']:.3g}":  # worst draw
                    error += f" (max {hi:.3g})"
                cost = f"{fmt_seconds(r['time_seq'])}, {error}{speed}"
                row.append(f"{names[r['series']]}: {cost}")
            else:
                lowest = _err(metric, r["best_err"])
                row.append(f"none (lowest {lowest}: {names[r['best_err_series']]})")
        baseline = str(first["baseline"]) or "-"
        if baseline != "-" and math.isfinite(first["baseline_gflops"]):
            baseline += f" ({fmt_num(first['baseline_gflops'], 1)} GFLOP/s)"
        rows.append([*row, baseline])
    header = (["run"] if several_runs else []) + ["input", "L"]
    header += [f"{metric} <= {b:g}" for b in budgets]
    header += ["exact baseline"]
    doc.table(header, rows)


# --------------------------------------------------------------------------- hashing buys


def section_hashing(doc: Any, points: pd.DataFrame, several_runs: bool) -> pd.DataFrame:
    """What hashing buys: LSH against random keys and a local window at the same key
    budget, a verdict per input in words. Returns the pairs
    (:func:`~lshbench.report.baselines.hashing_table`), which :func:`table_hashing` lists."""
    from lshbench.report.baselines import CUTS_BELOW, hashing_table, verdicts
    from lshbench.report.tradeoffs import error_metric

    parts = [hashing_table(g, error_metric(g)) for _, g in points.groupby("run_index")]
    table = pd.concat(parts) if parts else pd.DataFrame()
    if table.empty:
        doc.p(
            "*Left out: no LSH configuration has a random or local baseline at the same key "
            "budget (sweep with `--method lsh,random,local`).*"
        )
        return table
    metrics = sorted(set(table["metric"]))
    doc.p(
        "Does hashing put keys where attention goes, or would any keys do? Each row pairs an "
        "LSH configuration with the baselines of docs/design.md section 2b at the same key "
        "budget (same n_hashes, chunk_len, look-around and weighting, so the same number of "
        "keys per query: `keys = H * m * (1 + before + after)`): random keys (buckets drawn "
        "at random) and a local window of positions. Gain = baseline error - LSH error "
        f"(positive: hashing helps). Error: {', '.join(f'`{m}`' for m in metrics)}. LSH "
        f"'cuts' the error when it is at least {100 * (1 - CUTS_BELOW):.0f} % lower "
        f"(`{METRICS_DOC}`). Slots are not keys: rounds repeat keys, so the distinct keys "
        "per query (`keys_distinct`) of each method are listed. The oracle keeps each "
        "query's k best keys (k = LSH's distinct keys, rounded; then k = the slots): no "
        "method with k keys does better, so it is not a method you can run but the bound; "
        "'share' is the part of the gain over random keys the oracle shows possible that "
        "LSH gets. An error is the median over the point's rows (rotation draws of "
        "`--rotation-seeds` and input seeds), with their min-max in parentheses when they "
        "differ."
    )
    for sentence in verdicts(table, several_runs):
        doc.p(sentence)
    doc.p("Every pair: the appendix 'What hashing buys, pair by pair'.")
    return table


def table_hashing(doc: Any, table: pd.DataFrame, several_runs: bool) -> None:
    """The pairs of :func:`section_hashing` as an appendix table; nothing without pairs."""
    if table.empty:
        return
    doc.appendix("What hashing buys, pair by pair")
    doc.table(*_hashing_rows(table, several_runs))


def _hashing_rows(table: pd.DataFrame, several_runs: bool) -> tuple[list[str], list[list[str]]]:
    show_weighting = table["weighting"].nunique() > 1
    with_oracle = bool(np.isfinite(table["err_oracle"]).any())
    rows = []
    for _, r in table.iterrows():
        config = f"{r['backend']} H={plain(r['n_hashes'])} m={plain(r['chunk_len'])}"
        config += f" look={plain(r['chunks_before'])}/{plain(r['chunks_after'])}"
        if show_weighting:
            config += f" {r['weighting']}"
        row = [str(r["run"])] if several_runs else []
        row += [str(r["input"]), fmt_length(r["seqlen"]), config, plain(r["keys"])]
        row += [_ranged(r, m) for m in ("lsh", "random", "local")]
        row += [_signed(r["gain_random"]), _signed(r["gain_local"])]
        row += ["/".join(_keys(r[f"dist_{m}"]) for m in ("lsh", "random", "local"))]
        if with_oracle:
            row += [_ranged(r, "oracle"), _ranged(r, "oracle_slots")]
            share = r["oracle_share"]
            row += [f"{100 * share:.0f} %" if math.isfinite(share) else "-"]
        row += [fmt_seconds(r[f"time_{m}"]) for m in ("lsh", "random", "local")]
        rows.append(row)
    metric = "/".join(sorted(set(table["metric"])))
    header = (["run"] if several_runs else []) + ["input", "L", "LSH configuration", "keys"]
    header += [f"LSH {metric}", f"random {metric}", f"local {metric}", "gain over random",
               "gain over local", "distinct keys LSH/random/local"]  # fmt: skip
    if with_oracle:
        header += [f"oracle {metric} (k = distinct)", f"oracle {metric} (k = slots)", "share"]
    header += ["LSH time", "random time", "local time"]
    return header, rows


def _ranged(r: pd.Series, method: str) -> str:
    """An error of the hashing table: the median, and its min-max over the rows of the
    point (rotation draws, input seeds) when they differ: ``0.201 (0.176-0.205)``."""
    text = fmt_num(r[f"err_{method}"], 3)
    lo, hi = r.get(f"err_{method}_lo", math.nan), r.get(f"err_{method}_hi", math.nan)
    if math.isfinite(lo) and math.isfinite(hi) and fmt_num(lo, 3) != fmt_num(hi, 3):
        text += f" ({fmt_num(lo, 3)}-{fmt_num(hi, 3)})"
    return text


def _keys(x: float) -> str:
    """A key count as text: one decimal, "-" when unknown (older tables, no baseline)."""
    return f"{x:.1f}" if math.isfinite(x) else "-"


def _signed(x: float) -> str:
    return f"{x:+.3f}" if math.isfinite(x) else "-"


# --------------------------------------------------------------------------- copy retrieval


def table_task(doc: Any, points: pd.DataFrame, several_runs: bool) -> None:
    """Copy retrieval on the duplication input as a table: ``task_acc`` (%) per run, input,
    L and configuration, one column per n_hashes (median, and the min-max over rotation
    draws when they differ), and dense; the paper's Table 2 is cited, not tabulated."""
    from lshbench.report.figures_task import (
        TASK_CONFIG,
        paper_note,
        spread_column,
        task_panels,
        task_table,
    )

    table, hashes = task_table(points)
    if table.empty:
        return
    # inputs with identical numbers (sharpnesses: scaling qk changes no bucket): one row each
    label = {names[0]: " = ".join(names) for names in task_panels(table, hashes)}
    table = table[table["input"].isin(label)]
    varies = [c for c in TASK_CONFIG if table[c].map(str).nunique() > 1]
    lead = (["run"] if several_runs else []) + ["input", "L", *varies]
    header = [*lead, *(f"LSH-{plain(h)}" for h in hashes), "dense"]
    rows = []
    for _, r in table.iterrows():
        row = [str(r["run"])] if several_runs else []
        row += [label[r["input"]], fmt_length(r["seqlen"]), *(plain(r[c]) for c in varies)]
        row += [
            _pct_spread(r.loc[h], r.loc[spread_column("lo", h)], r.loc[spread_column("hi", h)])
            for h in hashes
        ]
        rows.append([*row, _pct(r["dense"])])
    doc.p(
        "Copy retrieval on the duplication input: `task_acc` (%), the share of queries whose "
        "output decodes to their copy's value, by n_hashes (the median over rotation draws, "
        "with the min-max in brackets when they differ); inputs joined by = give the same "
        "numbers. The copy is each query's top key, so this is top-1 recall, not a model's "
        "task accuracy. " + paper_note()
    )
    doc.table(header, rows)


def _pct_spread(x: Any, lo: Any, hi: Any) -> str:
    """``"85.1 %"``, or ``"85.1 % (82.0-89.0)"`` when the min-max differ."""
    text = _pct(x)
    lo, hi = float(lo), float(hi)
    if text != "-" and np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        text += f" ({100 * lo:.1f}-{100 * hi:.1f})"
    return text


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if np.isfinite(float(x)) else "-"


# --------------------------------------------------------------------------- passes


def table_passes(doc: Any, points: pd.DataFrame, several_runs: bool) -> None:
    """Forward and training step side by side (docs/design.md section 9): per backend,
    configuration, device and L holding both passes, the time and peak memory of each, the
    train/forward time ratio and the gradient errors of the train rows. Nothing when no run
    has train rows."""
    measured = points[points["time_median_s"].notna()]
    if "train" not in set(measured["pass"]):
        return
    key = ["run", "backend", *_PASS_CONFIG, "device", "dtype", "seqlen"]
    fwd = measured[measured["pass"] == "forward"].set_index(key)
    trn = measured[measured["pass"] == "train"].set_index(key)
    both = trn.merge(
        fwd, how="left", left_index=True, right_index=True, suffixes=("_train", "_fwd")
    )
    # the configuration axes that tell rows apart besides backend and H, as columns
    configs = both.index.to_frame(index=False)
    lsh = configs[configs["n_hashes"].notna()]  # exact rows leave the LSH axes empty
    shown = [c for c in _PASS_CONFIG[1:] if lsh[c].map(canon).nunique() > 1]
    shown = ["input", *shown] if configs["input"].nunique() > 1 and "input" not in shown else shown
    header = ["run"] if several_runs else []
    header += [
        *shown, "backend", "device", "dtype", "L", "forward s", "train s", "train / forward",
        "forward memory", "train memory", "grad_err_qk", "grad_err_v",
    ]  # fmt: skip
    rows = []
    order = ["run", *shown, "backend", "n_hashes", "device", "dtype", "seqlen"]
    for idx, r in both.reset_index().sort_values(order).set_index(key).iterrows():
        k = dict(zip(key, idx, strict=True))
        name = str(k["backend"])
        if isinstance(k["n_hashes"], float) and math.isfinite(k["n_hashes"]):
            name += f" H={k['n_hashes']:g}"
        t_f, t_t = r["time_median_s_fwd"], r["time_median_s_train"]
        ratio = t_t / t_f if t_f == t_f and t_f > 0 else math.nan
        row = [str(k["run"])] if several_runs else []
        row += [plain(canon(k[c])) for c in shown]
        row += [
            name, str(k["device"]), str(k["dtype"]), fmt_length(k["seqlen"]),
            fmt_seconds(t_f), fmt_seconds(t_t), _g(ratio, "x"),
            _mem(r, "_fwd"), _mem(r, "_train"), _g(r["grad_err_qk_train"]),
            _g(r["grad_err_v_train"]),
        ]  # fmt: skip
        rows.append(row)
    doc.appendix("Forward and training step")
    doc.p(
        "A train row times one forward pass plus the backward "
        "pass of `sum(out * g)` for a fixed random `g`, memory over both; `grad_err_qk` and "
        f"`grad_err_v` are the gradients' relative errors against exact attention's "
        f"([{METRICS_DOC}]({METRICS_DOC})). Memory: the CUDA allocator's peak on `cuda`, the "
        "resident (else allocated) peak on `cpu`."
    )
    doc.table(header, rows)


#: the configuration columns that tell a backend's series apart in :func:`table_passes`
#: (n_hashes first: it is part of the backend's name there, the others are columns)
_PASS_CONFIG = ("n_hashes", "input", "weighting", "method", "chunk_len", "causal", "d", "batch")


def _g(value: Any, unit: str = "") -> str:
    """A number to 3 significant digits (``-`` when missing)."""
    return f"{value:.3g}{unit}" if isinstance(value, float) and math.isfinite(value) else "-"


def _mem(row: Any, suffix: str) -> str:
    """The peak memory of a pass as text: the resident peak, else the allocated one."""
    for col in ("mem_rss_peak_bytes", "mem_alloc_peak_bytes"):
        value = row.get(col + suffix)
        if value is not None and value == value:
            return f"{value / 2**20:.1f} MiB"
    return "-"
