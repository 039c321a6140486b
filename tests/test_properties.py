"""Identities of the algorithm (docs/design.md section 2) as property tests over random
configurations.

Each LSH backend available here is checked. ``_attend`` is called where a test must force
the chunked path even when ``L <= chunk_len`` (``attend`` would take the exact dense path).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import backend_params
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import lsh_problems

import lshbench
from lshbench.core.attention import mask_scores, normalize_keys
from lshbench.core.sorting import sort_slots

SETTINGS = settings(max_examples=40, deadline=None)
LSH = backend_params("numpy", "numba", "torch-lsh")


def batched(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 3 else x[None]


@pytest.mark.parametrize("backend", LSH)
@SETTINGS
@given(problem=lsh_problems(), causal=st.booleans())
def test_one_chunk_per_round_equals_dense(backend, problem, causal) -> None:
    """chunk_len = L, 1 chunk back: every key appears equally often, so LSH == dense."""
    cfg, qk, v, R = problem
    L = qk.shape[-2]
    one = lshbench.LSHConfig(
        n_hashes=cfg.n_hashes,
        n_buckets=cfg.n_buckets,
        chunk_len=L,
        causal=causal,
        chunks_before=1,
        chunks_after=0,
    )
    lsh = lshbench.get_backend(backend)._attend(batched(qk), batched(v), one, R)
    dense = lshbench.get_backend("dense").attend(batched(qk), batched(v), one)
    np.testing.assert_allclose(lsh, dense, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", LSH)
@SETTINGS
@given(problem=lsh_problems(), n_hashes=st.integers(2, 4))
def test_identical_rotations_equal_one_round(backend, problem, n_hashes) -> None:
    cfg, qk, v, R = problem
    L = qk.shape[-2]
    m = cfg.chunk_len
    if L % m:  # one round must be chunkable on its own
        L = (L // m) * m
        qk, v = qk[..., :L, :], v[..., :L, :]
    assume(L > m)  # one round of chunks, not the exact short path
    one = lshbench.LSHConfig(1, cfg.n_buckets, m, cfg.causal, cfg.chunks_before, cfg.chunks_after)
    many = lshbench.LSHConfig(
        n_hashes, cfg.n_buckets, m, cfg.causal, cfg.chunks_before, cfg.chunks_after
    )
    R1 = R[:, :1, :]
    RH = np.repeat(R1, n_hashes, axis=1)  # (d, H, rot/2): the same rotation every round
    be = lshbench.get_backend(backend)
    np.testing.assert_allclose(
        be.attend(qk, v, many, RH), be.attend(qk, v, one, R1), rtol=0, atol=1e-10
    )


def multiset_softmax_reference(cfg, qk, v, R) -> np.ndarray:
    """ONE softmax over the concatenation of each query's H windows (duplicates counted)."""
    qk, v = batched(qk), batched(v)
    B, L, _ = qk.shape
    buckets = lshbench.hash_buckets(qk, R, cfg)  # (B, H, L)
    keys = lshbench.window_positions(buckets, cfg)  # (B, H, L, W)
    keys = keys.transpose(0, 2, 1, 3).reshape(B, L, -1)  # (B, L, H*W) all slots of all rounds
    khat = normalize_keys(qk)
    out = np.empty(qk.shape[:2] + v.shape[-1:])
    for b in range(B):
        # (L, 1, d) * (L, H*W, d) summed over d -> (L, H*W)
        scores = np.einsum("id,ikd->ik", qk[b], khat[b][keys[b]])
        mask_scores(scores[:, None, :], np.arange(L)[:, None], keys[b], cfg.causal)  # (L, 1, H*W)
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[b] = np.einsum("ik,ikv->iv", p, v[b][keys[b]])  # (L, H*W) x (L, H*W, dv) -> (L, dv)
    return out


@pytest.mark.parametrize("backend", LSH)
@SETTINGS
@given(problem=lsh_problems())
def test_output_is_one_softmax_over_the_multiset_of_windows(backend, problem) -> None:
    cfg, qk, v, R = problem
    out = lshbench.get_backend(backend)._attend(batched(qk), batched(v), cfg, R)
    np.testing.assert_allclose(out, multiset_softmax_reference(cfg, qk, v, R), rtol=0, atol=1e-10)


@SETTINGS
@given(problem=lsh_problems())
def test_inverse_sort_is_the_inverse_permutation(problem) -> None:
    cfg, qk, _, R = problem
    buckets = lshbench.hash_buckets(batched(qk), R, cfg)  # (B, H, L)
    B, H, L = buckets.shape
    perm, inverse, positions = sort_slots(buckets, cfg.total_buckets)
    ar = np.arange(H * L)
    for b in range(B):
        assert sorted(perm[b]) == list(ar)
        np.testing.assert_array_equal(perm[b][inverse[b]], ar)
        np.testing.assert_array_equal(inverse[b][perm[b]], ar)
        offset = (buckets[b] + np.arange(H)[:, None] * cfg.total_buckets).reshape(-1)
        key = (L * offset + ar % L)[perm[b]]
        assert np.all(np.diff(key) > 0)  # sorted by (round, bucket, position), keys unique
        np.testing.assert_array_equal(positions[b], perm[b] % L)
        # sorted slots [r*L, (r+1)*L) all belong to round r
        np.testing.assert_array_equal(perm[b] // L, np.repeat(np.arange(H), L))


@pytest.mark.parametrize("backend", LSH)
@SETTINGS
@given(problem=lsh_problems(), cut=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_causality_for_fixed_buckets(backend, problem, cut, seed) -> None:
    """Future tokens scaled by 2 (same buckets: argmax is scale-invariant, exact in binary)
    and with new values leave every past output bit-identical."""
    cfg, qk, v, R = problem
    cfg = lshbench.LSHConfig(
        cfg.n_hashes, cfg.n_buckets, cfg.chunk_len, True, cfg.chunks_before, cfg.chunks_after
    )
    L = qk.shape[-2]
    i = int(cut * (L - 1))
    qk2, v2 = qk.copy(), v.copy()
    qk2[..., i + 1 :, :] *= 2.0
    v2[..., i + 1 :, :] = np.random.default_rng(seed).standard_normal(v2[..., i + 1 :, :].shape)
    np.testing.assert_array_equal(
        lshbench.hash_buckets(qk2, R, cfg), lshbench.hash_buckets(qk, R, cfg)
    )
    be = lshbench.get_backend(backend)
    np.testing.assert_array_equal(
        be.attend(qk2, v2, cfg, R)[..., : i + 1, :], be.attend(qk, v, cfg, R)[..., : i + 1, :]
    )


@pytest.mark.parametrize("backend", [*LSH, "dense"])
@SETTINGS
@given(problem=lsh_problems())
def test_values_of_ones_give_ones(backend, problem) -> None:
    cfg, qk, v, R = problem
    out = lshbench.get_backend(backend).attend(qk, np.ones_like(v), cfg, R)
    # rows whose only valid key is themselves carry logits near -1e5: ~1e-12 in float64
    np.testing.assert_allclose(out, 1.0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", [*LSH, "dense"])
@SETTINGS
@given(problem=lsh_problems())
def test_batch_equals_each_sequence_alone(backend, problem) -> None:
    cfg, qk, v, R = problem
    qk, v = batched(qk), batched(v)
    be = lshbench.get_backend(backend)
    together = be.attend(qk, v, cfg, R)
    assert together.shape == qk.shape[:2] + v.shape[-1:]
    for b in range(qk.shape[0]):
        np.testing.assert_allclose(together[b], be.attend(qk[b], v[b], cfg, R), rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", [*LSH, "dense"])
@SETTINGS
@given(problem=lsh_problems())
def test_float32_agrees_with_float64(backend, problem) -> None:
    """Up to float32 rounding, except rows whose only valid key is the query itself."""
    cfg, qk, v, R = problem
    be = lshbench.get_backend(backend)
    out32 = be.attend(qk.astype(np.float32), v.astype(np.float32), cfg, R)
    out64 = be.attend(qk, v, cfg, R)
    assert out32.dtype == np.float32
    assert out64.dtype == np.float64
    err = np.abs(out32 - out64)
    # rows with logits near -1e5 carry up to ~1% relative error in float32
    # (docs/design.md section 2)
    L = qk.shape[-2]
    buckets = lshbench.hash_buckets(batched(qk).astype(np.float32), R, cfg)
    keys = lshbench.window_positions(buckets, cfg)  # (B, H, L, W)
    from lshbench.core.attention import valid_keys

    query = np.broadcast_to(np.arange(L)[None, None, :], keys.shape[:3])
    has_other = valid_keys(query, keys, cfg.causal).any(axis=(1, 3))  # (B, L)
    if backend == "dense":
        has_other = np.ones_like(has_other)
        if cfg.causal:
            has_other[:, 0] = False
    err = err.reshape((*has_other.shape, -1))
    assert np.all(err[has_other] < 1e-4)
    assert np.all(err[~has_other] < 2e-2 * (1 + np.abs(batched(v).reshape(err.shape))[~has_other]))
