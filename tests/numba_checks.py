"""Agreement checks shared by the numba test modules: numba against the numpy reference on
quantized inputs (multiples of 1/16, exact in float32), float32 caveat rows left out."""

from __future__ import annotations

import tracemalloc

import numpy as np

import lshbench
from lshbench.core.attention import valid_keys
from lshbench.core.config import LSHConfig
from lshbench.core.hashing import pipeline_buckets


def quantize(x: np.ndarray) -> np.ndarray:
    """Multiples of 1/16 in [-2, 2]: products and their sums are exact in float32."""
    return np.clip(np.round(x * 16) / 16, -2, 2)


def self_only_rows(qk: np.ndarray, rot: np.ndarray, config: LSHConfig) -> np.ndarray:
    """bool (B, L): queries whose windows hold no valid key but themselves (float32 caveat)."""
    keys = lshbench.window_positions(pipeline_buckets(qk, rot, config), config)  # (B, R, L, W)
    query = np.broadcast_to(np.arange(keys.shape[2])[None, None, :], keys.shape[:3])
    return ~valid_keys(query, keys, config.causal).any(axis=(1, 3))


def assert_agrees_with_numpy(backend, cfg, qk, v, rot) -> None:
    """float64: numba == numpy to 1e-9; float32 numba vs float64 numpy to 1e-4 except
    self-only rows (docs/design.md section 2, float32 rows that see only themselves)."""
    qk, v, rot = quantize(qk), v.astype(np.float64), quantize(rot)
    ref = lshbench.get_backend("numpy").attend(qk, v, cfg, rot)
    out64 = backend.attend(qk, v, cfg, rot)
    assert out64.dtype == np.float64 and out64.shape == ref.shape
    np.testing.assert_allclose(out64, ref, rtol=0, atol=1e-9)
    out32 = backend.attend(qk.astype(np.float32), v.astype(np.float32), cfg, rot)
    assert out32.dtype == np.float32
    batched = qk.ndim == 3
    skip = self_only_rows(qk if batched else qk[None], rot, cfg)
    keep = ~(skip if batched else skip[0])
    np.testing.assert_allclose(out32[keep], ref[keep], rtol=0, atol=1e-4)


def alloc_peak(backend, cfg: LSHConfig, L: int, d: int = 32) -> int:
    """tracemalloc peak bytes of one warm ``attend`` on random (L, d) float32 inputs."""
    rng = np.random.default_rng(0)
    qk = rng.standard_normal((L, d)).astype(np.float32)
    v = rng.standard_normal((L, d)).astype(np.float32)
    rot = lshbench.random_rotations(d, cfg, seed=0)
    backend.attend(qk, v, cfg, rot)  # warm
    tracemalloc.start()
    try:
        backend.attend(qk, v, cfg, rot)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
