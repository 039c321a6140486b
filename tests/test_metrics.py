"""Error metrics against dense on known cases, and against a plain-loop oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import lsh_problems

import lshbench
from lshbench.measurement import metrics
from lshbench.measurement.metrics import (
    dense_reference,
    output_errors,
    scored_rows,
    window_coverage,
)


def naive_probs(qk: np.ndarray, causal: bool) -> np.ndarray:
    """Dense softmax of one sequence qk (L, d) written out plainly: (L, L)."""
    L, d = qk.shape
    keys = qk / np.sqrt((qk**2).mean(-1, keepdims=True) + 1e-6) / np.sqrt(d)
    s = qk @ keys.T
    for i in range(L):
        for j in range(L):
            if causal and j > i:
                s[i, j] = -1e9
            if j == i:
                s[i, j] = -1e5
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def oracle_coverage(qk, buckets, cfg) -> tuple[float, float]:
    """Mass recall and top-1 agreement with loops over queries (batch of one sequence)."""
    L = qk.shape[1]
    P = naive_probs(qk[0], cfg.causal)
    windows = lshbench.window_positions(buckets, cfg)[0]  # (H, L, W)
    keep = scored_rows(1, L, cfg.causal)[0]
    mass, agree = [], []
    for i in range(L):
        if not keep[i]:
            continue
        keys, counts = np.unique(windows[:, i, :], return_counts=True)
        mass.append(P[i, keys].sum())
        valid = [(k, c) for k, c in zip(keys, counts, strict=True) if k != i and not (
            cfg.causal and k > i)]  # fmt: skip
        if valid:  # LSH weight C_ij * exp(s_ij), proportional to C_ij * P_ij
            top = max(valid, key=lambda kc: (kc[1] * P[i, kc[0]], -kc[0]))[0]
        else:
            top = i
        agree.append(top == P[i].argmax())
    return float(np.mean(mass)), float(np.mean(agree))


def test_identical_outputs_give_zero_error() -> None:
    rng = np.random.default_rng(0)
    qk = rng.standard_normal((2, 50, 8))
    v = rng.standard_normal((2, 50, 5))
    ref = dense_reference(qk, v, causal=True)
    err = output_errors(ref.out.copy(), ref)
    assert err.rel_err == 0 and err.max_abs_err == 0
    assert err.cos_sim == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_hashes", [1, 3])
def test_one_chunk_per_round_has_full_recall(causal: bool, n_hashes: int) -> None:
    """chunk_len = L: each round's window is every key, so recall and top-1 are 1 and the
    LSH output is the dense one."""
    rng = np.random.default_rng(1)
    B, L, d = 2, 48, 8
    qk = rng.standard_normal((B, L, d))
    v = rng.standard_normal((B, L, d))
    cfg = lshbench.LSHConfig(n_hashes=n_hashes, n_buckets=4, chunk_len=L, causal=causal)
    R = lshbench.random_rotations(d, cfg, seed=2, dtype=np.float64)
    ref = dense_reference(qk, v, causal)
    cov = window_coverage(qk, lshbench.hash_buckets(qk, R, cfg), cfg, ref)
    assert cov.mass_recall == pytest.approx(1.0, abs=1e-12)
    assert cov.top1_agree == 1.0
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    assert output_errors(out, ref).rel_err < 1e-12


def test_hand_computed_case() -> None:
    """L = 4, buckets (0, 1, 0, 1), chunks of 2 and no look-back: query 0 sees {0, 2},
    1 sees {1, 3}, 2 sees {0, 2}, 3 sees {1, 3}. The vectors pair 0 with 2 and 1 with 3."""
    qk = np.array([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.2], [0.2, 2.0]]])  # (1, 4, 2)
    v = np.eye(4)[None, :, :2]
    cfg = lshbench.LSHConfig(n_hashes=1, n_buckets=2, chunk_len=2, chunks_before=0)
    buckets = np.array([[[0, 1, 0, 1]]])
    ref = dense_reference(qk, v, causal=False)

    def key(x):  # x / sqrt(mean(x^2) + 1e-6) / sqrt(2)
        return [xi / math.sqrt(sum(t * t for t in x) / 2 + 1e-6) / math.sqrt(2) for xi in x]

    rows = qk[0].tolist()
    keys = [key(r) for r in rows]
    partner = [2, 3, 0, 1]
    recall = []
    for i in range(4):
        e = [math.exp(sum(a * b for a, b in zip(rows[i], keys[j], strict=True)))
             for j in range(4) if j != i]  # fmt: skip
        others = [j for j in range(4) if j != i]
        recall.append(e[others.index(partner[i])] / sum(e))
    cov = window_coverage(qk, buckets, cfg, ref)
    assert cov.mass_recall == pytest.approx(sum(recall) / 4, rel=1e-12)
    assert cov.top1_agree == 1.0  # each partner is its query's best key
    np.testing.assert_array_equal(ref.top1[0], partner)


def test_output_errors_by_hand() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    out = np.array([[1.0, 0.0], [0.0, -2.0], [3.0, 4.0]])
    err = output_errors(out, ref)
    assert err.rel_err == pytest.approx(4.0 / math.sqrt(1 + 4 + 25))
    assert err.max_abs_err == 4.0
    assert err.cos_sim == pytest.approx((1 - 1 + 1) / 3)
    zero = output_errors(np.zeros((2, 2)), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert zero.cos_sim == pytest.approx(0.5)  # both-zero row counts 1, one-zero row 0


def test_scored_rows_leave_out_rows_without_other_keys() -> None:
    assert scored_rows(2, 5, causal=True).tolist() == [[False, True, True, True, True]] * 2
    assert scored_rows(1, 5, causal=False).all()
    assert not scored_rows(1, 1, causal=False).any()


@pytest.mark.parametrize("path", ["gather", "full rows"])
@settings(max_examples=25, deadline=None)
@given(problem=lsh_problems(), block=st.sampled_from([None, 1, 5]))
def test_coverage_matches_the_loop_oracle(path, problem, block) -> None:
    cfg, qk, v, R = problem
    qk = qk if qk.ndim == 3 else qk[None]
    qk, v = qk[:1], (v if v.ndim == 3 else v[None])[:1]
    buckets = lshbench.hash_buckets(qk, R, cfg)
    ref = dense_reference(qk, v, cfg.causal)
    old = metrics.GATHER_COST_RATIO
    metrics.GATHER_COST_RATIO = 0 if path == "gather" else 10**9
    try:
        cov = window_coverage(qk, buckets, cfg, ref, block_rows=block)
    finally:
        metrics.GATHER_COST_RATIO = old
    mass, agree = oracle_coverage(qk, buckets, cfg)
    assert cov.mass_recall == pytest.approx(mass, abs=1e-12)
    assert cov.top1_agree == pytest.approx(agree, abs=1e-12)
    assert 0.0 <= cov.mass_recall <= 1.0 + 1e-12


def test_recall_grows_with_rounds() -> None:
    """More rounds add keys to every window (same first rounds: rotations are nested)."""
    qk, v = lshbench_inputs()
    ref = dense_reference(qk, v, False)
    recalls = []
    for H in (1, 2, 4):
        cfg = lshbench.LSHConfig(n_hashes=H, n_buckets=16, chunk_len=16)
        R = np.random.default_rng(0).standard_normal((qk.shape[-1], 4, 8))[:, :H]
        recalls.append(window_coverage(qk, lshbench.hash_buckets(qk, R, cfg), cfg, ref))
    assert recalls[0].mass_recall < recalls[1].mass_recall < recalls[2].mass_recall


def lshbench_inputs() -> tuple[np.ndarray, np.ndarray]:
    from lshbench.measurement.inputs import make_inputs

    return make_inputs("clustered", 1, 256, 16, seed=0, dtype=np.float64)
