"""Angular LSH: random rotations and bucket ids (docs/design.md section 2, step 1; 2b).

Round r of a vector x: ``bucket = argmax(concat([x @ R_r, -(x @ R_r)]))``, first index
winning ties. Factorized ``n_buckets = (f1, f2, ...)``: factor i uses its own slice of
``f_i / 2`` rotation columns and ``bucket = b1 + f1*b2 + f1*f2*b3 + ...``.

:func:`pipeline_buckets` gives the buckets every method sorts by: hashed (``lsh``), drawn
at random from a seed digested from the rotations (``random``), or all zero (``local``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from lshbench.core.config import LSHConfig
from lshbench.core.validation import _check_array, check_config, check_rotations

__all__ = [
    "argmax_plus_minus",
    "hash_buckets",
    "pipeline_buckets",
    "random_bucket_seed",
    "random_rotations",
]


def random_rotations(
    d: int, config: LSHConfig, seed: int = 0, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Gaussian rotations of shape ``(d, n_hashes, rot_size // 2)``, reproducible from ``seed``.

    One set is shared by every sequence of a batch (as in Hugging Face, per head).
    """
    config = check_config(config)
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 1:
        from lshbench.core.config import fail

        fail("d", d, "must be an integer >= 1")
    rng = np.random.default_rng(seed)
    shape = (int(d), config.n_hashes, config.rot_size // 2)
    return rng.standard_normal(shape).astype(dtype)


def argmax_plus_minus(proj: np.ndarray) -> np.ndarray:
    """``argmax(concat([proj, -proj], -1), -1)`` without building the concatenation.

    proj: (..., k) projections. Returns int64 (...) in [0, 2k). An index in the ``+`` half
    precedes every index of the ``-`` half, so on a tie between halves the ``+`` half wins,
    and within a half numpy's argmax/argmin return the first extreme: first index wins.
    """
    hi = proj.argmax(axis=-1)  # (...)
    lo = proj.argmin(axis=-1)  # (...)
    hi_val = np.take_along_axis(proj, hi[..., None], axis=-1)[..., 0]  # (...)
    lo_val = np.take_along_axis(proj, lo[..., None], axis=-1)[..., 0]  # (...)
    return np.where(hi_val >= -lo_val, hi, lo + proj.shape[-1])


def hash_buckets(qk: np.ndarray, rotations: np.ndarray, config: LSHConfig) -> np.ndarray:
    """Bucket of every position in every round, round offsets NOT added.

    qk: (L, d) or (B, L, d); rotations: (d, H, rot_size // 2).
    Returns int64 (H, L), or (B, H, L) for batched input, values in [0, total_buckets).
    """
    config = check_config(config)
    qk = _check_array("qk", qk)
    rot = check_rotations(rotations, qk.shape[-1], config, qk.dtype)
    return _hash(qk if qk.ndim == 3 else qk[None], rot, config)[0 if qk.ndim == 2 else slice(None)]


def _hash(qk: np.ndarray, rotations: np.ndarray, config: LSHConfig) -> np.ndarray:
    """Checked inputs: qk (B, L, d), rotations (d, H, rot_size // 2) -> int64 (B, H, L).

    Loops over rounds (not tokens) so the projection buffer is (B, L, rot_size // 2).
    """
    B, L, _ = qk.shape
    H = config.n_hashes
    buckets = np.zeros((B, H, L), dtype=np.int64)
    for r in range(H):
        # (B, L, d) @ (d, rot_size/2) -> (B, L, rot_size/2)
        proj = qk @ rotations[:, r, :]
        col, scale = 0, 1
        for f in config.factors:
            part = argmax_plus_minus(proj[..., col : col + f // 2])  # (B, L) in [0, f)
            buckets[:, r, :] += scale * part
            col += f // 2
            scale *= f
    return buckets


def random_bucket_seed(rotations: np.ndarray) -> int:
    """Seed of the ``random`` method's buckets: a 64-bit blake2b digest of the rotations
    rounded to float32, as float64 bytes (little-endian integer).

    Pass the checked rotations (cast to the input's dtype, as every backend holds them):
    the same rotations give the same draws in every backend, with no extra argument, and
    in both dtypes (rounding to float32 first makes float64 rotations and their float32
    cast one seed).
    """
    rounded = np.asarray(rotations, dtype=np.float32)  # (d, H, rot_size // 2)
    data = np.ascontiguousarray(rounded, dtype=np.float64).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def pipeline_buckets(qk: np.ndarray, rotations: np.ndarray, config: LSHConfig) -> np.ndarray:
    """The buckets the sort/chunk pipeline sorts by, for every method (docs/design.md section 2b).

    qk: (L, d) or (B, L, d); rotations: (d, n_hashes, rot_size // 2) for every method.
    Returns int64 (B, rounds, L) (or (rounds, L) for unbatched input), round offsets not added:

    * ``lsh``: :func:`hash_buckets`;
    * ``random``: ``default_rng(random_bucket_seed(rotations)).integers(0, total_buckets,
      size=(B, H, L))``, the rotations cast to qk's dtype first (as the backends hold them);
    * ``local``: zeros (B, 1, L): the stable sort keeps positions in order.
    """
    config = check_config(config)
    qk = _check_array("qk", qk)
    rot = check_rotations(rotations, qk.shape[-1], config, qk.dtype)
    out = _pipeline_buckets(qk if qk.ndim == 3 else qk[None], rot, config)
    return out if qk.ndim == 3 else out[0]


def _pipeline_buckets(qk: np.ndarray, rotations: np.ndarray, config: LSHConfig) -> np.ndarray:
    """Checked qk (B, L, d), rotations (d, H, rot_size // 2) -> int64 (B, rounds, L)."""
    B, L, _ = qk.shape
    if config.method == "local":
        return np.zeros((B, 1, L), dtype=np.int64)
    if config.method == "random":
        rng = np.random.default_rng(random_bucket_seed(rotations))
        size = (B, config.n_hashes, L)
        return rng.integers(0, config.total_buckets, size=size).astype(np.int64, copy=False)
    return _hash(qk, rotations, config)
