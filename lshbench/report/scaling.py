"""Scaling of time with L: fitted exponents, and where LSH overtakes the exact baseline.

The exact baseline of a point is the fastest exact row (attention over all L keys:
``dense``, ``torch-sdpa``, ...; in the rows, a backend without hashing fields) measured in
the same run on the same machine, input, causal flag, dtype, threads, d, dv, L and batch
(:func:`exact_baselines`): speed-ups and crossovers are against it, never against a slower
exact implementation.

Works on the tidy points of :func:`lshbench.report.analysis.series_points` (time per
sequence ``time_seq`` in seconds). Every table is sorted by series order.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lshbench.report.analysis import COMMON_AXES, canon

__all__ = ["crossovers", "exact_baselines", "fit_exponents", "with_exact_baseline"]


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


#: columns of :func:`with_exact_baseline`
BASELINE_COLUMNS = ("baseline_seq", "baseline", "baseline_gflops")


def exact_baselines(points: pd.DataFrame) -> pd.DataFrame:
    """The exact baseline per (run, common axes, seqlen, batch): the exact backend with the
    lowest median time per sequence over its ok rows there. Columns ``baseline_seq``
    (seconds per sequence), ``baseline`` (its backend) and ``baseline_gflops`` (its
    median GFLOP/s)."""
    exact = points[points["exact"].astype(bool) & (points["status"] == "ok")]
    exact = exact[np.isfinite(exact["time_seq"]) & (exact["time_seq"] > 0)]
    if exact.empty:
        return pd.DataFrame(columns=list(BASELINE_COLUMNS))
    keys = pd.concat([exact[list(_MATCH)].map(canon), exact[["seqlen", "batch"]]], axis=1)
    by = [*_MATCH, "seqlen", "batch"]
    per_backend = (
        exact.assign(**{c: keys[c] for c in _MATCH})
        .groupby([*by, "backend"], sort=True)[["time_seq", "gflops"]]
        .median()
        .reset_index()
        .sort_values(["time_seq", "backend"], kind="mergesort")
    )
    best = per_backend.groupby(by, sort=True).head(1).set_index(by).sort_index()
    return best.rename(
        columns={"time_seq": "baseline_seq", "backend": "baseline", "gflops": "baseline_gflops"}
    )[list(BASELINE_COLUMNS)]


def with_exact_baseline(target: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """For each row of ``target``, its exact baseline in ``points`` (same run, axes, L and
    batch): the columns of :func:`exact_baselines`, NaN (and "") where there is none."""
    table = exact_baselines(points)
    out = pd.DataFrame(index=target.index)
    if table.empty:
        out["baseline_seq"], out["baseline"], out["baseline_gflops"] = math.nan, "", math.nan
        return out
    keys = target[list(_MATCH)].map(canon)
    index = pd.MultiIndex.from_frame(pd.concat([keys, target[["seqlen", "batch"]]], axis=1))
    found = table.reindex(index)
    out["baseline_seq"] = found["baseline_seq"].to_numpy(float)
    out["baseline"] = found["baseline"].fillna("").to_numpy(object)
    out["baseline_gflops"] = pd.to_numeric(found["baseline_gflops"]).to_numpy(float)
    return out


def crossovers(points: pd.DataFrame) -> pd.DataFrame:
    """Where each LSH series becomes faster than its exact baseline, from the measured ratio.

    ``ratio(L) = t_lsh / t_exact`` at the L both measured (same run, axes and batch), t_exact
    the exact baseline's time (:func:`exact_baselines`). The
    crossover is the start of the last stretch of L where LSH is faster (ratio < 1),
    interpolated linearly in (log L, log ratio) between the two bracketing L; exact for power
    laws. ``kind`` is ``measured``, ``below`` (faster at every measured L, crossover <= L_min)
    or ``above`` (never faster; ``trend_L`` extrapolates the fitted log-ratio line when it
    falls). ``speedup_at_max`` = t_exact / t_lsh at the largest common L; ``baseline`` the
    exact baselines over the common L (backend names, the most frequent first, "/"-joined),
    ``baseline_at_max`` and ``baseline_gflops_at_max`` the one at the largest common L.
    """
    pts = points[(points["status"] == "ok") & ~points["exact"].astype(bool)].copy()
    pts = pts.join(with_exact_baseline(pts, points))
    pts = pts[np.isfinite(pts["time_seq"]) & np.isfinite(pts["baseline_seq"])]
    pts = pts[(pts["time_seq"] > 0) & (pts["baseline_seq"] > 0)]
    rows = []
    for series, g in pts.groupby("series", sort=False):
        g = g.sort_values("seqlen")
        L = g["seqlen"].to_numpy(float)
        log_r = np.log(g["time_seq"].to_numpy() / g["baseline_seq"].to_numpy())
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
                "baseline": "/".join(g["baseline"].value_counts(sort=True).index),
                "baseline_at_max": g["baseline"].iloc[-1],
                "baseline_gflops_at_max": g["baseline_gflops"].iloc[-1],
            }
        )
    cols = ["series", "series_order", "kind", "crossover_L", "slower_L", "faster_L", "trend_L"]
    cols += ["n_common", "L_max", "speedup_at_max", "crossover_time_seq", "baseline"]
    cols += ["baseline_at_max", "baseline_gflops_at_max"]
    return pd.DataFrame(rows, columns=cols).sort_values("series_order", kind="mergesort")


def _interp_loglog(x: np.ndarray, y: np.ndarray, at: float) -> float:
    if not math.isfinite(at):
        return math.nan
    return float(np.exp(np.interp(math.log(at), np.log(x), np.log(y))))
