"""The exact floor: the time a perfect exact attention would take on the run's machine.

docs/design.md section 8: exact attention does ``2*L^2*(d + dv)`` FLOPs per sequence
(``4*L^2*d`` at dv = d; half of it when causal, which skips the keys above the diagonal), and
a training step three times that (:data:`~lshbench.results.columns.TRAIN_FLOPS_FACTOR`); at
the machine's float32 GEMM rate no exact implementation can be faster. The rate is the one
the sweep measured at each thread count and stored in its run entry (``sgemm``:
:func:`lshbench.measurement.calibration.sgemm_rates`), or for a Dask run the median of its
rows' host rates (``calib_gflops``); local runs written before the sweep measured a rate
have no floor.

:func:`sgemm_rates` reads the rates per (run, threads), :func:`with_exact_floor` gives every
point its floor (``floor_seq``, seconds per sequence), :func:`floor_crossovers` finds where
each LSH series beats it (the crossover of :func:`lshbench.report.scaling.crossovers`, with
the floor as the exact baseline), :func:`floor_sentences` says it in words and
:func:`draw_exact_floor` draws it in the time figure.

pandas only, and a Matplotlib axes handed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lshbench.report.analysis import COMMON_AXES, Run
from lshbench.report.metadata import run_entries
from lshbench.report.scaling import crossovers
from lshbench.results.columns import TRAIN_FLOPS_FACTOR
from lshbench.util import fmt_length

__all__ = [
    "FLOOR",
    "FLOOR_FLOPS",
    "draw_exact_floor",
    "floor_crossovers",
    "floor_sentences",
    "missing_rate_note",
    "sgemm_rates",
    "with_exact_floor",
]

#: the floor's name where it stands in for an exact backend
FLOOR = "exact floor"
#: what the floor counts, in the report's words
FLOOR_FLOPS = (
    "exact attention's FLOPs (`4 L^2 d` per sequence, half when causal, three times that for "
    "a training step)"
)


def _rate(entry: Mapping[str, Any] | None, threads: float) -> float:
    """The GFLOP/s an entry stores for ``threads``, NaN when it stores none."""
    sgemm = entry.get("sgemm") if entry is not None else None
    if not isinstance(sgemm, Mapping) or not math.isfinite(threads):
        return math.nan
    found = sgemm.get(str(int(threads)))
    value = found.get("gflops") if isinstance(found, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else math.nan


def sgemm_rates(runs: Sequence[Run], df: pd.DataFrame) -> pd.DataFrame:
    """The SGEMM rate per (report run, threads): the median over the run entries that
    measured its rows (``run_id``) of the rate each stored at those threads; for rows whose
    entries store none, the median of the rows' own ``calib_gflops`` (a Dask run: each row
    carries its host's GEMM rate at its threads, measured before the host's first cell).

    ``df`` is :func:`lshbench.report.analysis.prepare`'s frame (``run``, ``dir``,
    ``run_id``, ``threads``, ``calib_gflops`` where the table has it). Columns ``run``,
    ``threads``, ``sgemm_gflops`` (NaN where neither gives one: a local run written before
    the sweep measured its rate)."""
    entries = {run.label: run_entries(run.metadata) for run in runs}
    rows = []
    for (run, threads), g in df.groupby(["run", "threads"], sort=True, dropna=False):
        known = entries.get(str(g["dir"].iloc[0]), {})
        rates = [_rate(known.get(str(i)), float(threads)) for i in set(g["run_id"])]
        rates = [r for r in rates if math.isfinite(r)]
        if not rates and "calib_gflops" in g:
            hosts = pd.to_numeric(g["calib_gflops"], errors="coerce").to_numpy(float)
            rates = [float(r) for r in hosts if math.isfinite(r) and r > 0]
        rate = float(np.median(rates)) if rates else math.nan
        rows.append({"run": run, "threads": threads, "sgemm_gflops": rate})
    return pd.DataFrame(rows, columns=["run", "threads", "sgemm_gflops"])


def with_exact_floor(points: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """``points`` with ``floor_gflops`` (its run's SGEMM rate at its threads) and
    ``floor_seq``: exact attention's FLOPs per sequence, ``2*L^2*(d + dv)``, halved when
    causal and tripled for a train row (forward and backward), at that rate (seconds; NaN
    without a rate)."""
    found = points[["run", "threads"]].merge(rates, on=["run", "threads"], how="left")
    gflops = found["sgemm_gflops"].to_numpy(float)
    L = points["seqlen"].to_numpy(float)
    flops = 2.0 * L * L * (points["d"].to_numpy(float) + points["dv"].to_numpy(float))
    flops = np.where(points["causal"].astype(bool).to_numpy(), flops / 2, flops)
    flops = np.where(points["pass"].to_numpy() == "train", TRAIN_FLOPS_FACTOR * flops, flops)
    return points.assign(floor_gflops=gflops, floor_seq=flops / (gflops * 1e9))


def floor_crossovers(points: pd.DataFrame) -> pd.DataFrame:
    """Where each LSH series becomes faster than the exact floor: :func:`crossovers` with
    the floor (one exact point per run, axes, L and batch) as the only exact baseline.

    ``points`` carry ``floor_seq`` (:func:`with_exact_floor`). Columns ``series``,
    ``floor_kind`` (``measured``, ``below``, ``above``, as ``kind`` there),
    ``floor_crossover_L``, ``floor_faster_L``, ``floor_L_max``, ``floor_speedup_at_max``
    (floor time / LSH time at the largest common L) and ``floor_gflops`` (the rate there);
    empty where no point has a floor."""
    cols = ["series", "floor_kind", "floor_crossover_L", "floor_faster_L", "floor_L_max"]
    cols += ["floor_speedup_at_max", "floor_gflops"]
    if "floor_seq" not in points:
        return pd.DataFrame(columns=cols)
    ok = points[(points["status"] == "ok") & np.isfinite(points["floor_seq"])]
    lsh = ok[~ok["exact"].astype(bool)]
    if lsh.empty:
        return pd.DataFrame(columns=cols)
    floor = lsh.drop_duplicates(["run", *COMMON_AXES, "seqlen", "batch"]).assign(
        exact=True, backend=FLOOR, time_seq=lsh["floor_seq"], gflops=lsh["floor_gflops"]
    )
    cross = crossovers(pd.concat([lsh, floor], ignore_index=True))
    out = cross.rename(
        columns={
            "kind": "floor_kind",
            "crossover_L": "floor_crossover_L",
            "faster_L": "floor_faster_L",
            "L_max": "floor_L_max",
            "speedup_at_max": "floor_speedup_at_max",
            "baseline_gflops_at_max": "floor_gflops",
        }
    )
    return out[cols].reset_index(drop=True)


def _gflops(x: float) -> str:
    """A GFLOP/s rate as text: three significant digits, whole numbers from 100."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def floor_sentences(cross: pd.DataFrame, points: pd.DataFrame, several_runs: bool) -> list[str]:
    """Per run and thread count with a floor, one sentence from the numbers: the smallest L
    from which an LSH configuration beats even a perfect exact attention (and which), or
    that none does in the measured range. ``cross`` carries :func:`floor_crossovers`'
    columns (joined on ``series``)."""
    if "floor_kind" not in cross:
        return []
    facts = points.drop_duplicates("series").set_index("series")[["run", "threads"]]
    rows = cross[cross["floor_kind"].isin(["measured", "below", "above"])]
    rows = rows.join(facts, on="series")
    out = []
    for (run, threads), g in rows.groupby(["run", "threads"], sort=True):
        lo, hi = g["floor_gflops"].min(), g["floor_gflops"].max()
        rate = _gflops(lo) if _gflops(lo) == _gflops(hi) else f"{_gflops(lo)}-{_gflops(hi)}"
        prefix = f"[{run}] " if several_runs else ""
        n = int(threads)
        where = f"the floor at {rate} GFLOP/s, {n} thread{'' if n == 1 else 's'}"
        beats = g[g["floor_kind"] != "above"]
        if beats.empty:
            out.append(
                f"{prefix}No LSH configuration beats a perfect exact attention ({where}) in "
                f"the measured range (up to L = {fmt_length(g['floor_L_max'].max())})."
            )
            continue
        from_L = np.where(
            beats["floor_kind"] == "measured", beats["floor_crossover_L"], beats["floor_faster_L"]
        )
        best = beats.iloc[int(np.argmin(from_L))]
        at = f"L = {fmt_length(float(np.min(from_L)))}"
        if best["floor_kind"] == "below":
            at = f"the smallest measured L ({fmt_length(best['floor_faster_L'])}) on"
        out.append(
            f"{prefix}LSH beats even a perfect exact attention ({where}) from {at} "
            f"({best['series']}; {len(beats)} of {len(g)} configurations beat it somewhere in "
            "the measured range)."
        )
    return out


def missing_rate_note(points: pd.DataFrame) -> str | None:
    """One sentence naming the runs that stored no SGEMM rate (so have no floor), or None."""
    if "floor_gflops" not in points:
        return None
    missing = points.loc[~np.isfinite(points["floor_gflops"]), "run"]
    runs = list(dict.fromkeys(missing.astype(str)))
    if not runs:
        return None
    return (
        f"No exact floor for {', '.join(runs)}: neither its metadata nor its rows store a "
        "GEMM rate (written before the sweep measured one)."
    )


def draw_exact_floor(ax: Any, shown: pd.DataFrame, scale: float = 1.0) -> str:
    """The exact floor of the points ``shown`` (:func:`with_exact_floor`), one dotted black
    line per (run, threads, d, dv, causal) over their L, in seconds times ``scale`` (the
    axis unit: 1e3 for ms); returns the caption's sentence about it ("" when nothing has a
    floor)."""
    if "floor_seq" not in shown:
        return ""
    have = shown[np.isfinite(shown["floor_seq"])]
    keys = ["run", "threads", "d", "dv", "causal", "pass"]
    groups = list(have.groupby(keys, sort=True))
    for (run, threads, *_), g in groups:
        line = g.groupby("seqlen", sort=True)["floor_seq"].median()
        rate = float(g["floor_gflops"].median())
        name = f"{run}, " if have["run"].nunique() > 1 else ""
        label = f"{FLOOR} ({name}{int(threads)} thr, SGEMM {_gflops(rate)} GFLOP/s)"
        ax.plot(line.index, line.to_numpy() * scale, ls=":", color="black", lw=1.8, label=label)
    if not groups:
        return ""
    return (
        f" Dotted black: the exact floor, {FLOOR_FLOPS} at the run's measured SGEMM rate: no "
        "exact backend can be faster."
    )
