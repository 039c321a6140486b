"""The benchmark suite's fixed cases, inputs and settings (imported by conftest and tests).

Thread pools are pinned before NumPy (OpenBLAS) or Numba is imported, in case the caller
did not set the variables (the documented command and ``.ci/run`` set them before Python
starts); what was in effect is recorded in every JSON (:func:`thread_settings`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
for _var in THREAD_VARS:
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import lshbench  # noqa: E402

#: backends benchmarked when available here, in this order
BACKENDS = ("numpy", "numba", "dense")
SEQLENS = (1024, 4096)
N_HASHES = (2, 4)
D = 64
CHUNK_LEN = 64
DTYPE = np.float32
SEED = 0


class Plan(NamedTuple):
    """How much is measured: every case runs in ``passes`` separate passes over the suite,
    each ``rounds`` timed rounds after ``warmup`` untimed ones. Spreading a case's samples
    over the whole session (asv's interleaved rounds) keeps a burst of load on the
    machine, which lasts seconds, from shifting every sample of one case."""

    passes: int
    rounds: int
    warmup: int


PLAN_FULL = Plan(passes=12, rounds=8, warmup=1)
PLAN_SHORT = Plan(passes=8, rounds=4, warmup=1)
#: CPU seconds of this process: time spent descheduled (other jobs on the cores) is not
#: counted; with every pool at one thread this is the call's own work
TIMER = time.process_time

SHORT_ENV = "LSHBENCH_BENCH_SHORT"
REGISTER_ENV = "LSHBENCH_BENCH_REGISTER"


class Case(NamedTuple):
    """One benchmarked configuration, named ``test_backend[<id>-p<pass>]`` in the JSON."""

    backend: str
    seqlen: int
    n_hashes: int

    @property
    def id(self) -> str:
        """The case's name; ``bench-compare`` pools the passes of one id."""
        return f"{self.backend}-L{self.seqlen}-H{self.n_hashes}"

    def config(self) -> lshbench.LSHConfig:
        """chunk 64, one chunk back, ``n_buckets = 2 L / chunk_len`` (docs/design.md section 7)."""
        return lshbench.LSHConfig(
            n_hashes=self.n_hashes, n_buckets=2 * self.seqlen // CHUNK_LEN, chunk_len=CHUNK_LEN
        )


def calibration_workload() -> Callable[[], np.ndarray]:
    """The calibration: a fixed float32 attention block built on ``np.matmul``.

    Dense attention of 1024 queries over 1024 keys (two matmuls and a softmax), then a
    stable argsort of 8192 bucket ids, a gather of 8192 rows and 128 chunked (64 x 64)
    matmuls: the primitives the backends spend their time in, about 7 ms on one core of
    this machine class. It uses no lshbench code, so it measures the machine, never the
    change under test.

    Why not a plain square matmul: on a shared host the backends' time moves with the memory
    system (other tenants' cache and bandwidth use) by 20-40% while a cache-resident GEMM
    moves by 5%; normalized by a 512 x 512 matmul, unchanged runs drifted up to +23% from
    the baseline, normalized by this block up to +13% (60 run pairs of an unchanged
    tree, measured when the gate was built).
    """
    rng = np.random.default_rng(SEED)
    q, k, v = (rng.standard_normal((1024, D)).astype(DTYPE) for _ in range(3))  # (1024, d)
    bucket_ids = rng.integers(0, 64, size=8192)  # (8192,)
    rows = rng.standard_normal((8192, D)).astype(DTYPE)  # (8192, d)

    def block() -> np.ndarray:
        scores = np.matmul(q, k.T)  # (1024, d) @ (d, 1024) -> (1024, 1024)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out = np.matmul(scores, v)  # (1024, 1024) @ (1024, d) -> (1024, d)
        order = np.argsort(bucket_ids, kind="stable")  # (8192,)
        chunks = rows[order].reshape(128, 64, D)  # (8192, d) -> (128, 64, d)
        np.matmul(chunks, chunks.swapaxes(-1, -2))  # (128, 64, d) @ (128, d, 64) -> (128, 64, 64)
        return out

    return block


def register_from_env() -> list[str]:
    """Register the backends named in ``LSHBENCH_BENCH_REGISTER``; their names."""
    names = []
    for item in filter(None, (s.strip() for s in os.environ.get(REGISTER_ENV, "").split(";"))):
        name, sep, target = (s.strip() for s in item.partition("="))
        if not sep or ":" not in target:
            lshbench.core.config.fail(REGISTER_ENV, item, "expected name=module:Class")
        lshbench.register_backend(name, target, description=f"registered by {REGISTER_ENV}")
        names.append(name)
    return names


def bench_backends() -> list[str]:
    """Backends to benchmark: those of :data:`BACKENDS` available here, plus env-registered."""
    extra = register_from_env()
    infos = lshbench.list_backends()
    names = [b for b in BACKENDS if b in infos and infos[b].available]
    return names + [b for b in extra if b not in names]


def bench_cases() -> list[Case]:
    """Every (backend, L, n_hashes); a backend that does not hash runs once per L."""
    cases = []
    for name in bench_backends():
        hashes = N_HASHES if lshbench.get_backend(name).uses_hashing else N_HASHES[:1]
        cases += [Case(name, L, H) for L in SEQLENS for H in hashes]
    return cases


def plan(short_option: bool) -> Plan:
    """Short (CI) plan with ``--bench-short`` or ``LSHBENCH_BENCH_SHORT`` not 0/empty."""
    short = short_option or os.environ.get(SHORT_ENV, "") not in ("", "0")
    return PLAN_SHORT if short else PLAN_FULL


class Inputs(NamedTuple):
    qk: np.ndarray  # (1, L, d) float32
    v: np.ndarray  # (1, L, d) float32
    reference: Any  # lshbench.measurement.metrics.DenseReference, float64


_INPUTS: dict[int, Inputs] = {}


def bench_inputs(seqlen: int) -> Inputs:
    """Clustered inputs of length ``seqlen`` and their dense reference (cached per length).

    ``clustered`` (:func:`lshbench.measurement.inputs.make_inputs`): peaky attention, where
    LSH's error against dense is a number a reader can judge, unlike on i.i.d. gaussian inputs.
    """
    if seqlen not in _INPUTS:
        from lshbench.measurement.inputs import make_inputs
        from lshbench.measurement.metrics import dense_reference

        qk, v = make_inputs("clustered", 1, seqlen, D, seed=SEED, dtype=DTYPE)  # (1, L, d)
        _INPUTS[seqlen] = Inputs(qk, v, dense_reference(qk, v, causal=False))
    return _INPUTS[seqlen]


def thread_settings() -> dict[str, Any]:
    """The thread variables and the thread counts the libraries actually use."""
    from threadpoolctl import threadpool_info

    info: dict[str, Any] = {var: os.environ.get(var) for var in THREAD_VARS}
    info["blas"] = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
        for lib in threadpool_info()
    ]
    if "numba" in sys.modules:
        import numba

        info["numba_num_threads"] = numba.get_num_threads()
        try:
            info["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            info["numba_threading_layer"] = None
    return info
