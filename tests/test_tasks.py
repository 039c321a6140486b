"""The duplication task scored as a task: ``task_accuracy`` and ``duplicate_copy_index``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lshbench
from lshbench import ConfigError
from lshbench.core.dense import dense_attention
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.tasks import duplicate_copy_index, task_accuracy


@pytest.mark.parametrize("L", [10, 11])
def test_copy_index_pairs_the_halves(L: int) -> None:
    index = duplicate_copy_index(L)
    assert index.shape == (L,)
    np.testing.assert_array_equal(index[:5], np.arange(5, 10))
    np.testing.assert_array_equal(index[5:10], np.arange(5))
    assert (index[10:] == -1).all()
    qk, v = make_inputs("duplicate", 2, L, 4, seed=0, dtype=np.float64)
    paired = index >= 0
    np.testing.assert_array_equal(qk[:, paired], qk[:, index[paired]])
    np.testing.assert_array_equal(v[:, paired], v[:, index[paired]])


def test_perfect_and_wrong_outputs() -> None:
    L = 20
    _, v = make_inputs("duplicate", 3, L, 4, 6, seed=1, dtype=np.float64)
    index = duplicate_copy_index(L)
    assert task_accuracy(2.5 * v[:, index], v, index) == 1.0  # cosine: scale does not matter
    wrong = np.roll(v, 1, axis=1)  # every output is a neighbour's value
    assert task_accuracy(wrong, v, index) == 0.0
    half = v.copy()
    half[:, : L // 2] = wrong[:, : L // 2]  # only the second half right
    assert task_accuracy(half, v, index) == pytest.approx(0.5)
    assert task_accuracy(v[0], v[0], index) == 1.0  # (L, dv) without a batch axis


def test_matches_a_naive_decoder_on_noisy_outputs() -> None:
    L = 64
    _, v = make_inputs("duplicate", 2, L, 8, seed=2, dtype=np.float64)
    index = duplicate_copy_index(L)
    out = v + 0.8 * np.random.default_rng(0).standard_normal(v.shape)
    unit = v / np.linalg.norm(v, axis=-1, keepdims=True)
    cosine = out @ unit.swapaxes(-1, -2)  # (B, L, dv) @ (B, dv, L) -> (B, L, L)
    nearest = cosine.argmax(-1)  # (B, L)
    hits = [np.array_equal(v[b, nearest[b, i]], v[b, index[i]]) for b in range(2) for i in range(L)]
    expected = float(np.mean(hits))
    assert 0.1 < expected < 0.95  # the noise makes it a real test
    assert task_accuracy(out, v, index) == pytest.approx(expected)


def test_no_copies_and_bad_shapes() -> None:
    v = np.ones((1, 4, 2))
    assert np.isnan(task_accuracy(v, v, np.full(4, -1)))
    with pytest.raises(ConfigError, match="out="):
        task_accuracy(v[:, :3], v, np.zeros(4, dtype=int))
    with pytest.raises(ConfigError, match="copy_index="):
        task_accuracy(v, v, np.zeros(3, dtype=int))


def test_dense_scores_one_on_duplicate_input() -> None:
    L = 2048
    qk, v = make_inputs("duplicate", 1, L, 64, seed=0)
    assert task_accuracy(dense_attention(qk, v, False), v, duplicate_copy_index(L)) == 1.0


def test_lsh_task_accuracy_rises_with_n_hashes() -> None:
    L = 2048
    qk, v = make_inputs("duplicate", 1, L, 64, seed=0)
    lsh = lshbench.get_backend("numpy")
    scores = []
    for H in (1, 2, 4, 8):
        cfg = lshbench.LSHConfig(n_hashes=H, n_buckets=64, chunk_len=64)
        out = lsh.attend(qk, v, cfg, lshbench.random_rotations(64, cfg, seed=0))
        scores.append(task_accuracy(out, v, duplicate_copy_index(L)))
    assert all(b >= a - 0.005 for a, b in itertools.pairwise(scores)), scores
    assert scores[-1] > scores[0] + 0.05, scores
    assert scores[0] < 0.95, scores  # H = 1 misses copies: the task discriminates
