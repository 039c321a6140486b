"""Input checks shared by every backend: run before any work is done.

All arrays are brought to a leading batch axis here, so the algorithm code only ever
sees ``qk (B, L, d)``, ``v (B, L, dv)`` and rotations ``(d, H, rot_size // 2)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lshbench.core.config import LSHConfig, fail

__all__ = ["CheckedInputs", "check_config", "check_inputs", "check_keys", "check_rotations"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class CheckedInputs(NamedTuple):
    qk: np.ndarray  # (B, L, d), float32 or float64, C-contiguous
    v: np.ndarray  # (B, L, dv), same dtype as qk
    rotations: np.ndarray | None  # (d, H, rot_size // 2) in qk's dtype, or None (dense)
    batched: bool  # whether the caller passed a batch axis (the output keeps it)


def check_config(config: object) -> LSHConfig:
    if not isinstance(config, LSHConfig):
        fail("config", type(config).__name__, "must be an lshbench.LSHConfig")
    return config


def _check_array(field: str, x: object) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        fail(field, type(x).__name__, "must be a numpy.ndarray")
    if x.ndim not in (2, 3):
        fail(f"{field}.shape", x.shape, "must be (L, d) or (B, L, d)")
    if x.dtype not in FLOAT_DTYPES:
        fail(f"{field}.dtype", str(x.dtype), "must be float32 or float64")
    if 0 in x.shape:
        fail(f"{field}.shape", x.shape, "must have no empty axis")
    # max and min propagate NaN and reach +-Inf: two reductions, no array as large as x
    if not (np.isfinite(x.max()) and np.isfinite(x.min())):
        fail(field, "array with NaN or Inf", "all values must be finite")
    return x


def _check_score_range(qk: np.ndarray) -> None:
    """Reject qk so large that a score could overflow the dtype: finite input must give a
    finite, correct output in every backend. A backend may form ``q . x`` before scaling
    ``x`` to a key (the numba kernels do), which is at most ``max|qk|**2 * d``; the bound
    keeps that 16x below the dtype's largest value (float32: |qk| up to about 5.7e17)."""
    limit = float(np.sqrt(np.finfo(qk.dtype).max / 16 / qk.shape[-1]))
    biggest = max(abs(float(qk.max())), abs(float(qk.min())))  # no |qk| copy
    if biggest > limit:
        fail(
            "qk",
            f"values up to {biggest:.3g}",
            f"|qk| must be at most {limit:.3g} for {qk.dtype} so that scores q.k stay finite "
            "(rescale the inputs, or use float64)",
        )


def check_keys(k: object, qk3: np.ndarray, config: LSHConfig, batched: bool) -> np.ndarray | None:
    """The keys of a ``qk="separate"`` call, with a batch axis like ``qk3`` (B, L, d).

    k: (L, d) or (B, L, d) like the queries, same dtype; required when ``config.qk ==
    "separate"`` and refused (must be None) otherwise. Returns None for shared QK.
    """
    if not config.separate:
        if k is not None:
            fail("k", type(k).__name__, "is only for qk='separate' (shared QK: qk is the keys)")
        return None
    if k is None:
        fail("k", None, "required with qk='separate': attend(q, v, config, rotations, k=k)")
    k = _check_array("k", k)
    want = qk3.shape if batched else qk3.shape[1:]
    if k.shape != want:
        fail("k.shape", k.shape, f"must equal the queries' shape {want}")
    if k.dtype != qk3.dtype:
        fail("k.dtype", str(k.dtype), f"must equal the queries' dtype ({qk3.dtype})")
    _check_score_range(k)
    return np.ascontiguousarray(k if batched else k[None])  # (B, L, d)


def check_rotations(rotations: object, d: int, config: LSHConfig, dtype: np.dtype) -> np.ndarray:
    """Check rotations are ``(d, n_hashes, rot_size // 2)`` finite floats; cast to ``dtype``."""
    if not isinstance(rotations, np.ndarray):
        fail(
            "rotations", type(rotations).__name__, "must be a numpy.ndarray (see random_rotations)"
        )
    want = (d, config.n_hashes, config.rot_size // 2)
    if rotations.shape != want:
        fail("rotations.shape", rotations.shape, f"must be (d, n_hashes, rot_size//2) = {want}")
    if rotations.dtype.kind != "f":
        fail("rotations.dtype", str(rotations.dtype), "must be a float dtype")
    if not np.isfinite(rotations).all():
        fail("rotations", "array with NaN or Inf", "all values must be finite")
    return np.ascontiguousarray(rotations, dtype=dtype)


def check_inputs(
    qk: object,
    v: object,
    config: object,
    rotations: object = None,
    *,
    need_rotations: bool = True,
) -> CheckedInputs:
    """Validate one attention call and return its arrays with a leading batch axis.

    qk: (L, d) or (B, L, d); v: (L, dv) or (B, L, dv) with the same dtype and leading axes.
    Raises ConfigError (field, value, rule) before any work is done.
    """
    config = check_config(config)
    qk = _check_array("qk", qk)
    v = _check_array("v", v)
    if qk.ndim != v.ndim or qk.shape[:-1] != v.shape[:-1]:
        fail("v.shape", v.shape, f"must match qk.shape {qk.shape} except the last axis")
    if v.dtype != qk.dtype:
        fail("v.dtype", str(v.dtype), f"must equal qk.dtype ({qk.dtype})")
    _check_score_range(qk)
    batched = qk.ndim == 3
    qk3 = np.ascontiguousarray(qk if batched else qk[None])  # (B, L, d)
    v3 = np.ascontiguousarray(v if batched else v[None])  # (B, L, dv)
    seqlen, d = qk3.shape[1], qk3.shape[2]
    rot = None
    if need_rotations:
        config.check_seqlen(seqlen)
        rot = check_rotations(rotations, d, config, qk3.dtype)
    return CheckedInputs(qk3, v3, rot, batched)
