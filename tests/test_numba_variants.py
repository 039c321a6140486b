"""The ``numba`` backend's variants (docs/design.md section 2b): method lsh / random / local and
weighting multiplicity / count-once, against the ``numpy`` backend and the definitions.

Like tests/test_numba_backend.py, ``qk`` and the rotations are quantized to multiples of
1/16 so both backends pick the same buckets (and ``random`` the same seed in float32 and
float64); outputs then agree to rounding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import alloc_peak, assert_agrees_with_numpy, quantize
from strategies import n_buckets

import lshbench
from lshbench.core.config import METHODS, WEIGHTINGS, LSHConfig
from lshbench.core.hashing import pipeline_buckets
from lshbench.core.sorting import sort_slots

pytestmark = pytest.mark.skipif(
    not lshbench.list_backends()["numba"].available,
    reason=f"numba backend not available: {lshbench.list_backends()['numba'].reason}",
)

SETTINGS = settings(deadline=None, max_examples=80)
VARIANTS = [(m, w) for m in METHODS for w in WEIGHTINGS]


@st.composite
def variant_problems(draw):
    """A (config, qk, v, rotations) of any variant on the chunked path (L > sort_chunk_len):
    small L, so windows often straddle rounds, wrap, or repeat chunks (A > chunks)."""
    method, weighting = draw(st.sampled_from(VARIANTS))
    H = draw(st.integers(1, 4))
    m = draw(st.sampled_from([2, 3, 4, 8]))
    if method == "local":  # L a multiple of m*H, at least two chunks of m*H
        L = m * H * draw(st.integers(2, max(2, 64 // (m * H))))
    else:  # H*L % m == 0, L need not be a multiple of m: chunks straddle rounds
        L = draw(st.integers(m + 1, 48).filter(lambda n: (H * n) % m == 0))
    cfg = LSHConfig(
        n_hashes=H,
        n_buckets=draw(n_buckets),
        chunk_len=m,
        causal=draw(st.booleans()),
        chunks_before=draw(st.integers(0, 2)),
        chunks_after=draw(st.integers(0, 1)),
        method=method,
        weighting=weighting,
    )
    d, dv = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    batch = draw(st.sampled_from([None, 1, 2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lead = () if batch is None else (batch,)
    qk = rng.standard_normal((*lead, L, d))
    if draw(st.booleans()):  # near-duplicate rows: the same keys in many rounds' windows
        qk[..., 1::2, :] = qk[..., ::2, :][..., : qk[..., 1::2, :].shape[-2], :]
    v = rng.standard_normal((*lead, L, dv))
    rot = lshbench.random_rotations(d, cfg, seed=int(rng.integers(2**31)), dtype=np.float64)
    return cfg, qk, v, rot


# ------------------------------------------------------------ agreement with numpy


@SETTINGS
@given(problem=variant_problems())
def test_every_variant_agrees_with_numpy(numba_backend, problem) -> None:
    """Every method x weighting, causal or not, 0-2 back, 0-1 ahead, batch or not,
    integer and factorized buckets, float32 and float64."""
    cfg, qk, v, rot = problem
    assert not cfg.is_short(qk.shape[-2])
    assert_agrees_with_numpy(numba_backend, cfg, qk, v, rot)


@pytest.mark.parametrize(("method", "weighting"), VARIANTS)
@pytest.mark.parametrize(
    ("L", "H", "m", "nb", "before", "after", "causal"),
    [
        (1000, 2, 40, 64, 1, 0, False),  # L % m != 0: chunks straddle rounds
        (1000, 2, 40, (8, 6), 2, 1, True),
        (777, 3, 37, 16, 0, 1, True),
        (1000, 3, 100, 8, 1, 0, False),  # count-once: 100 queries a block, two mask words
        (768, 4, 64, 32, 1, 1, False),  # local: chunks of 256, scored in blocks of 128
    ],
)
def test_variants_agree_with_numpy_on_larger_shapes(
    numba_backend, method, weighting, L, H, m, nb, before, after, causal
) -> None:
    cfg = LSHConfig(n_hashes=H, n_buckets=nb, chunk_len=m, causal=causal, chunks_before=before,
                    chunks_after=after, method=method, weighting=weighting)  # fmt: skip
    if method == "local" and L % (m * H):
        L = L - L % (m * H)  # local needs L % (m*H) == 0
    rng = np.random.default_rng(L * H + m)
    qk = rng.standard_normal((2, L, 24))
    qk[:, L // 2 :] = qk[:, : L - L // 2] + 0.01 * rng.standard_normal((2, L - L // 2, 24))
    v = rng.standard_normal((2, L, 20))
    rot = lshbench.random_rotations(24, cfg, seed=L, dtype=np.float64)
    assert not cfg.is_short(L)
    assert_agrees_with_numpy(numba_backend, cfg, qk, v, rot)


@pytest.mark.parametrize("method", METHODS)
def test_sorted_positions_follow_the_pipeline(numba_backend, method) -> None:
    """The backend's own buckets and sort equal the core's for every method."""
    cfg = LSHConfig(n_hashes=3, n_buckets=(4, 6), chunk_len=8, method=method)
    rng = np.random.default_rng(3)
    qk = quantize(rng.standard_normal((2, 96, 6)))
    rot = quantize(lshbench.random_rotations(6, cfg, seed=3, dtype=np.float64))
    got = numba_backend.sorted_positions(qk, rot, cfg)  # (B, R*L)
    want = sort_slots(pipeline_buckets(qk, rot, cfg), cfg.pipeline_config().total_buckets)
    assert got.shape == (2, cfg.rounds * 96)
    np.testing.assert_array_equal(got, want.positions)


# ------------------------------------------------------------- the definitions


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_local_covering_the_sequence_equals_dense(numba_backend, causal, weighting) -> None:
    """chunk_len * n_hashes >= L: one chunk holds the whole sequence, attention is exact."""
    rng = np.random.default_rng(7)
    qk, v = rng.standard_normal((2, 48, 8)), rng.standard_normal((2, 48, 5))
    dense = lshbench.get_backend("dense")
    for m, H in [(12, 4), (16, 4), (48, 1)]:
        cfg = LSHConfig(n_hashes=H, n_buckets=4, chunk_len=m, causal=causal, method="local",
                        weighting=weighting)  # fmt: skip
        rot = lshbench.random_rotations(8, cfg, seed=1, dtype=np.float64)
        want = dense.attend(qk, v, cfg)
        np.testing.assert_allclose(numba_backend.attend(qk, v, cfg, rot), want, atol=1e-12)
        if m * H == 48:  # through the kernels too: one chunk, its window itself (cyclically)
            got = numba_backend._attend(qk, v, cfg, rot)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def restricted_softmax(qk, v, rot, cfg) -> np.ndarray:
    """The count-once definition, plainly: each query attends once to every distinct key of
    its windows (all rounds), with the section-2 scores and masks. float64 (B, L, dv)."""
    B, L, d = qk.shape
    windows = lshbench.window_positions(pipeline_buckets(qk, rot, cfg), cfg)  # (B, R, L, W)
    keys = qk / np.sqrt((qk**2).mean(-1, keepdims=True) + 1e-6) / np.sqrt(d)
    out = np.empty((B, L, v.shape[-1]))
    for b in range(B):
        for i in range(L):
            j = np.unique(windows[b, :, i, :])  # distinct keys
            s = keys[b, j] @ qk[b, i]
            if cfg.causal:
                s[j > i] = -1e9
            s[j == i] = -1e5
            p = np.exp(s - s.max())
            out[b, i] = p @ v[b, j] / p.sum()
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("L", "H", "m", "before", "after"), [(60, 4, 6, 1, 0), (40, 3, 3, 2, 1),
                                                               (24, 2, 4, 3, 2)])  # fmt: skip
def test_count_once_is_the_restricted_softmax(numba_backend, method, causal, L, H, m, before,
                                              after) -> None:  # fmt: skip
    """Duplicated rows make the same key fall in several rounds' windows; (24, 2, 4, 3, 2)
    has windows longer than all chunks (each chunk several times in one window)."""
    if method == "local":
        m = m // 2 if (L % (m * H)) else m
        H = H if L % (m * H) == 0 else 1
    cfg = LSHConfig(n_hashes=H, n_buckets=4, chunk_len=m, causal=causal, chunks_before=before,
                    chunks_after=after, method=method, weighting="count-once")  # fmt: skip
    rng = np.random.default_rng(L + H)
    qk = rng.standard_normal((2, L, 5))
    qk[:, 1::3] = qk[:, ::3][:, : qk[:, 1::3].shape[1]]  # repeated rows collide every round
    v = rng.standard_normal((2, L, 4))
    rot = lshbench.random_rotations(5, cfg, seed=L, dtype=np.float64)
    assert not cfg.is_short(L)
    got = numba_backend.attend(qk, v, cfg, rot)
    np.testing.assert_allclose(got, restricted_softmax(qk, v, rot, cfg), rtol=0, atol=1e-9)
    multiplicity = numba_backend.attend(qk, v, dataclasses.replace(cfg, weighting="multiplicity"),
                                        rot)  # fmt: skip
    if cfg.rounds > 1:  # the test can fail: the weighting matters here
        assert np.abs(got - multiplicity).max() > 1e-6


# ---------------------------------------------------------------------- memory


def test_count_once_memory_is_small_and_not_windows_sized(numba_backend) -> None:
    """Count-once adds the chunk ids (H*L ints), and per thread a ring of them, a bit table
    over the chunks and a block of counts: nothing of size H*L*W."""
    import numba

    L, H, m = 8192, 8, 64
    base = LSHConfig(n_hashes=H, n_buckets=64, chunk_len=m)
    once = dataclasses.replace(base, weighting="count-once")
    extra = alloc_peak(numba_backend, once, L) - alloc_peak(numba_backend, base, L)
    nt, W, NC = numba.get_num_threads(), base.window_len(L), base.n_chunks(L)
    bound = 4 * H * L + nt * (4 * W * H + 8 * NC + 4 * W * m) + 64 * 1024
    assert extra <= bound, (extra, bound)
    assert bound < H * L * W  # one byte per window entry would not fit: the test can fail


def test_random_and_local_memory(numba_backend) -> None:
    """random: the drawn int64 buckets (8*H*L bytes) replace the hashing scratch. local: no
    sorted rounds, but each thread's ring and scores hold a window H times as long (W = A*m*H
    keys), scored in blocks of at most QUERY_BLOCK queries, not m*H. The tiled values
    product (kernels ``tiled`` and ``mixed``) keeps the block's probabilities transposed as
    well: a second (QUERY_BLOCK, W) block per thread."""
    import numba

    from lshbench.backends.numba_lsh import QUERY_BLOCK

    L, H, d = 8192, 8, 32
    base = LSHConfig(n_hashes=H, n_buckets=64, chunk_len=64)
    lsh = alloc_peak(numba_backend, base, L, d)
    random = alloc_peak(numba_backend, dataclasses.replace(base, method="random"), L, d)
    assert random <= lsh + 8 * H * L + 64 * 1024
    local_cfg = dataclasses.replace(base, method="local")
    local = alloc_peak(numba_backend, local_cfg, L, d)
    W, nt = local_cfg.window_len(L), numba.get_num_threads()
    blocks = 2 if numba_backend.kernel in ("tiled", "mixed") else 1  # scores (+ transposed)
    per_thread = 4 * W * (2 * d + 2) + blocks * 4 * W * QUERY_BLOCK  # ring; one block's scores
    assert local <= lsh + nt * per_thread + 64 * 1024
    assert 4 * W * 64 * H > per_thread  # scoring whole chunks of m*H queries would not fit
