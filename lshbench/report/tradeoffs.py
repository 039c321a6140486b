"""Accuracy against cost: the Pareto front, and the fastest configuration under an error budget.

Works on the tidy points of :func:`lshbench.report.analysis.series_points`; time is per
sequence (seconds), error the relative Frobenius error against the dense reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lshbench.report.analysis import COMMON_AXES, canon
from lshbench.report.scaling import with_dense_time

__all__ = ["BUDGETS", "budget_picks", "candidates", "pareto_mask"]

#: Error budgets (relative Frobenius error) of the budget table.
BUDGETS: tuple[float, ...] = (0.01, 0.05, 0.10)


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
    scen = ["run_index", "run", *COMMON_AXES, "seqlen"]
    rows = []
    keys = c[scen].map(canon).assign(run_index=c["run_index"], seqlen=c["seqlen"])
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
