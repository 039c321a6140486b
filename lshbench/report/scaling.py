"""Scaling of time with L: fitted exponents, and where LSH overtakes the dense reference.

Works on the tidy points of :func:`lshbench.report.analysis.series_points` (time per
sequence ``time_seq`` in seconds). Every table is sorted by series order.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lshbench.report.analysis import COMMON_AXES, REFERENCE_BACKEND, canon

__all__ = ["crossovers", "dense_times", "fit_exponents", "with_dense_time"]


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

_MATCH = ("run", *COMMON_AXES)


def dense_times(points: pd.DataFrame) -> pd.DataFrame:
    """Median dense time per sequence keyed by (run, common axes, seqlen, batch)."""
    dense = points[(points["backend"] == REFERENCE_BACKEND) & (points["status"] == "ok")]
    dense = dense[np.isfinite(dense["time_seq"])]
    keys = pd.concat([dense[list(_MATCH)].map(canon), dense[["seqlen", "batch"]]], axis=1)
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
    keys = target[list(_MATCH)].map(canon)
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
