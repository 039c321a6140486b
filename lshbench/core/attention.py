"""Attention math shared by the NumPy and dense backends (DESIGN.md section 2, steps 4-7).

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
    "valid_keys",
]

KEY_NORM_EPS = 1e-6
CAUSAL_MASK_VALUE = -1e9  # score of a key after the query (causal)
SELF_MASK_VALUE = -1e5  # score of the query's own position (every copy)


def normalize_keys(x: np.ndarray) -> np.ndarray:
    """``x / sqrt(mean(x**2) + 1e-6) / sqrt(d)`` over the last axis (about unit length).

    x: (..., d) -> (..., d), same dtype.
    """
    d = x.shape[-1]
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + KEY_NORM_EPS)  # (..., 1)
    return x / rms / np.sqrt(np.asarray(d, dtype=x.dtype))


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


def combine_rounds(round_out: np.ndarray, round_lse: np.ndarray) -> np.ndarray:
    """Combine per-round outputs with a softmax over their logsumexps.

    round_out: (..., H, L, dv); round_lse: (..., H, L) -> (..., L, dv).
    Round r's weight ``exp(lse_r - logsumexp_r(lse))`` equals its share ``Z_r / sum(Z)`` of
    the total normalizer, so the result is ONE softmax over the multiset union of windows.
    """
    weights = round_weights(round_lse)  # (..., H, L)
    return np.sum(weights[..., None] * round_out, axis=-3)  # (..., H, L, dv) -> (..., L, dv)


def round_weights(round_lse: np.ndarray) -> np.ndarray:
    """The lab's ``probs``: softmax over rounds of the per-round logsumexps.

    round_lse: (..., H, L) -> (..., H, L); weight ``[r, i]`` is ``Z_r / sum(Z)`` for query i.
    """
    return np.exp(round_lse - logsumexp(round_lse, axis=-2)[..., None, :])  # (..., H, L)
