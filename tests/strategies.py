"""Hypothesis strategies for LSH configurations and inputs, shared by the property tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import lshbench

even = st.integers(1, 8).map(lambda k: 2 * k)
n_buckets = st.one_of(even, st.lists(st.sampled_from([2, 4, 6]), min_size=2, max_size=3).map(tuple))


@st.composite
def lsh_problems(draw, max_chunks_before: int = 2, max_chunks_after: int = 1, dtype=np.float64):
    """A valid (config, qk, v, rotations) with L > chunk_len (the chunked LSH path)."""
    H = draw(st.integers(1, 4))
    m = draw(st.sampled_from([2, 3, 4, 8]))
    # L > m and H*L % m == 0 (L need not be a multiple of m: chunks may straddle rounds)
    L = draw(st.integers(m + 1, 48).filter(lambda n: (H * n) % m == 0))
    cfg = lshbench.LSHConfig(
        n_hashes=H,
        n_buckets=draw(n_buckets),
        chunk_len=m,
        causal=draw(st.booleans()),
        chunks_before=draw(st.integers(0, max_chunks_before)),
        chunks_after=draw(st.integers(0, max_chunks_after)),
    )
    d = draw(st.integers(1, 6))
    dv = draw(st.integers(1, 5))
    batch = draw(st.sampled_from([None, 1, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lead = () if batch is None else (batch,)
    qk = rng.standard_normal((*lead, L, d)).astype(dtype)
    v = rng.standard_normal((*lead, L, dv)).astype(dtype)
    rotations = lshbench.random_rotations(d, cfg, seed=int(rng.integers(2**31)))
    return cfg, qk, v, rotations


@st.composite
def separate_problems(draw, dtype=np.float64):
    """A valid (config, q, k, v, rotations) with separate queries and keys (non-causal),
    L > the pipeline's chunk (the chunked path), any method and weighting."""
    method = draw(st.sampled_from(["lsh", "random", "local"]))
    H = draw(st.integers(1, 4))
    m = draw(st.sampled_from([2, 3, 4, 8]))
    rounds, chunk = (1, m * H) if method == "local" else (H, m)
    L = draw(st.integers(chunk + 1, 48).filter(lambda n: (rounds * n) % chunk == 0))
    cfg = lshbench.LSHConfig(
        n_hashes=H,
        n_buckets=draw(n_buckets),
        chunk_len=m,
        chunks_before=draw(st.integers(0, 2)),
        chunks_after=draw(st.integers(0, 1)),
        method=method,
        weighting=draw(st.sampled_from(["multiplicity", "count-once"])),
        qk="separate",
    )
    d = draw(st.integers(1, 6))
    dv = draw(st.integers(1, 5))
    batch = draw(st.sampled_from([None, 1, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lead = () if batch is None else (batch,)
    scale = draw(st.sampled_from([0.5, 1.0, 3.0]))  # from flat to peaked scores
    q = (scale * rng.standard_normal((*lead, L, d))).astype(dtype)
    k = rng.standard_normal((*lead, L, d)).astype(dtype)
    v = rng.standard_normal((*lead, L, dv)).astype(dtype)
    rotations = lshbench.random_rotations(d, cfg, seed=int(rng.integers(2**31)))
    return cfg, q, k, v, rotations
