"""Benchmarks: every available backend at fixed small configurations, plus calibration.

See ``bench/conftest.py`` for how to run it and what is recorded; the regression gate is
``lshbench bench-compare`` (:mod:`lshbench.bench_compare`).
"""

from __future__ import annotations

from typing import Any

import _suite as suite
import numpy as np
import pytest

import lshbench
from lshbench.measurement.cost_model import attention_flops
from lshbench.measurement.metrics import output_errors
from lshbench.measurement.phases import measure_memory

pytestmark = pytest.mark.benchmark(timer=suite.TIMER, disable_gc=True)

#: case id -> the deterministic numbers, measured in the case's first pass only
_INVARIANTS: dict[str, dict[str, Any]] = {}


def invariants(case: suite.Case, backend: lshbench.Backend, call) -> dict[str, Any]:
    """FLOPs, tracemalloc peak (own untimed pass) and error against dense of one call."""
    if case.id not in _INVARIANTS:
        data = suite.bench_inputs(case.seqlen)
        peak, out = measure_memory(call)
        B, L, d = data.qk.shape
        cfg = case.config()
        _INVARIANTS[case.id] = dict(
            flops=attention_flops(backend.uses_hashing, B, L, d, data.v.shape[-1], cfg),
            mem_alloc_peak_bytes=int(peak.alloc_peak_bytes),
            rel_err=output_errors(out, data.reference).rel_err,
        )
    return _INVARIANTS[case.id]


def test_backend(benchmark, case: suite.Case, pass_index: int, compiled, plan) -> None:
    """Time one attention call; record FLOPs, allocated bytes and error against dense."""
    backend = lshbench.get_backend(case.backend)
    cfg = case.config()
    data = suite.bench_inputs(case.seqlen)
    rot = None
    if backend.uses_hashing:
        rot = lshbench.random_rotations(suite.D, cfg, seed=suite.SEED, dtype=suite.DTYPE)

    def call() -> np.ndarray:
        return backend.attend(data.qk, data.v, cfg, rot)  # (1, L, d)

    call()  # first call outside every measurement (compiled already; page faults, caches)
    benchmark.extra_info.update(
        bench_id=case.id,
        pass_index=pass_index,
        backend=case.backend,
        seqlen=case.seqlen,
        n_hashes=case.n_hashes,
        d=suite.D,
        dtype=np.dtype(suite.DTYPE).name,
        config=cfg.as_dict(),
        **invariants(case, backend, call),
        compile_s=compiled.get(case.backend, 0.0),
    )
    benchmark.pedantic(call, rounds=plan.rounds, warmup_rounds=plan.warmup, iterations=1)


def test_calibration(benchmark, slot: str, plan) -> None:
    """The machine's speed now (runs right before every case): a fixed float32 block."""
    benchmark.extra_info.update(bench_id="calibration", kind="calibration")
    block = suite.calibration_workload()
    benchmark.pedantic(block, rounds=plan.rounds, warmup_rounds=plan.warmup, iterations=1)
