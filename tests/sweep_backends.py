"""Backends that misbehave on purpose, for the sweep tests.

The sweep runs each cell in a fresh worker process, so these classes must be importable
there: tests put this folder on ``PYTHONPATH`` and register them with
``lshbench.register_backend(name, "sweep_backends:Class", uses_hashing=False)``; the sweep
sends the registry entry to the worker.
"""

from __future__ import annotations

import time

import numpy as np

from lshbench.backends.base import Backend

#: bytes every Alloc* backend allocates (and touches) during one call
ALLOC_BYTES = 200 * 2**20


class _Exact(Backend):
    """Returns zeros of the right shape; registered with ``uses_hashing=False`` (one row per
    cell)."""

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        return np.zeros(qk.shape[:2] + v.shape[-1:], dtype=qk.dtype)


class SleepBackend(_Exact):
    """Hangs far longer than any test timeout."""

    name = "test-sleep"

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        time.sleep(120)
        return super()._attend(qk, v, config, rotations)


class RaiseBackend(_Exact):
    """Raises on every call."""

    name = "test-raise"

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        raise RuntimeError("boom from the test backend")


class AllocNumpyBackend(_Exact):
    """Allocates and fills ALLOC_BYTES with NumPy during each call."""

    name = "test-alloc-numpy"
    alloc_bytes = ALLOC_BYTES

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        block = np.ones(self.alloc_bytes // 8)  # float64, every page touched
        out = super()._attend(qk, v, config, rotations)
        out[0, 0, 0] = block[-1]
        return out


def _njit_alloc():
    import numba

    @numba.njit(cache=False)
    def alloc(n):  # pragma: no cover - compiled
        block = np.ones(n)  # allocated by Numba's NRT, every page touched
        return block[n - 1]

    return alloc


class AllocNumbaBackend(_Exact):
    """Allocates and fills ALLOC_BYTES inside an ``@njit`` function during each call."""

    name = "test-alloc-numba"

    def __init__(self) -> None:
        self._alloc = _njit_alloc()

    def compile(self, dtype=np.float32) -> float:
        start = time.perf_counter()
        self._alloc(8)
        return time.perf_counter() - start

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        out = super()._attend(qk, v, config, rotations)
        out[0, 0, 0] = self._alloc(ALLOC_BYTES // 8)
        return out


class KilledBackend(_Exact):
    """Dies by SIGKILL, as the kernel's OOM killer would do it."""

    name = "test-killed"

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return super()._attend(qk, v, config, rotations)


class NaNBackend(_Exact):
    """Returns an output with one NaN (``bad``) among finite values."""

    name = "test-nan"
    bad = float("nan")

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        out = v.astype(qk.dtype, copy=True)
        out[0, -1, 0] = self.bad
        return out


class InfBackend(NaNBackend):
    name = "test-inf"
    bad = float("inf")


class NegInfBackend(NaNBackend):
    name = "test-neginf"
    bad = float("-inf")


class Fatal(BaseException):
    """Not an Exception: escapes the worker's handlers, so it dies printing a traceback."""


class FatalBackend(_Exact):
    """Kills its worker with an uncaught exception (a traceback on stderr, exit status 1)."""

    name = "test-fatal"

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        raise Fatal("fatal from the test backend")
