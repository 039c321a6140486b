"""``peaked`` input and the sharpness knob (``target_entropy``) of peaked and duplicate.

Entropies are measured on ALL rows with the dense backend's own attention
(:func:`lshbench.core.dense.dense_probability_blocks`), not on the generator's subsample.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lshbench
from lshbench import ConfigError
from lshbench.core.attention import normalize_keys
from lshbench.core.dense import dense_attention, dense_probability_blocks
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.sharpness import max_mean_entropy, mean_row_entropy, row_entropies


def dense_entropy(qk: np.ndarray, causal: bool = False) -> float:
    """Mean row entropy straight from the dense backend's probability blocks, in qk's dtype
    (float32 for the generators' default output: the attention a float32 cell computes)."""
    rows = []
    for _, _, probs, _ in dense_probability_blocks(qk, causal):
        logs = np.log(np.where(probs > 0, probs, 1.0))  # 0 log 0 = 0
        rows.append(-(probs * logs).sum(-1, dtype=np.float64))
    return float(np.concatenate(rows, 1).mean())


# ------------------------------------------------------------ acceptance: target entropy


@pytest.mark.parametrize(
    "L",
    [
        1024,
        2048,
        pytest.param(4096, marks=pytest.mark.slow),
        pytest.param(8192, marks=pytest.mark.slow),
    ],
)
def test_peaked_hits_target_entropy_on_all_rows(L: int) -> None:
    for target in (1.0, 2.0, 4.0):
        qk, _ = make_inputs("peaked", 1, L, 64, seed=0, target_entropy=target)
        assert qk.dtype == np.float32
        measured = dense_entropy(qk)
        assert abs(measured / target - 1) < 0.10, (L, target, measured)


def test_peaked_spans_half_a_nat_to_most_of_log_l() -> None:
    """The supported range: 0.5 nats up to 0.8 log L, with a batch and float64."""
    L = 1024
    for target in (0.5, 0.8 * math.log(L)):
        qk, _ = make_inputs("peaked", 2, L, 32, seed=1, dtype=np.float64, target_entropy=target)
        assert abs(dense_entropy(qk) / target - 1) < 0.10, target


def test_peaked_causal_targets_the_causal_attention() -> None:
    qk, _ = make_inputs("peaked", 1, 1024, 64, seed=2, target_entropy=2.0, causal=True)
    assert abs(dense_entropy(qk, causal=True) / 2.0 - 1) < 0.10
    # the non-causal attention of the same tokens is broader (every query sees all keys)
    assert dense_entropy(qk, causal=False) > 2.2


def test_sharper_target_means_larger_qk_and_same_tokens() -> None:
    """qk = beta * u: one scale per input, rows of equal length, beta grows as entropy falls."""
    sharp, v1 = make_inputs("peaked", 1, 512, 16, seed=3, dtype=np.float64, target_entropy=1.0)
    broad, v2 = make_inputs("peaked", 1, 512, 16, seed=3, dtype=np.float64, target_entropy=4.0)
    norms = np.linalg.norm(sharp, axis=-1)
    np.testing.assert_allclose(norms, norms.flat[0], rtol=1e-12)
    ratio = norms.flat[0] / np.linalg.norm(broad[0, 0])
    assert ratio > 1
    np.testing.assert_allclose(sharp, ratio * broad, rtol=1e-10)
    np.testing.assert_array_equal(v1, v2)


def test_peaked_is_concentrated_where_gaussian_is_not() -> None:
    """Same entropy budget, different shape: Zipf clusters put most mass on a few keys."""
    qk, _ = make_inputs("peaked", 1, 2048, 64, seed=0, target_entropy=2.0)
    probs = np.concatenate([p for _, _, p, _ in dense_probability_blocks(qk, False)], 1)
    top8 = np.sort(probs, axis=-1)[..., -8:].sum(-1)  # (1, L)
    assert np.median(top8) > 0.5
    assert dense_entropy(make_inputs("gaussian", 1, 2048, 64, seed=0)[0]) > 0.9 * math.log(2048)


# ---------------------------------------------------------------- values: value_corr


def out_err_v(out: np.ndarray, ref: np.ndarray, v: np.ndarray) -> float:
    """``||out - ref||_F / ||v - mean(v)||_F`` (docs/design.md section 6), mean over positions."""
    v = v.astype(np.float64)
    centered = v - v.mean(axis=-2, keepdims=True)  # (B, L, dv)
    return float(np.linalg.norm(out - ref) / np.linalg.norm(centered))


def test_raising_value_corr_lowers_lsh_output_error() -> None:
    cfg = lshbench.LSHConfig(n_hashes=4, n_buckets=32, chunk_len=64)
    rot = lshbench.random_rotations(64, cfg, seed=0)
    lsh = lshbench.get_backend("numpy")
    errors = []
    for rho in (0.0, 0.5, 0.9):
        qk, v = make_inputs("peaked", 1, 1024, 64, seed=0, target_entropy=2.0, value_corr=rho)
        out = lsh.attend(qk, v, cfg, rot).astype(np.float64)
        ref = dense_attention(qk.astype(np.float64), v.astype(np.float64), False)
        errors.append(out_err_v(out, ref, v))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.7 * errors[0], errors


def test_value_corr_one_gives_one_value_per_cluster_and_same_qk() -> None:
    qk0, v0 = make_inputs("peaked", 1, 640, 8, 4, seed=5, value_corr=0.0)
    qk1, v1 = make_inputs("peaked", 1, 640, 8, 4, seed=5, value_corr=1.0)
    np.testing.assert_array_equal(qk0, qk1)
    assert len(np.unique(v0[0], axis=0)) == 640
    assert len(np.unique(v1[0], axis=0)) <= round(640 / 32)  # one per cluster
    assert abs(float(v1.std()) - 1) < 0.5 and abs(float(v0.std()) - 1) < 0.1  # O(1)


# ------------------------------------------------------------- duplicate: target_entropy


@pytest.mark.parametrize("target", [1.0, 3.0])
def test_duplicate_target_entropy_scales_qk_only(target: float) -> None:
    L = 2048
    qk, v = make_inputs("duplicate", 1, L, 64, seed=0, dtype=np.float64)
    qk_t, v_t = make_inputs("duplicate", 1, L, 64, seed=0, dtype=np.float64, target_entropy=target)
    np.testing.assert_array_equal(v_t, v)
    scale = qk_t[0, 0, 0] / qk[0, 0, 0]
    np.testing.assert_allclose(qk_t, scale * qk, rtol=1e-12)
    assert abs(dense_entropy(qk_t) / target - 1) < 0.10


def test_duplicate_default_is_unscaled() -> None:
    """No target: the historical generator, untouched (entropy about 4.5 nats at L=2048)."""
    qk, _ = make_inputs("duplicate", 1, 2048, 64, seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(qk[0, :1024], rng.standard_normal((1, 2048, 64))[0, :1024])
    assert 4.0 < dense_entropy(qk) < 5.0


# --------------------------------------------------------------- entropy measurement


@pytest.mark.parametrize("causal", [False, True])
def test_row_subset_path_equals_dense_blocks(causal: bool) -> None:
    qk, _ = make_inputs("clustered", 2, 300, 8, seed=0, dtype=np.float64)
    full = row_entropies(qk, causal)  # dense_probability_blocks
    subset = row_entropies(qk, causal, rows=np.arange(300))  # the bisection's path
    np.testing.assert_allclose(subset, full, rtol=1e-9, atol=1e-9)
    picked = np.array([0, 5, 299])
    np.testing.assert_allclose(row_entropies(qk, causal, rows=picked), full[:, picked], atol=1e-9)


def test_entropy_against_a_naive_softmax() -> None:
    """Independent check: L x L scores, masks by hand, scipy-free softmax."""
    qk, _ = make_inputs("gaussian", 1, 50, 6, seed=1, dtype=np.float64)
    scores = qk[0] @ normalize_keys(qk[0]).T  # (L, d) @ (d, L) -> (L, L)
    for causal in (False, True):
        s = scores.copy()
        if causal:
            s[np.triu_indices(50, 1)] = -1e9
        np.fill_diagonal(s, -1e5)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        expected = -(p * np.log(np.where(p > 0, p, 1))).sum(-1).mean()
        assert mean_row_entropy(qk, causal) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("causal", [False, True])
def test_uniform_attention_has_the_maximum_entropy(causal: bool) -> None:
    zeros = np.zeros((1, 40, 4))
    assert mean_row_entropy(zeros, causal) == pytest.approx(max_mean_entropy(40, causal))


# ------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_entropy": 0.0}, "target_entropy=0.0"),
        ({"target_entropy": -1.0}, "target_entropy=-1.0"),
        ({"target_entropy": math.log(64)}, "target_entropy=4.15"),
        ({"target_entropy": "2"}, "target_entropy=2"),
        ({"target_entropy": float("nan")}, "target_entropy=nan"),
        ({"value_corr": -0.1}, "value_corr=-0.1"),
        ({"value_corr": 1.5}, "value_corr=1.5"),
        ({"kind": "gaussian", "target_entropy": 2.0}, "not gaussian"),
        ({"kind": "duplicate", "value_corr": 0.5}, "not duplicate"),
        ({"seqlen": 4}, "target_entropy=2.0"),  # the default 2 nats > log(3) at L = 4
    ],
)
def test_bad_knobs_are_one_line_config_errors(kwargs: dict, message: str) -> None:
    args = {"kind": "peaked", "batch": 1, "seqlen": 64, "d": 8}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message) as info:
        make_inputs(**args)
    assert "\n" not in str(info.value)
