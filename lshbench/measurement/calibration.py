"""The per-host calibration cell: a fixed float32 GEMM, so times from different hosts can be
put on one scale.

Absolute seconds from two machines are not comparable (CPU model, clock, BLAS build, memory,
load all differ), so a distributed sweep runs one calibration cell on every host, once per
worker process and thread count: ``np.matmul`` of two ``n x n`` float32 matrices (default
``n = 1024``, ``2 n**3`` FLOPs), timed in a fresh spawned process with the same thread
variables as the cells it calibrates (:func:`lshbench.measurement.worker.thread_env`), median of
``repeats`` samples after a warm-up. Rows of that host then carry ``calib_gflops``, the
GEMM rate in GFLOP/s, and :func:`normalize_times` rescales their times to a reference rate.

This is a first-order correction only: LSH attention is gather- and sort-heavy, so it tracks
memory bandwidth and latency more than the GEMM rate; rows normalized this way compare
hosts to within tens of percent, not percent. Timing-grade comparisons stay on one host.

The local sweep stores such a GEMM's rate per thread count in its run entry
(:func:`sgemm_rates` at :func:`sgemm_size`, metadata key ``sgemm``): the report's exact
floor, the time of exact attention's FLOPs at that rate (docs/design.md section 8).

Run directly, ``python -m lshbench.measurement.calibration [n] [repeats] [threads]`` prints
one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GEMM_N",
    "SGEMM_REPEATS",
    "SGEMM_SIZES",
    "calibrate_host",
    "gemm_rate",
    "normalize_times",
    "sgemm_rates",
    "sgemm_size",
]

#: matrix size of the calibration GEMM (4 MiB per float32 operand: larger than L2)
GEMM_N = 1024
GEMM_REPEATS = 7
#: timed samples of the SGEMM rate a sweep stores per thread count (median of these)
SGEMM_REPEATS = 5
#: smallest and largest matrix size of that SGEMM (:func:`sgemm_size`)
SGEMM_SIZES = (512, 2048)


def gemm_rate(n: int = GEMM_N, repeats: int = GEMM_REPEATS) -> dict[str, Any]:
    """Time ``(n, n) @ (n, n)`` float32 in this process.

    Returns ``{"calib_gflops": GFLOP/s at the median, "calib_gemm_s": median seconds per
    call, "calib_iqr_s": IQR seconds, "calib_n": n}``.
    """
    import numpy as np

    from lshbench.measurement.phases import (
        calibrate_number,
        summarize,
        time_interleaved,
        warm_up,
    )

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)

    def call() -> None:
        np.matmul(a, b, out=out)  # (n, n) @ (n, n) -> (n, n)

    number = calibrate_number(min(warm_up(call)))
    timing = summarize(time_interleaved({"gemm": call}, repeats, {"gemm": number})["gemm"])
    return {
        "calib_gflops": 2.0 * n**3 / timing.time_median_s / 1e9,
        "calib_gemm_s": timing.time_median_s,
        "calib_iqr_s": timing.time_iqr_s,
        "calib_n": n,
    }


def calibrate_host(
    threads: int,
    python: str = sys.executable,
    n: int = GEMM_N,
    repeats: int = GEMM_REPEATS,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Run :func:`gemm_rate` in a fresh spawned process with ``threads`` in every thread
    variable (set before NumPy is imported). Never raises: on failure the result has
    ``calib_gflops`` None and ``calib_error`` saying why."""
    from lshbench.measurement.worker import thread_env

    module = "lshbench.measurement.calibration"
    cmd = [python, "-m", module, str(int(n)), str(int(repeats)), str(int(threads))]
    try:
        done = subprocess.run(
            cmd, env=thread_env(threads), capture_output=True, text=True, timeout=timeout_s
        )
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            raise RuntimeError(tail[0])
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except Exception as exc:  # a calibration failure must not fail the cell
        return {"calib_gflops": None, "calib_error": f"{type(exc).__name__}: {exc}"[:300]}
    result["calib_threads"] = int(threads)
    return result


def sgemm_size(seqlen: int) -> int:
    """The SGEMM size near a sweep's work: its largest L rounded up to a power of two, within
    :data:`SGEMM_SIZES` (2048 for L > 1024, the size docs/design.md section 8's bars time: a
    1024^3 product can run several percent below the 2048^3 rate, which would put the floor
    too high; 512 for tiny sweeps, measured in milliseconds)."""
    lo, hi = SGEMM_SIZES
    return int(min(hi, max(lo, 1 << max(int(seqlen) - 1, 1).bit_length())))


def sgemm_rates(
    threads: Iterable[int], n: int = GEMM_N, repeats: int = SGEMM_REPEATS
) -> dict[str, dict[str, Any]]:
    """The float32 ``(n, n) @ (n, n)`` rate at each thread count, each measured by
    :func:`calibrate_host` (a fresh process, its thread variables and BLAS pool pinned to
    that count), median of ``repeats``.

    Returns ``{str(threads): {"gflops", "gemm_s", "iqr_s", "n", "repeats"}}`` (GFLOP/s,
    seconds per call); a count whose measurement failed has ``gflops`` None and ``error``.
    """
    out: dict[str, dict[str, Any]] = {}
    for t in sorted({int(t) for t in threads}):
        found = calibrate_host(t, n=n, repeats=repeats)
        if found.get("calib_gflops") is None:
            out[str(t)] = {"gflops": None, "error": found.get("calib_error", "unknown")}
            continue
        out[str(t)] = {
            "gflops": float(found["calib_gflops"]),
            "gemm_s": float(found["calib_gemm_s"]),
            "iqr_s": float(found["calib_iqr_s"]),
            "n": int(found["calib_n"]),
            "repeats": int(repeats),
        }
    return out


def normalize_times(frame: pd.DataFrame, reference_gflops: float | None = None) -> pd.Series:
    """``time_median_s`` rescaled to a host whose calibration GEMM runs at
    ``reference_gflops`` (default: the median ``calib_gflops`` of ``frame``).

    ``t_norm = t * calib_gflops / reference_gflops``: a host twice as fast at the GEMM has its
    times doubled. Rows without a calibration (local executor) get NaN.
    """
    import pandas as pd

    if "calib_gflops" not in frame:
        return pd.Series(float("nan"), index=frame.index, name="time_norm_s")
    calib = pd.to_numeric(frame["calib_gflops"], errors="coerce").astype("float64")
    ref = float(calib.median()) if reference_gflops is None else float(reference_gflops)
    times = pd.to_numeric(frame["time_median_s"], errors="coerce").astype("float64")
    return (times * calib / ref).rename("time_norm_s")


def main(argv: list[str] | None = None) -> None:
    """``python -m lshbench.measurement.calibration [n] [repeats] [threads]``: one JSON line
    on stdout; with ``threads``, the BLAS pool is also pinned to it by threadpoolctl (for a
    BLAS that reads none of the thread variables)."""
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else GEMM_N
    repeats = int(args[1]) if len(args) > 1 else GEMM_REPEATS
    limit: Any = contextlib.nullcontext()
    if len(args) > 2:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=int(args[2]), user_api="blas")
    with limit:
        print(json.dumps(gemm_rate(n, repeats)))


if __name__ == "__main__":
    main()
