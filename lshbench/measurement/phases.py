"""The per-call measurement phases of docs/design.md section 5.2, each apart from the others.

1. first call (compile, cache load, first-touch page faults): :func:`first_call`;
2. warm-up: :func:`warm_up` (stops at 2 calls or 0.2 s, whichever comes first);
3. timing: :func:`time_interleaved`, ``repeats`` rounds over several callables (ABAB...,
   so drift hits every backend alike), each sample timing ``number`` calls with
   ``time.perf_counter``, GC off; :func:`summarize` gives median, IQR, min and ``unstable``
   (IQR / median > 10%, the torch.utils.benchmark rule);
4. memory, untimed: :func:`measure_memory` reports both the allocated-bytes peak
   (``tracemalloc``: NumPy's and Numba's NRT allocations go through hooked allocators) and
   the resident peak (``/proc/self/clear_refs`` <- 5 resets ``VmHWM``; peak minus the RSS
   before the call), after ``gc.collect()`` and ``malloc_trim(0)`` so freed heap pages are
   returned first.

Times are wall-clock seconds, memory in bytes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "UNSTABLE_IQR_RATIO",
    "MemoryPeak",
    "TimingSummary",
    "calibrate_number",
    "first_call",
    "measure_memory",
    "read_proc_status",
    "summarize",
    "time_interleaved",
    "warm_up",
]

#: a timing is flagged ``unstable`` when IQR / median exceeds this
UNSTABLE_IQR_RATIO = 0.10
#: a sample should last at least this long (asv's sample_time); short calls are repeated
MIN_SAMPLE_S = 0.010
WARMUP_CALLS = 2
WARMUP_S = 0.2


class TimingSummary(NamedTuple):
    time_median_s: float  # per call
    time_iqr_s: float
    time_min_s: float
    time_mean_s: float
    n_samples: int
    unstable: bool
    samples: list[float]  # raw per-call seconds of every sample


class MemoryPeak(NamedTuple):
    alloc_peak_bytes: int  # tracemalloc peak above the traced memory before the call
    rss_peak_bytes: int | None  # VmHWM after the call minus VmRSS before (None: unavailable)


def first_call(call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of the first call and its result."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def warm_up(
    call: Callable[[], Any], calls: int = WARMUP_CALLS, seconds: float = WARMUP_S
) -> list[float]:
    """Call until ``calls`` calls or ``seconds`` have passed (at least once).

    Returns the seconds of each warm-up call.
    """
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= seconds:
            break
    return times


def calibrate_number(seconds_per_call: float, min_sample_s: float = MIN_SAMPLE_S) -> int:
    """Calls per sample so a sample lasts at least ``min_sample_s`` (1 for slow calls)."""
    if seconds_per_call <= 0:
        return 1000
    return int(min(1000, max(1, math.ceil(min_sample_s / seconds_per_call))))


def time_interleaved(
    calls: dict[str, Callable[[], Any]],
    repeats: int,
    number: dict[str, int] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """``repeats`` rounds; in each, every callable gives one sample (seconds per call).

    ``number[name]`` calls are timed together per sample. GC is off while timing.
    """
    number = number or {}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            for name, call in calls.items():
                n = number.get(name, 1)
                start = time.perf_counter()
                for _ in range(n):
                    call()
                samples[name].append((time.perf_counter() - start) / n)
            if on_round is not None:
                on_round(r)
    finally:
        if was_enabled:
            gc.enable()
    return samples


def summarize(samples: list[float]) -> TimingSummary:
    """Median, IQR (75th - 25th percentile), min and mean of per-call samples."""
    x = np.asarray(samples, dtype=np.float64)
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    iqr = float(q3 - q1)
    unstable = bool(median > 0 and iqr / median > UNSTABLE_IQR_RATIO)
    return TimingSummary(
        float(median), iqr, float(x.min()), float(x.mean()), len(samples), unstable, list(samples)
    )


def read_proc_status(*fields: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` given in kB (e.g. VmRSS, VmHWM), as bytes."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in fields:
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_hwm() -> bool:
    """Reset the resident high-water mark (VmHWM); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so the RSS baseline is honest."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_memory(call: Callable[[], Any]) -> tuple[MemoryPeak, Any]:
    """Run ``call`` once, untimed, and report its allocated and resident peaks.

    The result of the call is kept alive until both peaks are read (it is part of the cost).
    """
    gc.collect()
    _malloc_trim()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base_traced = tracemalloc.get_traced_memory()[0]
        hwm_ok = _reset_hwm()
        before = read_proc_status("VmRSS").get("VmRSS")
        result = call()
        peak_traced = tracemalloc.get_traced_memory()[1]
        hwm = read_proc_status("VmHWM").get("VmHWM")
    finally:
        if started:
            tracemalloc.stop()
    rss = None
    if hwm_ok and before is not None and hwm is not None:
        rss = max(0, hwm - before)
    return MemoryPeak(max(0, peak_traced - base_traced), rss), result
