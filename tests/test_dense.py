"""The dense backend: exact, same masks, and memory O(L * block) rather than O(L^2)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

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
