"""Large-magnitude inputs: finite float32 inputs either compute the same
attention as float64 (to float32 accuracy) in every backend, or are rejected with a
ConfigError naming the rule; never NaN, never silently wrong."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import backend_params

import lshbench

L, D = 512, 64
CFG = lshbench.LSHConfig(n_hashes=4, n_buckets=16, chunk_len=64)


def _inputs(scale: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((L, D)) * scale, rng.standard_normal((L, D))


@pytest.mark.parametrize("backend", backend_params("numpy", "numba", "dense"))
@pytest.mark.parametrize("scale", [1e8, 1e12, 1e17])
def test_large_float32_inputs_match_float64(backend: str, scale: float) -> None:
    """At these scales attention is one-hot: float32 must agree with float64 closely (before
    the fix, numpy was off by up to 160 % at 1e8 and every backend overflowed at 1e19)."""
    qk, v = _inputs(scale)
    R = lshbench.random_rotations(D, CFG, seed=0, dtype=np.float64)
    b = lshbench.get_backend(backend)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out32 = b.attend(qk.astype(np.float32), v.astype(np.float32), CFG, R.astype(np.float32))
    out64 = b.attend(qk, v, CFG, R)
    assert np.isfinite(out32).all()
    err = np.abs(out32 - out64).max() / np.abs(out64).max()
    assert err < 1e-3


@pytest.mark.parametrize("backend", backend_params("numpy", "numba", "dense"))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_that_would_overflow_are_rejected(backend: str, dtype: type) -> None:
    qk, v = _inputs(1.0)
    qk[7, 3] = np.sqrt(np.finfo(dtype).max)  # finite, but q . x would overflow
    R = lshbench.random_rotations(D, CFG, seed=0, dtype=dtype)
    with pytest.raises(lshbench.ConfigError, match=r"^qk=.*must be at most .* scores q\.k"):
        lshbench.get_backend(backend).attend(qk.astype(dtype), v.astype(dtype), CFG, R)


@pytest.mark.parametrize("scale", [1e19, 1e30])
def test_float32_inputs_beyond_the_bound_are_one_config_error(scale: float) -> None:
    """Around 1e19 float32 inputs are finite but their products are not (numba returned
    all-NaN, numpy and dense wrong finite values): now one ConfigError before any work."""
    qk, v = _inputs(scale)
    R = lshbench.random_rotations(D, CFG, seed=0)
    for name in ("numpy", "dense"):
        with pytest.raises(lshbench.ConfigError, match=r"^qk=values up to .*: \|qk\| must be"):
            lshbench.get_backend(name).attend(qk.astype(np.float32), v.astype(np.float32), CFG, R)
