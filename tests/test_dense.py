"""The dense backend: exact, same masks, and memory O(L * block) rather than O(L^2)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers import cache_stats_in_new_process

import lshbench


def naive_attention(qk: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """Textbook O(L^2) shared-QK attention with the section-2 masks (float64)."""
    L, d = qk.shape
    k = qk / np.sqrt(np.mean(qk**2, axis=-1, keepdims=True) + 1e-6) / np.sqrt(d)
    s = qk @ k.T  # (L, d) @ (d, L) -> (L, L)
    i, j = np.indices((L, L))
    if causal:
        s[j > i] = -1e9
    s[j == i] = -1e5
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ v


@pytest.mark.parametrize("L", [1, 2, 7, 64, 513, 2048])
@pytest.mark.parametrize("causal", [False, True])
def test_dense_equals_naive(L: int, causal: bool) -> None:
    rng = np.random.default_rng(L)
    qk = rng.standard_normal((L, 16))
    v = rng.standard_normal((L, 8))
    cfg = lshbench.LSHConfig(causal=causal)
    out = lshbench.get_backend("dense").attend(qk, v, cfg)
    np.testing.assert_allclose(out, naive_attention(qk, v, causal), rtol=0, atol=1e-12)


def test_dense_small_blocks_equal_one_block() -> None:
    from lshbench.core.dense import dense_attention

    rng = np.random.default_rng(0)
    qk = rng.standard_normal((2, 100, 8))
    v = rng.standard_normal((2, 100, 3))
    np.testing.assert_allclose(
        dense_attention(qk, v, True, block_rows=7),
        dense_attention(qk, v, True, block_rows=100),
        rtol=0,
        atol=1e-14,
    )


def test_dense_memory_is_blocked() -> None:
    """tracemalloc peak at L = 16384 is under 1/4 of the naive L x L float32 score matrix."""
    L, d = 16384, 64
    rng = np.random.default_rng(0)
    qk = rng.standard_normal((L, d), dtype=np.float32)
    v = rng.standard_normal((L, d), dtype=np.float32)
    cfg = lshbench.LSHConfig()
    dense = lshbench.get_backend("dense")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = dense.attend(qk, v, cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    naive_scores = L * L * 4
    assert out.shape == (L, d)
    assert peak < naive_scores / 4, f"peak {peak / 2**20:.0f} MiB"


def test_dense_ignores_rotations_and_hashing_fields() -> None:
    rng = np.random.default_rng(1)
    qk, v = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    dense = lshbench.get_backend("dense")
    a = dense.attend(qk, v, lshbench.LSHConfig(n_hashes=3, chunk_len=7))  # 3*30 % 7 != 0
    b = dense.attend(qk, v, lshbench.LSHConfig(n_hashes=1, chunk_len=64))
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------- the Numba kernel against the reference


def _dense_rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """Relative Frobenius error, as the benchmarks report it (``rel_err``)."""
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("B", "L", "d", "dv"),
    [(1, 1, 4, 3), (1, 2, 8, 8), (2, 31, 5, 7), (1, 255, 16, 16), (3, 256, 16, 4),
     (1, 257, 16, 16), (2, 600, 64, 64), (1, 1000, 33, 65)],
)  # fmt: skip
def test_dense_kernel_equals_numpy_reference(B: int, L: int, d: int, dv: int, causal: bool) -> None:
    """float64: the blocked Numba kernel computes what the NumPy reference computes, for
    lengths below, at and past the query and key blocks and odd d, dv."""
    from lshbench.backends.dense import KEY_BLOCK, QUERY_BLOCK

    assert KEY_BLOCK % QUERY_BLOCK == 0
    rng = np.random.default_rng(L + d)
    qk = rng.standard_normal((B, L, d)) * 2
    v = rng.standard_normal((B, L, dv))
    cfg = lshbench.LSHConfig(causal=causal)
    ref = lshbench.get_backend("dense-numpy").attend(qk, v, cfg)
    out = lshbench.get_backend("dense").attend(qk, v, cfg)
    assert out.dtype == np.float64 and out.shape == (B, L, dv)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("B", "L", "d", "dv"),
    [(1, 1, 4, 3), (2, 31, 5, 7), (3, 256, 16, 4), (1, 257, 16, 16), (1, 1000, 33, 65)],
)
def test_dense_kernel_computes_separate_queries_and_keys(B: int, L: int, d: int, dv: int) -> None:
    """Separate QK through the fused kernel: ``softmax(q k^T) v`` with the keys as given,
    no self mask, equal to the written-out product (float64) and to the NumPy reference."""
    rng = np.random.default_rng(L + d)
    q, k = rng.standard_normal((B, L, d)) * 2, rng.standard_normal((B, L, d))
    v = rng.standard_normal((B, L, dv))
    cfg = lshbench.LSHConfig(qk="separate")
    s = q @ k.transpose(0, 2, 1)  # (B, L, d) @ (B, d, L) -> (B, L, L)
    a = np.exp(s - s.max(-1, keepdims=True))
    want = (a / a.sum(-1, keepdims=True)) @ v  # (B, L, L) @ (B, L, dv) -> (B, L, dv)
    out = lshbench.get_backend("dense").attend(q, v, cfg, k=k)
    ref = lshbench.get_backend("dense-numpy").attend(q, v, cfg, k=k)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref, want, rtol=0, atol=1e-12)
    # the shared path would normalize and mask; separate keys equal to the queries are not
    same = lshbench.get_backend("dense").attend(q, v, cfg, k=q)
    s = q @ q.transpose(0, 2, 1)
    a = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(same, (a / a.sum(-1, keepdims=True)) @ v, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("B", "L"), [(1, 1000), (3, 777)])
def test_dense_separate_float32_agrees_with_float64(B: int, L: int) -> None:
    """float32 separate QK against the float64 reference on the same inputs: relative
    error below 1e-5 with scores of a trained head's size (|q . k| up to about 30)."""
    rng = np.random.default_rng(B)
    q = (rng.standard_normal((B, L, 64)) * 0.7).astype(np.float32)
    k = (rng.standard_normal((B, L, 64)) * 0.7).astype(np.float32)
    v = rng.standard_normal((B, L, 32)).astype(np.float32)
    cfg = lshbench.LSHConfig(qk="separate")
    ref = lshbench.get_backend("dense-numpy").attend(
        q.astype(np.float64), v.astype(np.float64), cfg, k=k.astype(np.float64)
    )
    out = lshbench.get_backend("dense").attend(q, v, cfg, k=k)
    assert out.dtype == np.float32
    assert _dense_rel_err(out, ref) < 1e-5


def test_dense_kernel_masks_a_query_with_no_other_key() -> None:
    """Causal query 0 (and L = 1) sees only itself: its own value, as in the reference."""
    rng = np.random.default_rng(5)
    qk, v = rng.standard_normal((40, 8)), rng.standard_normal((40, 3))
    out = lshbench.get_backend("dense").attend(qk, v, lshbench.LSHConfig(causal=True))
    np.testing.assert_allclose(out[0], v[0], rtol=0, atol=1e-15)
    one = lshbench.get_backend("dense").attend(qk[:1], v[:1], lshbench.LSHConfig())
    np.testing.assert_allclose(one, v[:1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", ["gaussian", "peaked"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("B", "L"), [(1, 1000), (3, 777)])
def test_dense_float32_agrees_with_float64_reference(kind: str, causal: bool, B: int, L: int):
    """float32 dense against the float64 reference on the same (float32) inputs: relative
    error below 1e-5, on random input and on peaked input (|q| about 110, scores rounded
    at about 1e-5: the hard case), L not a multiple of the blocks."""
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs(kind, B, L, 64, seed=1, dtype=np.float32)
    cfg = lshbench.LSHConfig(causal=causal)
    ref = lshbench.get_backend("dense-numpy").attend(
        qk.astype(np.float64), v.astype(np.float64), cfg
    )
    out = lshbench.get_backend("dense").attend(qk, v, cfg)
    assert out.dtype == np.float32
    assert _dense_rel_err(out, ref) < 1e-5


def test_dense_memory_grows_linearly() -> None:
    """tracemalloc peak and resident high-water growth of one call, L = 4096 -> 32768
    (8x): about 8x (the kernel holds keys, output and per-thread blocks), far from the
    64x of anything L x L."""
    from lshbench.measurement.phases import measure_memory

    dense = lshbench.get_backend("dense")
    cfg = lshbench.LSHConfig()
    peaks = {}
    for L in (4096, 32768):
        rng = np.random.default_rng(0)
        qk = rng.standard_normal((L, 64), dtype=np.float32)
        v = rng.standard_normal((L, 64), dtype=np.float32)
        dense.attend(qk, v, cfg)  # compiled, pages touched
        peaks[L], _ = measure_memory(lambda qk=qk, v=v: dense.attend(qk, v, cfg))
    alloc = peaks[32768].alloc_peak_bytes / peaks[4096].alloc_peak_bytes
    assert 6 < alloc < 9, alloc
    assert peaks[32768].alloc_peak_bytes < 2 * 32768 * 64 * 4 * 1.1  # keys + output
    rss = peaks[32768].rss_peak_bytes
    if rss is not None:  # /proc/self/clear_refs writable
        assert rss < 4 * peaks[32768].alloc_peak_bytes, rss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_polynomial_exp_matches_numpy(dtype: type) -> None:
    """The kernels' vectorizable exp (range reduction, polynomial, 2**k from its bits)
    against np.exp in float64: within 3 float32 ulps / 4e-16 relative over its range, and
    exactly 0 below the underflow limit."""
    from numba import njit

    from lshbench.backends._numba_kernels import exp_nonpositive

    @njit
    def exps(t):
        out = np.empty_like(t)
        for i in range(t.size):
            out[i] = exp_nonpositive(t[i])
        return out

    low = -87.0 if dtype == np.float32 else -708.0
    t = np.concatenate([np.linspace(low, 0.0, 200_001), -np.logspace(-30, 0, 1001)]).astype(dtype)
    want = np.exp(t.astype(np.float64))
    rel = np.abs(exps(t).astype(np.float64) - want) / want
    assert rel.max() < (3.6e-7 if dtype == np.float32 else 4e-16), rel.max()
    below = np.array([low - 1, low * 2, -1e30], dtype=dtype)
    assert (exps(below) == 0).all()


def test_second_process_loads_dense_kernels_from_cache() -> None:
    """After this process compiled (and cached) the dense kernels, a new process loads them
    for both dtypes and recompiles none."""
    dense = lshbench.get_backend("dense")
    dense.compile(np.float32)
    dense.compile(np.float64)
    names = ["blocked_keys", "dense_blocks"]
    stats = cache_stats_in_new_process("dense", "lshbench.backends._dense_kernels", names)
    for name, (hits, misses) in stats.items():
        assert misses == 0 and hits >= 2, f"{name}: {stats}"


@pytest.mark.parametrize("causal", [False, True])
def test_dense_query_groups_give_the_same_output(causal: bool) -> None:
    """Work items of 1 or several query blocks (each key block read once per group) compute
    the same numbers, bit for bit, including a partial last group."""
    import numba

    from lshbench.backends import _dense_kernels as kernels
    from lshbench.backends._numba_kernels import key_scales
    from lshbench.backends.dense import KEY_BLOCK, QUERY_BLOCK, query_group

    assert query_group(1, 2048, 2) == 8 and query_group(1, 2048, 16) == 1
    assert query_group(1, 100, 2) == 1 and query_group(64, 2048, 2) == 8
    rng = np.random.default_rng(7)
    B, L, d, dv = 2, 1000, 16, 8
    qk = rng.standard_normal((B, L, d)).astype(np.float32)
    v = rng.standard_normal((B, L, dv)).astype(np.float32)
    nt, bq, bk = numba.get_num_threads(), QUERY_BLOCK, KEY_BLOCK
    scale = np.empty((B, L))
    key_scales(qk, scale)
    kt = np.empty((B, L * d), np.float32)
    kernels.blocked_keys(qk, scale, bk, kt)
    outs = []
    for group in (1, 3, 8):
        out = np.empty((B, L, dv), np.float32)
        scratch = (
            np.empty((nt, bq * bk), np.float32), np.empty((nt, d * bk), np.float32),
            np.empty((nt, bq, dv), np.float32), np.empty((nt, group * bq, dv)),
            np.empty((nt, group * bq, 3)),
        )  # fmt: skip
        kernels.dense_blocks(qk, kt, v, causal, True, bk, out, scratch)  # shared QK
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    cfg = lshbench.LSHConfig(causal=causal)
    np.testing.assert_array_equal(outs[0], lshbench.get_backend("dense").attend(qk, v, cfg))
