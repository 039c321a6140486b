"""LSH over separate queries and keys (``LSHConfig(qk="separate")``, docs/design.md
section 2c), against the rule written out plainly here.

For query i the effective attention is ``C_ij exp(q_i . k_j) / sum_l C_il exp(q_i . k_l)``,
C_ij the count of key j in query i's windows over all rounds (count-once: ``C_ij > 0``),
where query i's round-r window is built here from first principles: queries sorted by
(round, bucket of q, position), keys by (round, bucket of k, position), each cut into
chunks, query chunk c reading key chunks c-before..c+after cyclically. Raw scores: no key
normalization, no scale, no self mask.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import backend_params
from hypothesis import given, settings
from strategies import separate_problems

import lshbench
from lshbench.core.hashing import pipeline_buckets
from lshbench.measurement.metrics import attention_metrics

SEPARATE_BACKENDS = backend_params("numpy", "numba")


def windows_by_hand(qb, kb, config) -> np.ndarray:
    """C (L, L) of one sequence from its query and key buckets (rounds, L), by sorting and
    chunking in plain Python."""
    L = qb.shape[1]
    pc = config.pipeline_config()
    rounds, m = qb.shape[0], pc.chunk_len
    q_items = sorted((r, int(qb[r, i]), i) for r in range(rounds) for i in range(L))
    k_items = sorted((r, int(kb[r, j]), j) for r in range(rounds) for j in range(L))
    n_chunks = rounds * L // m
    C = np.zeros((L, L), dtype=np.int64)
    for slot, (_, _, i) in enumerate(q_items):
        c = slot // m
        for other in range(c - pc.chunks_before, c + pc.chunks_after + 1):
            for _, _, j in k_items[(other % n_chunks) * m : (other % n_chunks + 1) * m]:
                C[i, j] += 1
    return C


def attention_by_hand(q, k, v, rotations, config) -> np.ndarray:
    """(B, L, dv) float64 output of the rule above."""
    q3, k3, v3 = (np.asarray(x).reshape(-1, *x.shape[-2:]) for x in (q, k, v))
    rot = rotations.astype(q3.dtype)  # the buckets the backend draws, in the input's dtype
    qb, kb = pipeline_buckets(q3, rot, config), pipeline_buckets(k3, rot, config)
    q3, k3, v3 = (x.astype(np.float64) for x in (q3, k3, v3))
    out = []
    for b in range(q3.shape[0]):
        C = windows_by_hand(qb[b], kb[b], config)
        if config.weighting == "count-once":
            C = (C > 0).astype(np.int64)
        s = q3[b] @ k3[b].T  # (L, d) @ (d, L) -> (L, L), raw scores
        w = C * np.exp(s - s.max(axis=1, keepdims=True))
        out.append((w / w.sum(axis=1, keepdims=True)) @ v3[b])
    return np.stack(out)


@pytest.mark.parametrize("backend", SEPARATE_BACKENDS)
@settings(max_examples=60, deadline=None)
@given(problem=separate_problems())
def test_output_is_the_multiplicity_weighted_softmax_of_the_windows(backend, problem) -> None:
    cfg, q, k, v, rot = problem
    out = lshbench.get_backend(backend).attend(q, v, cfg, rot, k=k)
    want = attention_by_hand(q, k, v, rot, cfg)
    np.testing.assert_allclose(out.reshape(want.shape), want, rtol=1e-9, atol=1e-10)


@given(problem=separate_problems())
@settings(max_examples=40, deadline=None)
def test_window_positions_are_the_sorted_chunks(problem) -> None:
    cfg, q, k, _, rot = problem
    q, k = q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:])
    qb, kb = pipeline_buckets(q, rot, cfg), pipeline_buckets(k, rot, cfg)
    windows = lshbench.window_positions(qb, cfg, kb)  # (B, rounds, L, W)
    for b in range(q.shape[0]):
        C = np.zeros((q.shape[1],) * 2, dtype=np.int64)
        for i in range(q.shape[1]):
            np.add.at(C[i], windows[b, :, i].ravel(), 1)
        np.testing.assert_array_equal(C, windows_by_hand(qb[b], kb[b], cfg))


@pytest.mark.parametrize("backend", SEPARATE_BACKENDS)
@pytest.mark.parametrize("weighting", ["multiplicity", "count-once"])
@pytest.mark.parametrize("n_hashes", [1, 3])
def test_one_chunk_per_round_is_exact(backend, weighting, n_hashes) -> None:
    rng = np.random.default_rng(n_hashes)
    L, d = 24, 5
    q, k = 2 * rng.standard_normal((2, L, d)), rng.standard_normal((2, L, d))
    v = rng.standard_normal((2, L, 3))
    s = q @ k.transpose(0, 2, 1)  # (B, L, L)
    a = np.exp(s - s.max(-1, keepdims=True))
    exact = (a / a.sum(-1, keepdims=True)) @ v
    cfg = lshbench.LSHConfig(
        n_hashes=n_hashes, n_buckets=4, chunk_len=L, weighting=weighting, qk="separate"
    )
    rot = lshbench.random_rotations(d, cfg, seed=3, dtype=np.float64)
    out = lshbench.get_backend(backend).attend(q, v, cfg, rot, k=k)
    np.testing.assert_allclose(out, exact, rtol=1e-10, atol=1e-12)
    assert np.allclose(lshbench.get_backend("dense").attend(q, v, cfg, k=k), exact)


@pytest.mark.parametrize("backend", SEPARATE_BACKENDS)
@settings(max_examples=30, deadline=None)
@given(problem=separate_problems(dtype=np.float32))
def test_float32_agrees_with_float64(backend, problem) -> None:
    cfg, q, k, v, rot = problem
    be = lshbench.get_backend(backend)
    out32 = be.attend(q, v, cfg, rot, k=k)
    assert out32.dtype == np.float32
    out64 = be.attend(q.astype(np.float64), v.astype(np.float64), cfg, rot, k=k.astype(np.float64))
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", SEPARATE_BACKENDS)
@settings(max_examples=30, deadline=None)
@given(problem=separate_problems())
def test_values_of_ones_give_ones_and_keys_matter(backend, problem) -> None:
    cfg, q, k, v, rot = problem
    be = lshbench.get_backend(backend)
    np.testing.assert_allclose(be.attend(q, np.ones_like(v), cfg, rot, k=k), 1.0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["lsh", "random", "local"])
@pytest.mark.parametrize("weighting", ["multiplicity", "count-once"])
def test_numba_agrees_with_numpy(dtype, method, weighting) -> None:
    pytest.importorskip("numba")
    rng = np.random.default_rng(4)
    B, L, d = 2, 256, 16
    q = (1.5 * rng.standard_normal((B, L, d))).astype(dtype)
    k, v = (
        rng.standard_normal((B, L, d)).astype(dtype),
        rng.standard_normal((B, L, 8)).astype(dtype),
    )
    cfg = lshbench.LSHConfig(
        n_hashes=4, n_buckets=16, chunk_len=32, method=method, weighting=weighting,
        chunks_after=1, qk="separate",
    )  # fmt: skip
    rot = lshbench.random_rotations(d, cfg, seed=2, dtype=dtype)
    ours = lshbench.get_backend("numba").attend(q, v, cfg, rot, k=k)
    ref = lshbench.get_backend("numpy").attend(q, v, cfg, rot, k=k)
    assert ours.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)


def test_self_is_not_masked_and_keys_are_not_normalized() -> None:
    """A query whose own key dominates attends to itself (shared QK would mask it)."""
    L, d = 16, 4
    k = np.zeros((L, d))
    k[:, 0] = 1.0
    q = np.zeros((L, d))
    q[:, 0] = 1.0
    k[5, 0] = 30.0  # a huge key: unnormalized it takes all the mass of queries that see it
    v = np.eye(L)[:, :8]
    cfg = lshbench.LSHConfig(n_hashes=1, n_buckets=2, chunk_len=16, qk="separate")
    rot = lshbench.random_rotations(d, cfg, seed=0, dtype=np.float64)
    out = lshbench.get_backend("numpy").attend(q, v, cfg, rot, k=k)
    assert np.allclose(out[:, 5], 1.0)  # every query, query 5 included, attends key 5


def test_call_rules() -> None:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((32, 4)) for _ in range(3))
    sep = lshbench.LSHConfig(n_buckets=4, chunk_len=8, qk="separate")
    shared = lshbench.LSHConfig(n_buckets=4, chunk_len=8)
    rot = lshbench.random_rotations(4, sep, seed=0, dtype=np.float64)
    be = lshbench.get_backend("numpy")
    with pytest.raises(lshbench.ConfigError, match="k=None: required with qk='separate'"):
        be.attend(q, v, sep, rot)
    with pytest.raises(lshbench.ConfigError, match="k=ndarray: is only for qk='separate'"):
        be.attend(q, v, shared, rot, k=k)
    with pytest.raises(lshbench.ConfigError, match=r"k.shape=\(31, 4\)"):
        be.attend(q, v, sep, rot, k=k[:31])
    with pytest.raises(lshbench.ConfigError, match=r"k\.dtype=float32"):
        be.attend(q, v, sep, rot, k=k.astype(np.float32))
    with pytest.raises(TypeError):
        be.attend(q, v, sep, rot, k)  # k is keyword-only
    with pytest.raises(lshbench.ConfigError, match="causal=True: qk='separate' is non-causal"):
        lshbench.LSHConfig(causal=True, qk="separate")
    with pytest.raises(lshbench.ConfigError, match="qk=both: must be one of shared, separate"):
        lshbench.LSHConfig(qk="both")
    assert sep.as_dict()["qk"] == "separate" and "qk" not in shared.as_dict()


def test_metrics_on_separate_exact_attention() -> None:
    rng = np.random.default_rng(5)
    L, d = 48, 6
    q, k = 2 * rng.standard_normal((L, d)), rng.standard_normal((L, d))
    v = rng.standard_normal((L, 3))
    s = q @ k.T
    a = np.exp(s - s.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    for weighting in ("multiplicity", "count-once"):
        cfg = lshbench.LSHConfig(
            n_hashes=2, n_buckets=4, chunk_len=8, weighting=weighting, qk="separate"
        )
        rot = lshbench.random_rotations(d, cfg, seed=1, dtype=np.float64)
        out = lshbench.get_backend("numpy").attend(q, v, cfg, rot, k=k)
        got = attention_metrics(q, v, out, cfg, rot, k=k)
        C = windows_by_hand(pipeline_buckets(q, rot, cfg), pipeline_buckets(k, rot, cfg), cfg)
        C = (C > 0) if weighting == "count-once" else C
        ahat = C * np.exp(s - s.max(1, keepdims=True))
        ahat /= ahat.sum(1, keepdims=True)
        assert got["attn_tv"] == pytest.approx(0.5 * np.abs(ahat - a).sum(1).mean(), abs=1e-12)
        assert got["mass_recall"] == pytest.approx((a * (C > 0)).sum(1).mean(), abs=1e-12)
        top = a.argmax(1)
        assert got["top1_recall"] == pytest.approx((C[np.arange(L), top] > 0).mean())
        entropy = -(a * np.log(a)).sum(1).mean()
        assert got["attn_entropy"] == pytest.approx(entropy, rel=1e-10)
        assert got["rel_err"] == pytest.approx(
            np.linalg.norm(out - a @ v) / np.linalg.norm(a @ v), rel=1e-9
        )
    exact = attention_metrics(q, v, a @ v, cfg, exact=True, k=k)
    assert exact["attn_tv"] == 0 and exact["rel_err"] < 1e-12
