"""Variants of docs/design.md section 2b: method lsh / random / local, weighting multiplicity /
count-once, through the one sort/chunk/combine pipeline (the core API and the numpy backend).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import lsh_problems

import lshbench
from lshbench.core.config import LSHConfig
from lshbench.core.hashing import pipeline_buckets, random_bucket_seed
from lshbench.core.sorting import count_in_rows, window_multiplicities, window_positions

SETTINGS = settings(max_examples=30, deadline=None)


def variant(cfg: LSHConfig, method: str, weighting: str = "multiplicity") -> LSHConfig:
    return dataclasses.replace(cfg, method=method, weighting=weighting)


# --- configuration ----------------------------------------------------------------------


def test_defaults_are_section_2() -> None:
    cfg = LSHConfig()
    assert (cfg.method, cfg.weighting) == ("lsh", "multiplicity")
    assert cfg.as_dict()["method"] == "lsh" and cfg.as_dict()["weighting"] == "multiplicity"
    assert cfg.pipeline_config() is cfg


@pytest.mark.parametrize(
    "field,value,rule",
    [
        ("method", "hashed", "must be one of lsh, random, local"),
        ("method", 3, "must be one of"),
        ("weighting", "once", "must be one of multiplicity, count-once"),
        ("weighting", None, "must be one of"),
    ],
)
def test_bad_variant_names_field_value_rule(field, value, rule) -> None:
    with pytest.raises(lshbench.ConfigError) as info:
        LSHConfig(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"{field}=") and str(value) in msg and rule in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("method", ["lsh", "random"])
def test_hashing_methods_keep_rounds_and_chunks(method) -> None:
    cfg = LSHConfig(n_hashes=4, chunk_len=16, chunks_before=1, chunks_after=1, method=method)
    assert cfg.rounds == 4 and cfg.sort_chunk_len == 16
    assert cfg.pipeline_config() is cfg
    assert cfg.n_chunks(64) == 16 and cfg.window_len(64) == 48
    assert cfg.is_short(16) and not cfg.is_short(17)


def test_local_is_one_round_of_longer_chunks() -> None:
    cfg = LSHConfig(n_hashes=4, n_buckets=8, chunk_len=16, causal=True, method="local")
    assert cfg.rounds == 1 and cfg.sort_chunk_len == 64
    pc = cfg.pipeline_config()
    assert (pc.n_hashes, pc.chunk_len, pc.method, pc.causal) == (1, 64, "local", True)
    assert pc.pipeline_config() == pc  # idempotent
    assert cfg.n_chunks(256) == 4 == pc.n_chunks(256)
    assert cfg.window_len(256) == 128 == pc.window_len(256)  # same keys as 4 rounds of LSH
    assert cfg.is_short(64) and not cfg.is_short(65)
    assert cfg.window_len(64) == 64


def test_local_seqlen_rule_names_chunk_len() -> None:
    cfg = LSHConfig(n_hashes=4, chunk_len=16, method="local")
    cfg.check_seqlen(128)
    cfg.check_seqlen(40)  # short: exact dense attention
    with pytest.raises(lshbench.ConfigError) as info:
        cfg.check_seqlen(96)  # 4*96 % 16 == 0 would do for lsh, not for local
    msg = str(info.value)
    assert msg.startswith("chunk_len=16:") and "64" in msg and "96" in msg, msg
    LSHConfig(n_hashes=4, chunk_len=16).check_seqlen(96)


# --- buckets ----------------------------------------------------------------------------


def test_pipeline_buckets_of_each_method() -> None:
    rng = np.random.default_rng(0)
    qk = rng.standard_normal((2, 40, 6))
    cfg = LSHConfig(n_hashes=3, n_buckets=(4, 6), chunk_len=8)
    R = lshbench.random_rotations(6, cfg, seed=1, dtype=np.float64)
    lsh = pipeline_buckets(qk, R, cfg)
    np.testing.assert_array_equal(lsh, lshbench.hash_buckets(qk, R, cfg))
    rnd = pipeline_buckets(qk, R, variant(cfg, "random"))
    assert rnd.shape == (2, 3, 40) and rnd.dtype == np.int64
    want = np.random.default_rng(random_bucket_seed(R)).integers(0, 24, size=(2, 3, 40))
    np.testing.assert_array_equal(rnd, want)
    assert not np.array_equal(rnd, lsh)
    assert rnd.min() >= 0 and rnd.max() < 24
    local = pipeline_buckets(qk, R, variant(cfg, "local"))
    assert local.shape == (2, 1, 40) and not local.any()
    assert pipeline_buckets(qk[0], R, variant(cfg, "local")).shape == (1, 40)


def test_random_buckets_are_reproducible_from_the_rotations() -> None:
    rng = np.random.default_rng(1)
    qk = rng.standard_normal((1, 64, 4))
    cfg = LSHConfig(n_hashes=2, n_buckets=8, chunk_len=8, method="random")
    R = lshbench.random_rotations(4, cfg, seed=5, dtype=np.float64)
    a = pipeline_buckets(qk, R, cfg)
    np.testing.assert_array_equal(a, pipeline_buckets(qk * 3.0 + 1.0, R.copy(), cfg))  # not qk
    other = lshbench.random_rotations(4, cfg, seed=6, dtype=np.float64)
    assert not np.array_equal(a, pipeline_buckets(qk, other, cfg))
    seed = random_bucket_seed(R)
    assert 0 <= seed < 2**64 and seed == random_bucket_seed(R.astype(np.float64).copy())
    # the same rotations in either dtype (a float64 sweep and a float32 one) draw alike
    assert random_bucket_seed(R.astype(np.float32)) == seed
    q32 = qk.astype(np.float32)
    np.testing.assert_array_equal(pipeline_buckets(q32, R.astype(np.float32), cfg), a)
    np.testing.assert_array_equal(pipeline_buckets(q32, R, cfg), a)


# --- windows and multiplicities ---------------------------------------------------------


def naive_multiplicities(windows: np.ndarray) -> np.ndarray:
    """Loop: C[b, r, i, w] = count of windows[b, r, i, w] in windows[b, :, i, :]."""
    C = np.zeros_like(windows)
    B, R, L, W = windows.shape
    for b in range(B):
        for i in range(L):
            seen = windows[b, :, i, :].ravel().tolist()
            for r in range(R):
                for w in range(W):
                    C[b, r, i, w] = seen.count(windows[b, r, i, w])
    return C


@SETTINGS
@given(problem=lsh_problems(), method=st.sampled_from(["lsh", "random", "local"]))
def test_window_multiplicities_count_occurrences(problem, method) -> None:
    cfg, qk, _, R = problem
    cfg = variant(cfg, method)
    qk = qk if qk.ndim == 3 else qk[None]
    L = qk.shape[1]
    if method == "local":
        L = (L // cfg.sort_chunk_len) * cfg.sort_chunk_len or L  # chunkable, or short
        qk = qk[:, :L]
    buckets = pipeline_buckets(qk, R, cfg)  # (B, rounds, L)
    windows = window_positions(buckets, cfg)
    assert windows.shape == (qk.shape[0], cfg.rounds, L, cfg.window_len(L))
    C = window_multiplicities(buckets, cfg)
    assert C.shape == windows.shape
    np.testing.assert_array_equal(C, naive_multiplicities(windows))
    assert (C >= 1).all()


def test_local_windows_are_blocks_of_positions() -> None:
    """local, m*H = 8, one chunk back: query i sees its own block and the previous one."""
    cfg = LSHConfig(n_hashes=2, chunk_len=4, method="local")
    buckets = np.zeros((1, 1, 32), dtype=np.int64)
    windows = window_positions(buckets, cfg)  # (1, 1, 32, 16)
    for i in range(32):
        block = i // 8
        prev = (block - 1) % 4
        assert windows[0, 0, i].tolist() == list(range(8 * prev, 8 * prev + 8)) + list(
            range(8 * block, 8 * block + 8)
        )
    assert (window_multiplicities(buckets, cfg) == 1).all()


def test_count_in_rows() -> None:
    x = np.array([[3, 1, 3, 3, 2], [0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(count_in_rows(x), [[3, 1, 3, 3, 1], [2, 2, 3, 3, 3]])


# --- the numpy backend runs every variant ------------------------------------------------

METHODS = ["lsh", "random", "local"]
WEIGHTINGS = ["multiplicity", "count-once"]


@SETTINGS
@given(
    problem=lsh_problems(),
    method=st.sampled_from(METHODS),
    weighting=st.sampled_from(WEIGHTINGS),
)
def test_numpy_output_is_the_weighted_softmax_over_the_windows(problem, method, weighting):
    """multiplicity: one softmax over the multiset union of windows; count-once: the exact
    softmax restricted to the distinct keys the windows contain."""
    from helpers import naive_window_attention

    cfg, qk, v, R = problem
    cfg = variant(cfg, method, weighting)
    qk3 = qk if qk.ndim == 3 else qk[None]
    v3 = v if v.ndim == 3 else v[None]
    L = qk3.shape[1]
    if method == "local" and not cfg.is_short(L):
        L = (L // cfg.sort_chunk_len) * cfg.sort_chunk_len
    qk3, v3 = qk3[:, :L], v3[:, :L]
    _, ahat = naive_window_attention(qk3, R, cfg)  # (B, L, L)
    out = lshbench.get_backend("numpy").attend(qk3, v3, cfg, R)
    np.testing.assert_allclose(out, ahat @ v3, rtol=0, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("n_hashes,chunk_len", [(4, 16), (2, 48), (3, 32)])
def test_local_covering_the_sequence_equals_dense(causal, weighting, n_hashes, chunk_len):
    """chunk_len * n_hashes >= L: one chunk holds the whole sequence, attention is exact."""
    rng = np.random.default_rng(n_hashes)
    qk = rng.standard_normal((2, 64, 8))
    v = rng.standard_normal((2, 64, 5))
    cfg = LSHConfig(n_hashes, 8, chunk_len, causal, method="local", weighting=weighting)
    R = lshbench.random_rotations(8, cfg, seed=0, dtype=np.float64)
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    dense = lshbench.get_backend("dense").attend(qk, v, cfg)
    np.testing.assert_allclose(out, dense, rtol=0, atol=1e-12)


def test_local_attends_to_its_block_and_the_previous_one() -> None:
    """local, m*H = 16, L = 64, one chunk back, non-causal: query i's output is the softmax
    over positions of its block and the block before (cyclically), self masked."""
    from helpers import full_scores, full_softmax

    rng = np.random.default_rng(3)
    qk = rng.standard_normal((1, 64, 6))
    v = rng.standard_normal((1, 64, 3))
    cfg = LSHConfig(n_hashes=4, n_buckets=8, chunk_len=4, method="local")
    R = lshbench.random_rotations(6, cfg, seed=0, dtype=np.float64)
    s = full_scores(qk, False)[0]  # (L, L)
    block = np.arange(64) // 16
    seen = (block[None, :] == block[:, None]) | (block[None, :] == (block[:, None] - 1) % 4)
    want = full_softmax(np.where(seen, s, -np.inf)) @ v[0]
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    np.testing.assert_allclose(out[0], want, rtol=0, atol=1e-12)
    details = lshbench.get_backend("numpy").attend_details(qk[0], v[0], cfg, R)
    assert details.round_out.shape == (1, 64, 3) and details.round_lse.shape == (1, 64)
    assert details.buckets.shape == (1, 64) and not details.buckets.any()
    np.testing.assert_allclose(details.out, out[0], rtol=0, atol=1e-14)


def test_random_differs_from_lsh_and_is_reproducible() -> None:
    rng = np.random.default_rng(4)
    qk = rng.standard_normal((1, 128, 8))
    v = rng.standard_normal((1, 128, 4))
    cfg = LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16)
    R = lshbench.random_rotations(8, cfg, seed=0, dtype=np.float64)
    be = lshbench.get_backend("numpy")
    rnd = variant(cfg, "random")
    a, b = be.attend(qk, v, rnd, R), be.attend(qk, v, rnd, R.copy())
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - be.attend(qk, v, cfg, R)).max() > 1e-3
    details = be.attend_details(qk, v, rnd, R)
    np.testing.assert_array_equal(details.buckets, pipeline_buckets(qk, R, rnd))


def test_count_once_changes_only_repeated_keys() -> None:
    """One round without look-around sees each key once: both weightings agree; with
    rounds that repeat keys they differ."""
    rng = np.random.default_rng(5)
    qk = rng.standard_normal((1, 64, 8))
    v = rng.standard_normal((1, 64, 4))
    be = lshbench.get_backend("numpy")
    one = LSHConfig(n_hashes=1, n_buckets=8, chunk_len=8, chunks_before=0)
    R1 = lshbench.random_rotations(8, one, seed=0, dtype=np.float64)
    np.testing.assert_allclose(
        be.attend(qk, v, variant(one, "lsh", "count-once"), R1), be.attend(qk, v, one, R1),
        rtol=0, atol=1e-13,
    )  # fmt: skip
    many = LSHConfig(n_hashes=4, n_buckets=8, chunk_len=8)
    R4 = lshbench.random_rotations(8, many, seed=0, dtype=np.float64)
    once = be.attend(qk, v, variant(many, "lsh", "count-once"), R4)
    assert np.abs(once - be.attend(qk, v, many, R4)).max() > 1e-3


@SETTINGS
@given(problem=lsh_problems(), method=st.sampled_from(METHODS), rows=st.integers(1, 50))
def test_window_blocks_are_the_window_positions_and_the_backend_windows(problem, method, rows):
    from lshbench.backends.numpy_lsh import lsh_attention
    from lshbench.core.sorting import window_blocks

    cfg, qk, v, R = problem
    cfg = variant(cfg, method)
    qk = qk if qk.ndim == 3 else qk[None]
    v = v if v.ndim == 3 else v[None]
    L = qk.shape[1]
    if method == "local" and not cfg.is_short(L):
        L = (L // cfg.sort_chunk_len) * cfg.sort_chunk_len
    qk, v = qk[:, :L], v[:, :L]
    buckets = pipeline_buckets(qk, R, cfg)
    whole = window_positions(buckets, cfg)  # (B, rounds, L, W)
    blocks = list(window_blocks(buckets, cfg, rows))
    assert [b[:2] for b in blocks] == [(s, min(L, s + rows)) for s in range(0, L, rows)]
    np.testing.assert_array_equal(np.concatenate([b[2] for b in blocks], axis=2), whole)
    if cfg.is_short(L):
        np.testing.assert_array_equal(whole, np.broadcast_to(np.arange(L), whole.shape))
    else:  # the windows the numpy backend's chunks read, brought back to position order
        trace: dict = {}
        lsh_attention(qk, v, cfg, R.astype(qk.dtype), trace=trace)
        B, H = qk.shape[0], cfg.rounds
        per_slot = np.take_along_axis(
            np.repeat(trace["kpos"], cfg.sort_chunk_len, axis=1),
            trace["undo_sort"][..., None],
            axis=1,
        )  # (B, NC, W) -> (B, H*L, W) sorted -> original slot order
        np.testing.assert_array_equal(per_slot.reshape(B, H, L, -1), whole)
