"""The ``numba`` backend: golden cases, agreement with ``numpy``, streaming memory, cache.

Agreement tests quantize ``qk`` and the rotations to multiples of 1/16 in [-2, 2] (like the
golden cases), so ``qk @ R`` is exact in any summation order and both backends must pick
the same buckets; outputs then agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from golden import golden_cases
from helpers import cache_stats_in_new_process
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import alloc_peak, assert_agrees_with_numpy, quantize, self_only_rows
from strategies import lsh_problems

import lshbench
from lshbench.core.sorting import sort_slots

pytestmark = pytest.mark.skipif(
    not lshbench.list_backends()["numba"].available,
    reason=f"numba backend not available: {lshbench.list_backends()['numba'].reason}",
)

CASES = golden_cases()
IDS = [f"{c.index}-{c.note.replace(' ', '_').replace(',', '')}" for c in CASES]
SETTINGS = settings(deadline=None, max_examples=60)


# --------------------------------------------------------------------------- golden


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_golden_buckets_and_sort_exact(numba_backend, case) -> None:
    """The backend's own hashing and counting sort reproduce Hugging Face's buckets."""
    for dtype in (np.float32, np.float64):
        qk = case.qk.astype(dtype)
        buckets = numba_backend.hash_buckets(qk, case.rotations, case.config)
        np.testing.assert_array_equal(buckets, case.buckets)
        if case.config.is_short(qk.shape[0]):
            continue  # the dense path sorts nothing
        positions = numba_backend.sorted_positions(qk, case.rotations, case.config)
        want = sort_slots(case.buckets[None], case.config.total_buckets).positions[0]
        np.testing.assert_array_equal(positions, want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_golden_outputs_batched(numba_backend, case) -> None:
    """Every golden case as a batch of two sequences (the second with values * -2)."""
    qk = np.stack([case.qk, case.qk])  # (2, L, d)
    v = np.stack([case.v, -2 * case.v])  # (2, L, dv)
    want = np.stack([case.out, -2 * case.out])
    out64 = numba_backend.attend(qk.astype(np.float64), v.astype(np.float64), case.config,
                                 case.rotations)  # fmt: skip
    assert out64.dtype == np.float64 and out64.shape == want.shape
    np.testing.assert_allclose(out64, want, rtol=0, atol=1e-9)
    out32 = numba_backend.attend(qk, v, case.config, case.rotations)
    assert out32.dtype == np.float32
    rows = np.setdiff1d(np.arange(case.qk.shape[0]), case.self_only_rows)
    np.testing.assert_allclose(out32[:, rows], want[:, rows], rtol=0, atol=2e-4)


# ------------------------------------------------------------ agreement with numpy


@SETTINGS
@given(problem=lsh_problems(max_chunks_before=2, max_chunks_after=1))
def test_agrees_with_numpy_on_generated_problems(numba_backend, problem) -> None:
    """Integer and factorized buckets, causal or not, 0-2 back, 0-1 ahead, batch or not."""
    cfg, qk, v, rot = problem
    assert_agrees_with_numpy(numba_backend, cfg, qk, v, rot)


@SETTINGS
@given(problem=lsh_problems(), data=st.data())
def test_hashing_matches_numpy_on_generated_problems(numba_backend, problem, data) -> None:
    cfg, qk, _, rot = problem
    qk, rot = quantize(qk), quantize(rot)
    if data.draw(st.booleans()):
        qk[..., : qk.shape[-2] // 3, :] = 0  # zero vectors: ties everywhere, bucket 0
    np.testing.assert_array_equal(
        numba_backend.hash_buckets(qk, rot, cfg), lshbench.hash_buckets(qk, rot, cfg)
    )


@pytest.mark.parametrize(
    ("L", "H", "m", "n_buckets", "before", "after", "causal"),
    [
        (1000, 2, 40, 64, 1, 0, False),  # L % m != 0: chunks straddle rounds; > ROWS rows
        (1000, 2, 40, (8, 6), 2, 1, True),
        (777, 3, 37, 16, 0, 1, True),
        (304, 4, 64, (4, 4, 2), 1, 1, False),
        (96, 2, 8, (64, 64, 64), 1, 0, True),  # nb >> L: the merge-sort path
        (256, 3, 256, 8, 3, 2, False),  # m = L through _attend: windows repeat chunks
    ],
)
def test_agrees_with_numpy_on_larger_shapes(numba_backend, L, H, m, n_buckets, before,
                                            after, causal) -> None:  # fmt: skip
    cfg = lshbench.LSHConfig(n_hashes=H, n_buckets=n_buckets, chunk_len=m, causal=causal,
                             chunks_before=before, chunks_after=after)  # fmt: skip
    rng = np.random.default_rng(L * H + m)
    qk = rng.standard_normal((2, L, 24))
    v = rng.standard_normal((2, L, 20))
    rot = lshbench.random_rotations(24, cfg, seed=L)
    if cfg.is_short(L):  # the base class would take the dense path: call the kernel itself
        want = lshbench.get_backend("numpy")._attend(quantize(qk), v, cfg, quantize(rot))
        got = numba_backend._attend(quantize(qk), v, cfg, quantize(rot))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    else:
        assert_agrees_with_numpy(numba_backend, cfg, qk, v, rot)


def _assert_scales_with_values(backend, cfg, qk, v, rot, dtype, top: float) -> None:
    """numba on ``v`` scaled to ``max|v| = top`` (near the dtype's largest value): a finite
    output equal to ``top`` times numpy's float64 output on the unit-scale ``v``."""
    qk, rot = quantize(qk), quantize(rot)
    unit = v.astype(np.float64) / np.abs(v).max()  # max |unit| = 1
    ref = lshbench.get_backend("numpy").attend(qk, unit, cfg, rot)
    out = backend.attend(qk.astype(dtype), (unit * top).astype(dtype), cfg, rot)
    assert out.dtype == dtype and np.isfinite(out).all()
    keep = np.ones(out.shape[:-1], bool)
    if dtype == np.float32:  # the float32 caveat rows, as in assert_agrees_with_numpy
        skip = self_only_rows(qk if qk.ndim == 3 else qk[None], rot, cfg)
        keep = ~(skip if qk.ndim == 3 else skip[0])
    atol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out[keep] / top, ref[keep], rtol=0, atol=atol)


@SETTINGS
@given(
    problem=lsh_problems(),
    dtype=st.sampled_from([np.float32, np.float64]),
    fraction=st.floats(1e-3, 1.0),
    positive=st.booleans(),
)
def test_values_near_the_largest_float_give_finite_outputs(
    numba_backend, problem, dtype, fraction, positive
) -> None:
    """Like numpy, numba computes values up to the dtype's largest finite value: the
    output, a convex combination of rows of v, is finite and correctly scaled."""
    cfg, qk, v, rot = problem
    v = np.abs(v) if positive else v  # same-sign values: the unnormalized sums add up
    top = fraction * float(np.finfo(dtype).max)
    _assert_scales_with_values(numba_backend, cfg, qk, v, rot, dtype, top)


@pytest.mark.parametrize(
    ("dtype", "top"),
    [(np.float32, 3e38), (np.float32, 1e37), (np.float32, float(np.finfo(np.float32).max)),
     (np.float64, 1e308), (np.float64, 1e305), (np.float64, float(np.finfo(np.float64).max))],
)  # fmt: skip
@pytest.mark.parametrize("weighting", ["multiplicity", "count-once"])
def test_large_values_at_a_realistic_shape(numba_backend, dtype, top, weighting) -> None:
    """L = 512, d = 64, 2 rounds of 16 buckets, chunks of 64 (windows of 128 keys)."""
    cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=16, chunk_len=64, weighting=weighting)
    rng = np.random.default_rng(7)
    qk, v = rng.standard_normal((2, 512, 64))
    rot = lshbench.random_rotations(64, cfg, seed=0)
    _assert_scales_with_values(numba_backend, cfg, qk, np.abs(v), rot, dtype, top)


def test_plain_loops_path_agrees_with_blas_path(numba_backend, monkeypatch) -> None:
    """The chunk products go to BLAS or to plain loops by size; both give the same answer."""
    import lshbench.backends.numba_lsh as numba_lsh

    cfg = lshbench.LSHConfig(n_hashes=3, n_buckets=(4, 6), chunk_len=16, causal=True)
    rng = np.random.default_rng(5)
    qk, v = quantize(rng.standard_normal((400, 12))), rng.standard_normal((400, 10))
    rot = quantize(lshbench.random_rotations(12, cfg, seed=5, dtype=np.float64))
    assert numba_lsh.use_blas(16, cfg.window_len(400), 12)
    with_blas = numba_backend.attend(qk, v, cfg, rot)
    monkeypatch.setattr(numba_lsh, "LOOPS_MAX_MACS", 10**9)  # force the loops
    assert not numba_lsh.use_blas(16, cfg.window_len(400), 12)
    with_loops = numba_backend.attend(qk, v, cfg, rot)
    np.testing.assert_allclose(with_loops, with_blas, rtol=0, atol=1e-12)
    want = lshbench.get_backend("numpy").attend(qk, v, cfg, rot)
    np.testing.assert_allclose(with_loops, want, rtol=0, atol=1e-9)


def test_tie_between_halves_goes_to_the_plus_half(numba_backend) -> None:
    """x @ R = [1, -1]: +1 at column 0 ties -(-1) at column 1 + 2; first index (0) wins."""
    cfg = lshbench.LSHConfig(n_hashes=1, n_buckets=4, chunk_len=2)
    qk = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    rot = np.array([[1.0, -1.0], [0.0, 0.0]])[:, None, :]  # (d=2, H=1, 2)
    np.testing.assert_array_equal(numba_backend.hash_buckets(qk, rot, cfg), [[0, 0, 1, 0]])
    np.testing.assert_array_equal(lshbench.hash_buckets(qk, rot, cfg), [[0, 0, 1, 0]])


# ------------------------------------------------------------------ memory, compile


def _alloc_peak(backend, L: int, n_hashes: int) -> int:
    return alloc_peak(backend, lshbench.LSHConfig(n_hashes=n_hashes, n_buckets=64, chunk_len=64), L)


def test_extra_memory_does_not_grow_with_n_hashes(numba_backend) -> None:
    """Rounds are streamed: only the int32 sorted positions (4*H*L bytes) depend on H."""
    L = 4096
    peak1, peak8 = _alloc_peak(numba_backend, L, 1), _alloc_peak(numba_backend, L, 8)
    out_bytes = L * 32 * 4
    assert peak1 >= out_bytes  # tracemalloc sees the kernels' buffers
    assert peak8 - peak1 <= 4 * 7 * L + 64 * 1024
    numpy_growth = _alloc_peak(lshbench.get_backend("numpy"), L, 8) / _alloc_peak(
        lshbench.get_backend("numpy"), L, 1
    )
    assert numpy_growth > 4  # the reference materializes every round: the test can fail


def test_compile_reports_seconds(numba_backend) -> None:
    seconds = numba_backend.compile(np.float32)
    assert isinstance(seconds, float) and seconds >= 0


def test_second_process_loads_kernels_from_cache(numba_backend) -> None:
    """After this process compiled (and cached) the kernels, a new process recompiles none."""
    names = ["hash_all", "sort_rounds", "key_scales", "attend_all", "chunk_ids"]
    stats = cache_stats_in_new_process("numba", "lshbench.backends._numba_kernels", names)
    for name, (hits, misses) in stats.items():
        assert misses == 0, f"{name} was recompiled in a second process: {stats}"
        assert hits >= 1, f"{name} not loaded from the cache: {stats}"
    assert stats["attend_all"][0] >= 2 and stats["hash_all"][0] >= 2  # float32 and float64


def test_bad_input_is_rejected_before_work(numba_backend) -> None:
    cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=8, chunk_len=7)
    qk = np.zeros((20, 4), np.float32)
    with pytest.raises(lshbench.ConfigError, match="chunk_len=7"):
        numba_backend.attend(qk, qk, cfg, lshbench.random_rotations(4, cfg))
    with pytest.raises(lshbench.ConfigError, match=r"rotations\.shape"):
        numba_backend.attend(qk[:14], qk[:14], cfg, np.zeros((4, 2, 3), np.float32))
