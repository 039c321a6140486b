"""Accuracy metrics (docs/design.md section 6): identities, hand-computed cases, and agreement
with the O(L^2) definitions on random small cases."""

from __future__ import annotations

import dataclasses
import math
import tracemalloc

import numpy as np
import pytest
from helpers import full_multiplicities, naive_window_attention
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import lsh_problems

import lshbench
from lshbench.core.hashing import pipeline_buckets
from lshbench.measurement import metrics
from lshbench.measurement.metrics import (
    attention_metrics,
    dense_reference,
    exact_windows,
    output_errors,
    scored_rows,
    window_metrics,
)

METHODS = ["lsh", "random", "local"]
WEIGHTINGS = ["multiplicity", "count-once"]


def naive_metrics(qk: np.ndarray, R: np.ndarray, cfg: lshbench.LSHConfig) -> tuple:
    """(attn_tv, mass_recall, top1_recall, attn_entropy) from full (B, L, L) matrices."""
    a, ahat = naive_window_attention(qk, R, cfg)  # exact and LSH attention (B, L, L)
    seen = full_multiplicities(qk, R, cfg) > 0  # (B, L, L) key j in query i's windows
    B, L, _ = a.shape
    keep = scored_rows(B, L, cfg.causal)  # (B, L)
    tv = 0.5 * np.abs(ahat - a).sum(-1)  # (B, L)
    recall = (a * seen).sum(-1)  # (B, L)
    top = np.take_along_axis(seen, a.argmax(-1)[..., None], axis=-1)[..., 0]  # (B, L)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(a > 0, a * np.log(a), 0.0).sum(-1)  # (B, L)
    return tuple(float(x[keep].mean()) for x in (tv, recall, top, entropy))


def chunkable(cfg: lshbench.LSHConfig, qk: np.ndarray, v: np.ndarray) -> tuple:
    """Batched qk, v cut so the variant's pipeline can chunk them (local: L % (m*H) == 0)."""
    qk = qk if qk.ndim == 3 else qk[None]
    v = v if v.ndim == 3 else v[None]
    L = qk.shape[1]
    if cfg.method == "local" and not cfg.is_short(L):
        L = (L // cfg.sort_chunk_len) * cfg.sort_chunk_len
    return qk[:, :L], v[:, :L]


# --- output errors ----------------------------------------------------------------------


def test_identical_outputs_give_zero_errors() -> None:
    rng = np.random.default_rng(0)
    qk = rng.standard_normal((2, 50, 8))
    v = rng.standard_normal((2, 50, 5))
    ref = dense_reference(qk, v, causal=True)
    err = output_errors(ref.out.copy(), ref)
    assert err.rel_err == 0 and err.max_abs_err == 0 and err.out_err_v == 0
    assert err.cos_sim == pytest.approx(1.0, abs=1e-15)
    cfg = lshbench.LSHConfig(causal=True)
    dense = lshbench.get_backend("dense").attend(qk, v, cfg)
    got = attention_metrics(qk, v, ref.out, cfg, exact=True)
    assert got["out_err_v"] == got["rel_err"] == got["max_abs_err"] == 0
    assert (got["attn_tv"], got["mass_recall"], got["top1_recall"]) == (0.0, 1.0, 1.0)
    assert got["keys_slots"] == got["keys_distinct"] == 50  # causal masks are not counted
    assert attention_metrics(qk, v, dense, cfg, exact=True)["out_err_v"] < 1e-14


def test_output_errors_by_hand() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    out = np.array([[1.0, 0.0], [0.0, -2.0], [3.0, 4.0]])
    err = output_errors(out, ref, v_spread=8.0)
    assert err.rel_err == pytest.approx(4.0 / math.sqrt(1 + 4 + 25))
    assert err.max_abs_err == 4.0
    assert err.cos_sim == pytest.approx((1 - 1 + 1) / 3)
    assert err.out_err_v == pytest.approx(4.0 / 8.0)
    assert math.isnan(output_errors(out, ref).out_err_v)  # no spread given
    zero = output_errors(np.zeros((2, 2)), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert zero.cos_sim == pytest.approx(0.5)  # both-zero row counts 1, one-zero row 0


def test_out_err_v_is_on_the_scale_of_the_values() -> None:
    """Per sequence, v minus its mean over positions: a constant shift of v changes nothing
    and an all-zero output of near-uniform attention scores about ||mean(v)|| / spread."""
    rng = np.random.default_rng(1)
    qk = rng.standard_normal((2, 64, 8)) * 0.01  # near-uniform attention
    v = rng.standard_normal((2, 64, 4))
    ref = dense_reference(qk, v, False)
    centered = v - v.mean(axis=1, keepdims=True)
    assert ref.v_spread == pytest.approx(np.linalg.norm(centered), rel=1e-12)
    assert dense_reference(qk, v + 5.0, False).v_spread == pytest.approx(ref.v_spread, rel=1e-9)
    zero = output_errors(np.zeros_like(v), ref)
    assert zero.rel_err == pytest.approx(1.0)  # relative error calls the zero output "1.0"
    assert zero.out_err_v == pytest.approx(np.linalg.norm(ref.out) / ref.v_spread, rel=1e-12)
    assert zero.out_err_v < 0.2  # ... on the scale of v it is small, as it is


def test_scored_rows_leave_out_rows_without_other_keys() -> None:
    assert scored_rows(2, 5, causal=True).tolist() == [[False, True, True, True, True]] * 2
    assert scored_rows(1, 5, causal=False).all()
    assert not scored_rows(1, 1, causal=False).any()


# --- window metrics: identities and hand cases ------------------------------------------


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_hashes", [1, 3])
def test_one_chunk_per_round_is_exact(causal: bool, n_hashes: int, weighting: str) -> None:
    """chunk_len = L: each round's window is every key, so attn_tv is 0, recalls are 1 and
    the LSH output is the dense one."""
    rng = np.random.default_rng(1)
    B, L, d = 2, 48, 8
    qk = rng.standard_normal((B, L, d))
    v = rng.standard_normal((B, L, d))
    cfg = lshbench.LSHConfig(n_hashes, 4, L, causal, weighting=weighting)
    R = lshbench.random_rotations(d, cfg, seed=2, dtype=np.float64)
    ref = dense_reference(qk, v, causal)
    got = window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, ref)
    assert got.attn_tv == pytest.approx(0.0, abs=1e-12)
    assert got.mass_recall == pytest.approx(1.0, abs=1e-12)
    assert got.top1_recall == 1.0
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    everything = attention_metrics(qk, v, out, cfg, R, reference=ref)
    assert everything["out_err_v"] < 1e-12 and everything["attn_tv"] < 1e-12


def test_hand_computed_case() -> None:
    """L = 4, buckets (0, 1, 0, 1), chunks of 2 and no look-back: query 0 sees {0, 2},
    1 sees {1, 3}, 2 sees {0, 2}, 3 sees {1, 3}. The vectors pair 0 with 2 and 1 with 3.
    Each key is seen once, so ahat is all on the partner: attn_tv = 1 - recall."""
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
    got = window_metrics(qk, buckets, cfg, ref)
    assert got.mass_recall == pytest.approx(sum(recall) / 4, rel=1e-12)
    assert got.attn_tv == pytest.approx(1 - sum(recall) / 4, rel=1e-12)
    assert got.top1_recall == 1.0  # each partner is its query's best key
    np.testing.assert_array_equal(ref.top1[0], partner)


def test_multiplicity_moves_mass_that_count_once_does_not() -> None:
    """L = 4, three rounds, no look-back: query 0 sees key 2 in two rounds and key 1 in one.
    multiplicity weighs key 2 twice, count-once once; the exact weights are known."""
    qk = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])  # (1, 4, 2)
    v = np.zeros((1, 4, 1))
    cfg = lshbench.LSHConfig(n_hashes=3, n_buckets=2, chunk_len=2, chunks_before=0)
    # rounds 1 and 2 pair (0, 2) and (1, 3), round 3 pairs (0, 1) and (2, 3)
    buckets = np.array([[[0, 1, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]]])
    ref = dense_reference(qk, v, False)
    s = qk[0] @ (qk[0] / np.sqrt((qk[0] ** 2).mean(-1, keepdims=True) + 1e-6) / np.sqrt(2)).T
    a0 = np.exp(s[0, 1:] - np.log(np.exp(s[0, 1:]).sum()))  # exact weights of keys 1, 2, 3
    mult = np.array([1, 2]) * np.exp(s[0, 1:3])
    once = np.exp(s[0, 1:3])
    tv_mult = 0.5 * (np.abs(mult / mult.sum() - a0[:2]).sum() + a0[2])
    tv_once = 0.5 * (np.abs(once / once.sum() - a0[:2]).sum() + a0[2])
    for weighting, want in (("multiplicity", tv_mult), ("count-once", tv_once)):
        # query 0 alone: a reference that scores only row 0
        one = ref._replace(rows=np.array([[True, False, False, False]]))
        got = window_metrics(qk, buckets, dataclasses.replace(cfg, weighting=weighting), one)
        assert got.attn_tv == pytest.approx(want, rel=1e-12)
        assert got.mass_recall == pytest.approx(a0[:2].sum(), rel=1e-12)
    assert tv_once == pytest.approx(a0[2], rel=1e-12) and tv_mult > tv_once


# --- window metrics against the O(L^2) definitions --------------------------------------


@pytest.mark.parametrize("path", ["gather", "full rows"])
@settings(max_examples=40, deadline=None)
@given(
    problem=lsh_problems(),
    method=st.sampled_from(METHODS),
    weighting=st.sampled_from(WEIGHTINGS),
    batch=st.sampled_from([1, 2]),
    block=st.sampled_from([None, 1, 5]),
)
def test_window_metrics_match_the_definitions(path, problem, method, weighting, batch, block):
    cfg, qk, v, R = problem
    cfg = dataclasses.replace(cfg, method=method, weighting=weighting)
    qk, v = chunkable(cfg, np.concatenate([qk[None]] * 2) if qk.ndim == 2 else qk, v)
    qk, v = qk[:batch], (v if v.ndim == 3 else np.concatenate([v[None]] * 2))[:batch]
    ref = dense_reference(qk, v, cfg.causal)
    old = metrics.GATHER_COST_RATIO
    metrics.GATHER_COST_RATIO = 0 if path == "gather" else 10**9
    try:
        got = window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, ref, block_rows=block)
    finally:
        metrics.GATHER_COST_RATIO = old
    tv, recall, top, entropy = naive_metrics(qk, R, cfg)
    assert got.attn_tv == pytest.approx(tv, abs=1e-12)
    assert got.mass_recall == pytest.approx(recall, abs=1e-12)
    assert got.top1_recall == pytest.approx(top, abs=1e-12)
    assert ref.attn_entropy == pytest.approx(entropy, abs=1e-10)
    assert 0.0 <= got.attn_tv <= 1.0 + 1e-12 and 0.0 <= got.mass_recall <= 1.0 + 1e-12
    if weighting == "count-once":
        assert abs(got.attn_tv - (1.0 - got.mass_recall)) < 1e-9
    want_slots, want_distinct = naive_key_counts(pipeline_buckets(qk, R, cfg), cfg)
    assert got.keys_slots == want_slots
    assert got.keys_distinct == pytest.approx(want_distinct, abs=1e-9)


def naive_key_counts(buckets: np.ndarray, cfg: lshbench.LSHConfig) -> tuple[int, float]:
    """(window slots per query, mean distinct window keys per query) from
    :func:`lshbench.window_positions`, one query at a time."""
    windows = lshbench.window_positions(buckets, cfg)  # (B, R, L, W)
    B, R, L, W = windows.shape
    counts = [len(set(windows[b, :, i].ravel().tolist())) for b in range(B) for i in range(L)]
    return R * W, sum(counts) / len(counts)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("causal", [False, True])
def test_key_counts_are_those_of_the_windows(method: str, causal: bool) -> None:
    """keys_distinct is the mean number of distinct keys of window_positions; LSH and random
    windows repeat keys across rounds (distinct < slots), a local window never does."""
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs("clustered", 2, 512, 16, seed=3, dtype=np.float64)
    cfg = lshbench.LSHConfig(4, 16, 16, causal, method=method, weighting="count-once")
    R = lshbench.random_rotations(16, cfg, seed=2, dtype=np.float64)
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    got = attention_metrics(qk, v, out, cfg, R)
    slots, distinct = naive_key_counts(pipeline_buckets(qk, R, cfg), cfg)
    assert got["keys_slots"] == slots == 4 * 16 * 2
    assert abs(got["keys_distinct"] - distinct) < 1e-9
    if method == "local":
        assert got["keys_distinct"] == slots
    else:
        assert got["keys_distinct"] < slots


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("chunk_len", "before", "after"), [(16, 3, 0), (16, 1, 2), (32, 1, 0), (32, 1, 2), (64, 0, 0)]
)
def test_key_counts_of_windows_covering_the_sequence(causal, chunk_len, before, after) -> None:
    """A local window of chunk_len * H * (1 + before + after) >= L keys sees every key (a
    window wider than the sequence repeats chunks; L <= chunk_len * H is the dense path)."""
    rng = np.random.default_rng(0)
    L, H = 256, 4
    qk = rng.standard_normal((1, L, 8))
    cfg = lshbench.LSHConfig(H, 2, chunk_len, causal, before, after, method="local")
    assert chunk_len * H * (1 + before + after) >= L
    R = lshbench.random_rotations(8, cfg, seed=0, dtype=np.float64)
    got = window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, dense_reference(qk, qk, causal))
    assert got.keys_distinct == L
    short = cfg.is_short(L)
    assert got.keys_slots == (L if short else chunk_len * H * (1 + before + after))
    assert got.attn_tv < 1e-12 and got.mass_recall == pytest.approx(1.0, abs=1e-12)


def test_exact_windows_count_every_key() -> None:
    assert exact_windows(300) == (0.0, 1.0, 1.0, 300, 300.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("causal", [False, True])
def test_count_once_tv_is_one_minus_recall(method: str, causal: bool) -> None:
    """Count-once weighting is the exact softmax restricted to the windows' keys."""
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs("clustered", 2, 1024, 16, seed=0, dtype=np.float64)
    cfg = lshbench.LSHConfig(4, 32, 32, causal, method=method, weighting="count-once")
    R = lshbench.random_rotations(16, cfg, seed=1, dtype=np.float64)
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    got = attention_metrics(qk, v, out, cfg, R)
    assert 0.01 < got["mass_recall"] < 0.999
    assert abs(got["attn_tv"] - (1.0 - got["mass_recall"])) < 1e-9


@settings(max_examples=20, deadline=None)
@given(problem=lsh_problems(), method=st.sampled_from(METHODS))
def test_attention_metrics_of_a_backend_output(problem, method) -> None:
    """attention_metrics rebuilds the windows from config and rotations: its output errors
    are those of the numpy output against the naive LSH attention's reference."""
    from helpers import full_scores, full_softmax

    cfg, qk, v, R = problem
    cfg = dataclasses.replace(cfg, method=method)
    qk3, v3 = chunkable(cfg, qk, v)
    out = lshbench.get_backend("numpy").attend(qk3, v3, cfg, R)
    got = attention_metrics(qk3, v3, out, cfg, R)
    tv, recall, top, entropy = naive_metrics(qk3, R, cfg)
    assert got["attn_tv"] == pytest.approx(tv, abs=1e-12)
    assert got["mass_recall"] == pytest.approx(recall, abs=1e-12)
    assert got["top1_recall"] == pytest.approx(top, abs=1e-12)
    assert got["attn_entropy"] == pytest.approx(entropy, abs=1e-10)
    exact = full_softmax(full_scores(qk3, cfg.causal)) @ v3  # (B, L, dv)
    keep = scored_rows(*qk3.shape[:2], cfg.causal)
    spread = np.linalg.norm(v3 - v3.mean(axis=1, keepdims=True))
    want = np.linalg.norm((out - exact)[keep]) / spread
    assert got["out_err_v"] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_attention_metrics_rejects_a_missing_rotation() -> None:
    qk = np.zeros((8, 2))
    with pytest.raises(lshbench.ConfigError, match=r"^rotations=None: required"):
        attention_metrics(qk, qk, qk, lshbench.LSHConfig(chunk_len=4))
    with pytest.raises(lshbench.ConfigError, match=r"^out.shape="):
        attention_metrics(qk, qk, qk[:4], lshbench.LSHConfig(chunk_len=4), exact=True)


def test_recall_grows_with_rounds() -> None:
    """More rounds add keys to every window (same first rounds: rotations are nested)."""
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs("clustered", 1, 256, 16, seed=0, dtype=np.float64)
    ref = dense_reference(qk, v, False)
    recalls = []
    for H in (1, 2, 4):
        cfg = lshbench.LSHConfig(n_hashes=H, n_buckets=16, chunk_len=16, weighting="count-once")
        R = np.random.default_rng(0).standard_normal((qk.shape[-1], 4, 8))[:, :H]
        recalls.append(window_metrics(qk, lshbench.hash_buckets(qk, R, cfg), cfg, ref))
    assert recalls[0].mass_recall < recalls[1].mass_recall < recalls[2].mass_recall
    assert recalls[0].attn_tv > recalls[1].attn_tv > recalls[2].attn_tv


def test_window_metrics_memory_is_blocked() -> None:
    """L = 16384, 4 rounds of 2 chunks of 64: the traced peak stays far below both an
    L x L float64 matrix and the full (H, L, W) window lists. The reference is a stand-in
    (its values do not change what is allocated; an exact one costs L^2 exponentials)."""
    L, d = 16384, 8
    qk = np.random.default_rng(0).standard_normal((1, L, d))
    zeros = np.zeros((1, L))
    ref = metrics.DenseReference(
        None, zeros, zeros.astype(np.int64), scored_rows(1, L, False), zeros, 1.0
    )
    cfg = lshbench.LSHConfig(n_hashes=4, n_buckets=64, chunk_len=64)
    R = lshbench.random_rotations(d, cfg, seed=0, dtype=np.float64)
    buckets = pipeline_buckets(qk, R, cfg)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        got = window_metrics(qk, buckets, cfg, ref)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    window_lists = 4 * L * 128 * 8
    assert peak < window_lists / 2 and peak < L * L * 8 / 16, f"peak {peak / 2**20:.0f} MiB"
    assert np.isfinite(got.attn_tv) and got.top1_recall > 0  # key 0 is in some windows


def test_hashing_beats_random_keys_on_clustered_input() -> None:
    """Clustered input, L = 4096, H = 8, chunk 64, 128 buckets: LSH's windows hold the
    keys attention goes to, random buckets of the same budget do not (measured: attn_tv
    0.224 / 0.113 for LSH, 0.777 for random, multiplicity / count-once)."""
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs("clustered", 1, 4096, 64, 64, seed=0, dtype=np.float64)
    ref = dense_reference(qk, v, False)
    for weighting in WEIGHTINGS:
        got = {}
        for method in ("lsh", "random"):
            cfg = lshbench.LSHConfig(8, 128, 64, method=method, weighting=weighting)
            R = lshbench.random_rotations(64, cfg, seed=1, dtype=np.float64)
            got[method] = window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, ref)
        assert got["lsh"].attn_tv < got["random"].attn_tv - 0.3, (weighting, got)
        assert got["lsh"].mass_recall > got["random"].mass_recall + 0.3, (weighting, got)


# --- the oracle -------------------------------------------------------------------------


@pytest.mark.parametrize(("causal", "separate"), [(False, False), (True, False), (False, True)])
def test_oracle_is_one_minus_the_exact_mass_of_the_k_best_keys(causal, separate) -> None:
    """attn_tv of the oracle = 1 - mean over scored rows of the k largest exact
    probabilities, from a dense softmax written out here (one query at a time, sorted)."""
    from helpers import full_scores, full_softmax

    rng = np.random.default_rng(5)
    B, L, d = 2, 96, 8
    qk = rng.standard_normal((B, L, d)) * 2.0
    k = rng.standard_normal((B, L, d)) if separate else None
    ref = dense_reference(qk, qk, causal, k=k)
    probs = full_softmax(qk @ k.transpose(0, 2, 1) if separate else full_scores(qk, causal))
    budgets = [1, 7, 40, 96, 500]
    got = metrics.oracle_metrics(qk, budgets, causal, ref, block_rows=13, k=k)
    for kk, m in zip(budgets, got, strict=True):
        kept = min(kk, L)
        mass = [
            sorted(probs[b, i].tolist(), reverse=True)[:kept]
            for b in range(B)
            for i in range(L)
            if ref.rows[b, i]
        ]
        want = 1.0 - float(np.mean([sum(row) for row in mass]))
        assert abs(m.attn_tv - want) < 1e-6
        assert abs(m.attn_tv - (1.0 - m.mass_recall)) < 1e-12
        assert m.keys_slots == kept and m.keys_distinct == kept and m.top1_recall == 1.0
    assert got[0].attn_tv > got[1].attn_tv > got[2].attn_tv > 0.0
    assert abs(got[3].attn_tv) < 1e-12 and abs(got[4].attn_tv) < 1e-12  # every key


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_oracle_bounds_every_window_with_as_many_keys(method: str, weighting: str) -> None:
    """No windows holding at most k distinct keys per query beat the k best keys."""
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs("clustered", 1, 512, 16, seed=1, dtype=np.float64)
    ref = dense_reference(qk, v, False)
    for H in (1, 2, 4):
        cfg = lshbench.LSHConfig(H, 16, 16, method=method, weighting=weighting)
        R = lshbench.random_rotations(16, cfg, seed=4, dtype=np.float64)
        win = window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, ref)
        distinct, slots = metrics.oracle_metrics(
            qk, [round(win.keys_distinct), win.keys_slots], False, ref
        )
        assert slots.attn_tv <= distinct.attn_tv + 1e-12
        assert distinct.attn_tv <= win.attn_tv
        assert distinct.mass_recall >= win.mass_recall
