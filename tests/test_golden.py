"""Golden cases from Hugging Face's LSHSelfAttention (see tests/golden.py for provenance)."""

from __future__ import annotations

import numpy as np
import pytest
from golden import golden_cases
from helpers import backend_params

import lshbench

CASES = golden_cases()
IDS = [f"{c.index}-{c.note.replace(' ', '_').replace(',', '')}" for c in CASES]
LSH_BACKENDS = backend_params("numpy", "numba", "hf", "torch-lsh")


def test_there_are_24_cases() -> None:
    assert len(CASES) == 24


def test_the_golden_file_covers_distinct_configurations() -> None:
    """The npz itself holds at least 12 distinct configurations, causal and not, factorized
    buckets, look-ahead and chunks straddling rounds (H*L/m not a multiple of H)."""
    configs = {c.config for c in CASES}
    assert len(configs) >= 12
    assert {c.causal for c in configs} == {False, True}
    assert any(isinstance(c.n_buckets, tuple) for c in configs)
    assert any(c.chunks_after > 0 for c in configs)
    assert any(c.n_hashes > 1 for c in configs)
    assert all((c.method, c.weighting) == ("lsh", "multiplicity") for c in configs)
    straddle = [c for c in CASES if c.qk.shape[0] % c.config.chunk_len and c.config.n_hashes > 1]
    assert straddle, "no case has chunks that straddle two rounds"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hash_buckets_exact(case) -> None:
    buckets = lshbench.hash_buckets(case.qk, case.rotations, case.config)
    assert buckets.shape == case.buckets.shape
    np.testing.assert_array_equal(buckets, case.buckets)
    # float64 input hashes identically (the products are exact)
    buckets64 = lshbench.hash_buckets(case.qk.astype(np.float64), case.rotations, case.config)
    np.testing.assert_array_equal(buckets64, case.buckets)


@pytest.mark.parametrize("backend", LSH_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_float64(case, backend) -> None:
    out = lshbench.get_backend(backend).attend(
        case.qk.astype(np.float64), case.v.astype(np.float64), case.config, case.rotations
    )
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, case.out, rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", LSH_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_float32_except_self_only_rows(case, backend) -> None:
    out = lshbench.get_backend(backend).attend(case.qk, case.v, case.config, case.rotations)
    assert out.dtype == np.float32
    rows = np.setdiff1d(np.arange(case.qk.shape[0]), case.self_only_rows)
    np.testing.assert_allclose(out[rows], case.out[rows], rtol=0, atol=1e-4)


def test_self_only_rows_are_named() -> None:
    """The rows excluded from the float32 comparison are exactly the causal first rows etc."""
    named = {c.index: c.self_only_rows.tolist() for c in CASES if len(c.self_only_rows)}
    # only causal cases can have a query whose sole valid key is itself
    assert all(CASES[i].config.causal for i in named)
    # position 0 under causal masking sees only itself
    assert all(0 in rows for rows in named.values())
    for c in CASES:
        if not c.config.causal:
            assert len(c.self_only_rows) == 0


def test_dense_matches_one_chunk_cases() -> None:
    """Cases whose whole sequence fits one chunk per round equal exact attention."""
    dense = lshbench.get_backend("dense")
    checked = 0
    for c in CASES:
        L = c.qk.shape[0]
        if c.config.chunk_len >= L or (c.config.chunk_len == L):
            out = dense.attend(c.qk.astype(np.float64), c.v.astype(np.float64), c.config)
            np.testing.assert_allclose(out, c.out, rtol=0, atol=1e-9)
            checked += 1
    assert checked >= 2
