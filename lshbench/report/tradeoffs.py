"""Accuracy against cost: the Pareto front, and the fastest configuration under an error budget.

Works on the tidy points of :func:`lshbench.report.analysis.series_points`; time is per
sequence (seconds). The error is the headline metric of docs/design.md section 6, ``attn_tv``
(the share of attention mass put in the wrong place, in [0, 1]), with budgets
:data:`BUDGETS`. Tables written before ``attn_tv`` existed fall back to the relative
Frobenius error against dense, ``rel_err``, with :data:`REL_ERR_BUDGETS`; the report says so
(:func:`error_metric` tells which a table supports).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lshbench.report.analysis import COMMON_AXES, canon
from lshbench.report.scaling import with_exact_baseline

__all__ = [
    "BUDGETS",
    "FALLBACK_METRIC",
    "HEADLINE_METRIC",
    "REL_ERR_BUDGETS",
    "budget_picks",
    "budgets_for",
    "candidates",
    "error_metric",
    "pareto_mask",
]

#: The headline error (docs/design.md section 6) and its budgets.
HEADLINE_METRIC = "attn_tv"
BUDGETS: tuple[float, ...] = (0.05, 0.10, 0.20)
#: What tables without ``attn_tv`` (older lshbench) are judged by, and its budgets.
FALLBACK_METRIC = "rel_err"
REL_ERR_BUDGETS: tuple[float, ...] = (0.01, 0.05, 0.10)


def error_metric(points: pd.DataFrame) -> str:
    """``"attn_tv"`` when some ok LSH point of ``points`` has one, else ``"rel_err"``."""
    lsh_ok = (points["status"] == "ok") & ~points["exact"].astype(bool)
    return (
        HEADLINE_METRIC
        if np.isfinite(points.loc[lsh_ok, HEADLINE_METRIC]).any()
        else (FALLBACK_METRIC)
    )


def budgets_for(metric: str) -> tuple[float, ...]:
    """The error budgets of ``metric``: :data:`BUDGETS` for attn_tv, else the rel_err ones."""
    return BUDGETS if metric == HEADLINE_METRIC else REL_ERR_BUDGETS


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


def candidates(points: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Points that can be picked under an error budget: ok, timed, with a value of
    ``metric`` (default :func:`error_metric`).

    Exact backends count with error 0; LSH points with L <= chunk_len are left out (they
    run the dense path), and so is the oracle (method ``oracle``: the best k keys, known only
    from the exact scores, not a method that can run; it has no time). Adds the exact
    baseline of the same scenario (``baseline_seq``, ``baseline``, ``baseline_gflops``,
    :func:`lshbench.report.scaling.with_exact_baseline`)
    and ``error`` (the value of ``metric``).
    """
    metric = metric or error_metric(points)
    runnable = points["method"].astype(object) != "oracle"
    c = points[(points["status"] == "ok") & ~points["short"].astype(bool) & runnable].copy()
    c = c[np.isfinite(c["time_seq"]) & np.isfinite(c[metric])]
    c = c.join(with_exact_baseline(c, points))
    c["error"] = c[metric]
    return c


def budget_picks(
    points: pd.DataFrame, budgets: Sequence[float] | None = None, metric: str | None = None
) -> pd.DataFrame:
    """The fastest configuration with ``metric <= budget`` per scenario and budget.

    ``metric`` defaults to :func:`error_metric` (``attn_tv``, or ``rel_err`` for older
    tables), ``budgets`` to :func:`budgets_for` it. Every configuration that can run
    competes: LSH, its random and local baselines, and dense (error 0); never the oracle.
    A scenario is (run, input, causal, dtype, threads, d, dv, L); time is per sequence.
    Columns: the scenario, ``metric``, ``budget``, ``series`` ("" when nothing meets it),
    ``time_seq``, ``error`` (the picked configuration's ``metric``: the median over its rows,
    rotation draws and input seeds; ``error_lo`` and ``error_hi`` their range; ``n_rows``
    how many ok rows it folds, 0 when nothing meets the budget), ``mass_recall``,
    ``speedup`` (exact baseline's time / picked time), ``baseline`` and ``baseline_gflops``
    (the scenario's exact baseline), ``best_err`` and ``best_err_series`` (lowest error of
    the scenario, said when nothing meets the budget).
    """
    metric = metric or error_metric(points)
    budgets = tuple(budgets_for(metric) if budgets is None else budgets)
    c = candidates(points, metric)
    scen = ["run_index", "run", *COMMON_AXES, "seqlen"]
    rows = []
    keys = c[scen].map(canon).assign(run_index=c["run_index"], seqlen=c["seqlen"])
    for _, index in sorted(keys.groupby(scen, sort=True).groups.items()):
        g = c.loc[index].sort_values(["time_seq", "series_order"], kind="mergesort")
        lowest = g.sort_values(["error", "time_seq"], kind="mergesort").iloc[0]
        for budget in budgets:
            ok = g[g["error"] <= budget]
            row = {col: g[col].iloc[0] for col in scen}
            row.update(metric=metric, budget=budget, best_err=lowest["error"])
            row["best_err_series"] = lowest["series"]
            row.update(baseline=g["baseline"].iloc[0], baseline_gflops=g["baseline_gflops"].iloc[0])
            if ok.empty:
                row.update(series="", time_seq=math.nan, error=math.nan, mass_recall=math.nan)
                row.update(speedup=math.nan, error_lo=math.nan, error_hi=math.nan)
                row["n_rows"] = 0
            else:
                pick = ok.iloc[0]
                row.update(series=pick["series"], time_seq=pick["time_seq"])
                row.update(error=pick["error"], mass_recall=pick["mass_recall"])
                row["error_lo"] = pick.get(f"{metric}_lo", math.nan)
                row["error_hi"] = pick.get(f"{metric}_hi", math.nan)
                row["speedup"] = pick["baseline_seq"] / pick["time_seq"]
                row["n_rows"] = int(pick.get("n_ok", 1))
            rows.append(row)
    cols = [*scen, "metric", "budget", "series", "time_seq", "error", "error_lo", "error_hi"]
    cols += ["mass_recall", "speedup", "n_rows"]
    cols += ["best_err", "best_err_series", "baseline", "baseline_gflops"]
    return pd.DataFrame(rows, columns=cols)
