"""Measurement phases (timing summary, memory peaks) and the cost model."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import backend_params

import lshbench
from lshbench.core.hashing import pipeline_buckets
from lshbench.measurement.cost_model import (
    attention_flops,
    coverage_bytes,
    memory_model,
    reference_bytes,
    reference_work_bytes,
)
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.metrics import dense_reference, window_metrics
from lshbench.measurement.phases import (
    calibrate_number,
    measure_memory,
    summarize,
    time_interleaved,
    warm_up,
)

MiB = 2**20


def test_summary_statistics() -> None:
    samples = [0.5, 0.1, 0.2, 0.3, 0.4]
    s = summarize(samples)
    assert s.time_median_s == pytest.approx(0.3)
    assert s.time_iqr_s == pytest.approx(0.4 - 0.2)
    assert s.time_min_s == 0.1 and s.n_samples == 5
    assert s.unstable  # IQR/median = 0.67
    steady = summarize([1.0, 1.01, 0.99, 1.0, 1.02])
    assert not steady.unstable and steady.samples == [1.0, 1.01, 0.99, 1.0, 1.02]


def test_interleaved_rounds_and_warm_up() -> None:
    order: list[str] = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    samples = time_interleaved(calls, repeats=3, number={"a": 2})
    assert order == ["a", "a", "b"] * 3  # ABAB...: drift hits both alike
    assert len(samples["a"]) == len(samples["b"]) == 3
    assert len(warm_up(lambda: None)) == 2
    assert calibrate_number(0.001) == 10 and calibrate_number(1.0) == 1


@pytest.mark.parametrize("mib", [64, 160])
def test_memory_peaks_see_a_known_array(mib: int) -> None:
    peak, out = measure_memory(lambda: np.ones(mib * MiB // 8))
    assert out.nbytes == mib * MiB
    assert peak.alloc_peak_bytes == pytest.approx(mib * MiB, rel=0.02)
    if peak.rss_peak_bytes is not None:  # /proc/self/clear_refs writable
        assert peak.rss_peak_bytes == pytest.approx(mib * MiB, rel=0.05)


def test_untouched_memory_is_allocated_but_not_resident() -> None:
    peak, _ = measure_memory(lambda: np.empty(128 * MiB // 8))
    assert peak.alloc_peak_bytes == pytest.approx(128 * MiB, rel=0.02)
    if peak.rss_peak_bytes is not None:
        assert peak.rss_peak_bytes < 16 * MiB


def test_flops_follow_design_5_4() -> None:
    cfg = lshbench.LSHConfig(n_hashes=8, n_buckets=512, chunk_len=64)
    L, d = 16384, 64
    W = 2 * 64
    expected = 4 * 8 * L * W * d + 2 * 8 * L * d * 512 // 2
    assert attention_flops(True, 1, L, d, d, cfg) == expected
    assert attention_flops(True, 3, L, d, d, cfg) == 3 * expected
    assert attention_flops(False, 1, L, d, d, None) == 4 * L * L * d
    assert attention_flops(True, 1, 64, d, d, cfg) == 4 * 64 * 64 * d  # L <= chunk: dense


@pytest.mark.parametrize("backend", [*backend_params("numpy", "numba", "dense"), "dense-numpy"])
@pytest.mark.parametrize(("L", "H", "m"), [(2048, 1, 32), (2048, 4, 64)])
@pytest.mark.parametrize(("qk", "dv"), [("shared", 64), ("shared", 32), ("separate", 32)])
def test_memory_model_close_to_measured(
    backend: str, L: int, H: int, m: int, qk: str, dv: int
) -> None:
    """The analytic model is within 25% of the tracemalloc peak (a large gap would mean
    hidden temporaries or a wrong model), for shared and separate queries and keys and
    values narrower than the keys (where no output-sized array hides the others)."""
    q, v = make_inputs("gaussian", 1, L, 64, seed=0, dtype=np.float32)
    v = np.ascontiguousarray(v[..., :dv])
    k = np.ascontiguousarray(q[..., ::-1]) if qk == "separate" else None
    cfg = lshbench.LSHConfig(n_hashes=H, n_buckets=2 * L // m, chunk_len=m, qk=qk)
    R = lshbench.random_rotations(64, cfg, seed=0)
    b = lshbench.get_backend(backend)
    b.compile(np.float32)
    b.attend(q, v, cfg, R, k=k)
    peak, _ = measure_memory(lambda: b.attend(q, v, cfg, R, k=k))
    import numba

    threads = numba.get_num_threads()  # models of backends without threads ignore it
    model = memory_model(b.spec.memory_model, 1, L, 64, dv, 4, cfg, threads)
    assert model == pytest.approx(peak.alloc_peak_bytes, rel=0.25)


def test_checking_an_input_allocates_nothing_its_size() -> None:
    """Validation reads the input (finite values, score range) without a copy of it: a
    call's memory peak is the backend's, not the check's."""
    from lshbench.core.validation import check_inputs

    x = np.ones((1, 4096, 64), np.float32)
    peak, _ = measure_memory(lambda: check_inputs(x, x, lshbench.LSHConfig(), need_rotations=False))
    assert peak.alloc_peak_bytes < x.nbytes // 16


@pytest.mark.parametrize(
    ("method", "weighting", "H", "dtype"),
    [
        ("lsh", "multiplicity", 8, np.float32),
        ("lsh", "count-once", 2, np.float64),
        ("random", "count-once", 4, np.float32),
        ("local", "multiplicity", 4, np.float32),
    ],
)
def test_accuracy_phase_and_reference_stay_within_their_models(
    method: str, weighting: str, H: int, dtype: type
) -> None:
    """What a sweep checks against --mem-budget covers the worker's accuracy work: the
    dense reference and the window metrics of every method and weighting peak at or below
    their models (and not far below: a model far above would skip cells that fit)."""
    B, L, d, m = 2, 4096, 64, 64
    qk, v = make_inputs("gaussian", B, L, d, seed=0, dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    ref_peak, ref = measure_memory(lambda: dense_reference(qk, v, False))
    inputs = qk.nbytes + v.nbytes
    ref_model = reference_bytes(B, L, d, d, itemsize) - inputs + reference_work_bytes(B, L, d, d)
    assert ref_peak.alloc_peak_bytes <= ref_model <= 1.5 * ref_peak.alloc_peak_bytes

    cfg = lshbench.LSHConfig(
        n_hashes=H, n_buckets=2 * L // m, chunk_len=m, method=method, weighting=weighting
    )
    R = lshbench.random_rotations(d, cfg, seed=0, dtype=dtype)
    peak, _ = measure_memory(lambda: window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, ref))
    model = coverage_bytes(B, L, d, itemsize, cfg)
    assert peak.alloc_peak_bytes <= model <= 1.5 * peak.alloc_peak_bytes


@pytest.mark.parametrize("method", ["lsh", "random", "local"])
@pytest.mark.parametrize(("H", "m"), [(1, 64), (2, 64), (8, 64), (4, 48), (3, 100), (8, 32)])
def test_cost_model_query_block_matches_the_numba_backend(method: str, H: int, m: int) -> None:
    """The memory model repeats the numba backend's query-block rule (importing the backend
    would import numba): the two must agree."""
    pytest.importorskip("numba")
    from lshbench.backends.numba_lsh import query_block
    from lshbench.measurement.cost_model import numba_query_block

    cfg = lshbench.LSHConfig(n_hashes=H, n_buckets=8, chunk_len=m, method=method)
    assert numba_query_block(cfg) == query_block(cfg)
