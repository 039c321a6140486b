"""pytest-benchmark suite of the lshbench backends: options, ordering, fixtures.

Run (the CI command, see ``.ci/run``; thread variables set before Python starts)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python -m pytest bench/ -q --bench-short --benchmark-json=.benchmarks/current.json
    lshbench bench-compare bench/baselines .benchmarks/current.json

The thread variables and the thread counts the libraries really use (threadpoolctl, Numba)
are recorded in ``machine_info["lshbench"]`` of the JSON.

Every backend benchmark records in ``extra_info`` (besides its case and ``compile_s``) the
deterministic numbers that ``lshbench bench-compare`` gates:

* ``flops``: nominal FLOPs of one call (:func:`lshbench.measurement.cost_model.attention_flops`);
* ``mem_alloc_peak_bytes``: tracemalloc peak of one call, in its own untimed pass
  (:func:`lshbench.measurement.phases.measure_memory`);
* ``rel_err``: relative Frobenius error against the float64 dense reference on the same
  float32 inputs (:func:`lshbench.measurement.metrics.output_errors`).

Timing: every case runs in several passes over the suite (``Plan``: 8 in short mode, 12 in
full), each ``benchmark.pedantic`` with a warm-up round and one call per round, GC off,
timer ``time.process_time``. Right before every pass of every case a ``calibration``
benchmark (:func:`_suite.calibration_workload`, a fixed float32 attention block built on
``np.matmul``) samples the machine's speed at that moment; ``bench-compare`` divides each
pass by the calibration that ran just before it and pools the passes of a case.

Environment: ``LSHBENCH_BENCH_SHORT=1`` (or ``--bench-short``) runs fewer rounds (CI);
``LSHBENCH_BENCH_REGISTER="name=module:Class[;...]"`` registers (or replaces) backends with
:func:`lshbench.register_backend` and benchmarks them too (used by the gate's end-to-end test).
"""

from __future__ import annotations

import os

import _suite  # first: pins the thread variables before NumPy is imported
import pytest

import lshbench


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-short",
        action="store_true",
        default=False,
        help=f"fewer rounds per benchmark (CI); same as {_suite.SHORT_ENV}=1",
    )


def _plan(config: pytest.Config) -> _suite.Plan:
    return _suite.plan(bool(config.getoption("--bench-short")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Cases pass-major (every case once, then again, ...), a calibration slot before each."""
    passes = range(_plan(metafunc.config).passes)
    runs = [(case, k) for k in passes for case in _suite.bench_cases()]
    if "case" in metafunc.fixturenames:
        ids = [f"{case.id}-p{k}" for case, k in runs]
        metafunc.parametrize(("case", "pass_index"), runs, ids=ids)
    if "slot" in metafunc.fixturenames:
        metafunc.parametrize("slot", [f"before-{c.id}-p{k}" for c, k in runs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run ``calibration[before-<case>-p<k>]`` right before its case."""
    calibrations = {}
    others = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "originalname", "") == "test_calibration" and callspec is not None:
            calibrations[callspec.id] = item
        else:
            others.append(item)
    ordered: list[pytest.Item] = []
    for item in others:
        callspec = getattr(item, "callspec", None)
        cal = calibrations.pop(f"before-{callspec.id}", None) if callspec is not None else None
        ordered += [cal, item] if cal is not None else [item]
    items[:] = ordered + list(calibrations.values())


@pytest.fixture(scope="session")
def plan(pytestconfig: pytest.Config) -> _suite.Plan:
    """Passes, rounds and warm-up rounds (short or full)."""
    return _plan(pytestconfig)


@pytest.fixture(scope="session")
def compiled(request: pytest.FixtureRequest) -> dict[str, float]:
    """Compile (or load from cache) every selected backend once, before any timing.

    Seconds spent per backend (Backend.compile; 0.0 for backends without a compile step).
    """
    selected = {
        item.callspec.params["case"].backend
        for item in request.session.items
        if "case" in getattr(getattr(item, "callspec", None), "params", {})
    }
    return {name: lshbench.get_backend(name).compile(_suite.DTYPE) for name in sorted(selected)}


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["lshbench"] = {
        "threads": _suite.thread_settings(),
        "plan": _plan(config)._asdict(),
        "timer": f"time.{_suite.TIMER.__name__}",
        "loadavg_at_end": list(os.getloadavg()),
        "calibration": "bench/_suite.py:calibration_workload (float32 attention block)",
        "lshbench_version": lshbench.__version__,
    }
