"""Attention math shared by the NumPy and dense backends (docs/design.md section 2, steps 4-7).

Keys are the shared query/key vectors length-normalized; scores are ``q . k`` with no
further scaling; masks SET scores (causal -1e9 first, then self -1e5 overriding it), so a
query with no other valid key returns its own value; rounds are combined with a softmax
over their logsumexps.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CAUSAL_MASK_VALUE",
    "KEY_NORM_EPS",
    "SELF_MASK_VALUE",
    "combine_rounds",
    "logsumexp",
    "mask_scores",
    "normalize_keys",
    "round_weights",
    "softmax_with_lse",
    "valid_keys",
]

KEY_NORM_EPS = 1e-6
CAUSAL_MASK_VALUE = -1e9  # score of a key after the query (causal)
SELF_MASK_VALUE = -1e5  # score of the query's own position (every copy)


def normalize_keys(x: np.ndarray) -> np.ndarray:
    """``x / sqrt(mean(x**2) + 1e-6) / sqrt(d)`` over the last axis (about unit length).

    x: (..., d) -> (..., d), same dtype. Where ``x**2`` overflows (float32 |x| above about
    1e19) the rows are scaled by their largest magnitude first, so any finite input gives
    finite keys; other rows are computed exactly as written above.
    """
    d = x.shape[-1]
    with np.errstate(over="ignore"):  # overflowing rows are redone below
        rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + KEY_NORM_EPS)  # (..., 1)
    if not np.isfinite(rms).all():
        rms = _scaled_rms(x)
    return x / rms / np.sqrt(np.asarray(d, dtype=x.dtype))


def _scaled_rms(x: np.ndarray) -> np.ndarray:
    """``sqrt(mean(x**2) + eps)`` without overflow: ``s * sqrt(mean((x/s)**2) + eps/s**2)``
    with ``s`` each row's largest magnitude, in float64. x: (..., d) -> (..., 1), x's dtype."""
    x64 = x.astype(np.float64)
    s = np.abs(x64).max(axis=-1, keepdims=True)  # (..., 1)
    s = np.where(s > 0, s, 1.0)
    y = x64 / s  # (..., d), |y| <= 1
    rms = s * np.sqrt(np.mean(y * y, axis=-1, keepdims=True) + KEY_NORM_EPS / (s * s))
    return rms.astype(x.dtype)


def mask_scores(
    scores: np.ndarray, query_pos: np.ndarray, key_pos: np.ndarray, causal: bool
) -> np.ndarray:
    """Set masked scores in place and return them.

    scores: (..., q, k); query_pos: (..., q); key_pos: (..., k) (broadcastable).
    Causal: key_pos > query_pos -> -1e9. Then self: key_pos == query_pos -> -1e5.
    """
    qp = query_pos[..., :, None]  # (..., q, 1)
    kp = key_pos[..., None, :]  # (..., 1, k)
    if causal:
        np.copyto(scores, CAUSAL_MASK_VALUE, where=kp > qp)
    np.copyto(scores, SELF_MASK_VALUE, where=kp == qp)
    return scores


def valid_keys(query_pos: np.ndarray, key_pos: np.ndarray, causal: bool) -> np.ndarray:
    """Boolean mask of keys that are neither the query itself nor (causal) in its future.

    query_pos: (...,); key_pos: (..., k) -> bool (..., k).
    """
    qp = query_pos[..., None]
    ok = key_pos != qp
    if causal:
        ok &= key_pos <= qp
    return ok


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable ``log(sum(exp(x)))`` over ``axis`` (removed). Same dtype as x."""
    top = np.max(x, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(x - top), axis=axis)) + np.squeeze(top, axis=axis)


def softmax_with_lse(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax over the last axis and its logsumexp, keeping float32 accuracy at any scale.

    scores: (..., k) -> (probs (..., k) in scores' dtype, lse (...) float64). The
    probabilities are ``exp(s - max) / sum``, never ``exp(s - lse)``: where scores are large
    (say 1e8) a float32 lse cannot hold ``log(sum)`` next to the max, and subtracting it would
    scale every probability by up to e^ulp. The logsumexp, which the round combine compares
    across rounds, is ``max + log(sum)`` in float64.
    """
    top = scores.max(axis=-1, keepdims=True)  # (..., 1)
    probs = np.exp(scores - top)  # (..., k)
    norm = probs.sum(axis=-1, keepdims=True)  # (..., 1)
    probs /= norm
    lse = top[..., 0].astype(np.float64) + np.log(norm[..., 0], dtype=np.float64)  # (...)
    return probs, lse


def combine_rounds(round_out: np.ndarray, round_lse: np.ndarray) -> np.ndarray:
    """Combine per-round outputs with a softmax over their logsumexps.

    round_out: (..., H, L, dv); round_lse: (..., H, L) -> (..., L, dv).
    Round r's weight ``exp(lse_r - logsumexp_r(lse))`` equals its share ``Z_r / sum(Z)`` of
    the total normalizer, so the result is ONE softmax over the multiset union of windows.
    """
    weights = round_weights(round_lse).astype(round_out.dtype)  # (..., H, L), in [0, 1]
    return np.sum(weights[..., None] * round_out, axis=-3)  # (..., H, L, dv) -> (..., L, dv)


def round_weights(round_lse: np.ndarray) -> np.ndarray:
    """The lab's ``probs``: softmax over rounds of the per-round logsumexps.

    round_lse: (..., H, L) -> (..., H, L); weight ``[r, i]`` is ``Z_r / sum(Z)`` for query i.
    """
    # exp(lse - max) / sum, not exp(lse - logsumexp): at large scores (1e19) log(H) vanishes
    # next to the max in floating point and the weights would not sum to one
    weights = np.exp(round_lse - round_lse.max(axis=-2, keepdims=True))  # (..., H, L)
    return weights / weights.sum(axis=-2, keepdims=True)
