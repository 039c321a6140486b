"""Exact shared-QK attention with the LSH masks, processed in blocks of queries.

Same key normalization and masks as the LSH backends (docs/design.md section 2, step 8), over
all L keys. Memory is O(L * block_rows) per sequence, never O(L^2): only a
``(B, block_rows, L)`` score block exists at a time.

Separate queries and keys (docs/design.md section 2c): pass ``k``; the scores are then
``q . k`` as given, with no key normalization and no mask (a query may attend to itself).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lshbench.core.attention import KEY_NORM_EPS, mask_scores, normalize_keys, valid_keys

__all__ = [
    "dense_attention",
    "dense_attention_grads",
    "dense_probability_blocks",
    "rows_per_block",
]

#: score-block budget in elements (2**21 float32 = 8 MiB); sets the query block size
BLOCK_ELEMENTS = 2**21


def rows_per_block(batch: int, seqlen: int) -> int:
    """Queries per block so that a ``(batch, rows, seqlen)`` score block holds
    at most :data:`BLOCK_ELEMENTS` elements."""
    return max(1, min(seqlen, BLOCK_ELEMENTS // (batch * seqlen)))


def dense_probability_blocks(
    qk: np.ndarray, causal: bool, block_rows: int | None = None, k: np.ndarray | None = None
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield ``(start, stop, probs, lse)`` for consecutive blocks of queries.

    qk: (B, L, d); k: (B, L, d) separate keys, or None (shared QK). probs: (B, stop-start,
    L), each row the softmax of the (masked) scores of one query over all L keys; lse:
    (B, stop-start), the rows' logsumexps.
    """
    B, L, _ = qk.shape
    rows = block_rows or rows_per_block(B, L)
    keys = normalize_keys(qk) if k is None else k  # (B, L, d)
    keys_t = keys.swapaxes(-1, -2)  # (B, L, d) -> (B, d, L)
    key_pos = np.arange(L)  # (L,)
    for start in range(0, L, rows):
        stop = min(L, start + rows)
        # (B, b, d) @ (B, d, L) -> (B, b, L)
        scores = qk[:, start:stop] @ keys_t
        if k is None:
            mask_scores(scores, np.arange(start, stop), key_pos, causal)
        top = scores.max(axis=-1, keepdims=True)  # (B, b, 1)
        scores -= top
        np.exp(scores, out=scores)
        norm = scores.sum(axis=-1, keepdims=True)  # (B, b, 1)
        scores /= norm
        yield start, stop, scores, (np.log(norm) + top)[..., 0]


def dense_attention(
    qk: np.ndarray,
    v: np.ndarray,
    causal: bool,
    block_rows: int | None = None,
    k: np.ndarray | None = None,
) -> np.ndarray:
    """Exact attention: qk (B, L, d), v (B, L, dv) -> (B, L, dv), dtype of qk.

    k: (B, L, d) separate keys (``softmax(q k^T) v``, no mask), or None (shared QK)."""
    out = np.empty(qk.shape[:2] + v.shape[-1:], dtype=qk.dtype)  # (B, L, dv)
    for start, stop, probs, _ in dense_probability_blocks(qk, causal, block_rows, k):
        # (B, b, L) @ (B, L, dv) -> (B, b, dv)
        out[:, start:stop] = probs @ v
    return out


def dense_attention_grads(
    qk: np.ndarray, v: np.ndarray, g: np.ndarray, causal: bool, block_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(out * g)`` for exact attention ``out = dense_attention(qk, v)``,
    in float64 (docs/design.md section 9): qk (B, L, d), v and g (B, L, dv) ->
    ``(d_qk (B, L, d), d_v (B, L, dv))``.

    Masked scores are constants (set, not computed), so they carry no gradient. Per block of
    queries: ``dV += P^T G``, ``dS = P * (G V^T - rowsum(G * out))`` zeroed where masked,
    ``dQ = dS K``, ``dK += dS^T Q``; the keys' gradient goes back through the key
    normalization ``k = x / r / sqrt(d)``, ``r = sqrt(mean(x**2) + eps)``.
    Memory O(B * L * (d + dv + block_rows)).
    """
    q = np.asarray(qk, dtype=np.float64)
    v64 = np.asarray(v, dtype=np.float64)
    g64 = np.asarray(g, dtype=np.float64)
    L, d = q.shape[1], q.shape[2]
    keys = normalize_keys(q)  # (B, L, d)
    d_q = np.zeros_like(q)  # (B, L, d)
    d_k = np.zeros_like(q)  # (B, L, d)
    d_v = np.zeros_like(v64)  # (B, L, dv)
    key_pos = np.arange(L)  # (L,)
    for start, stop, probs, _ in dense_probability_blocks(q, causal, block_rows):
        gb = g64[:, start:stop]  # (B, b, dv)
        out = probs @ v64  # (B, b, L) @ (B, L, dv) -> (B, b, dv)
        d_v += probs.swapaxes(-1, -2) @ gb  # (B, L, b) @ (B, b, dv) -> (B, L, dv)
        dp = gb @ v64.swapaxes(-1, -2)  # (B, b, dv) @ (B, dv, L) -> (B, b, L)
        ds = probs * (dp - np.einsum("bqc,bqc->bq", gb, out)[..., None])  # (B, b, L)
        ds *= valid_keys(np.arange(start, stop), key_pos[None, :], causal)  # (b, L): masked -> 0
        d_q[:, start:stop] = ds @ keys  # (B, b, L) @ (B, L, d) -> (B, b, d)
        d_k += ds.swapaxes(-1, -2) @ q[:, start:stop]  # (B, L, b) @ (B, b, d) -> (B, L, d)
    # back through k = x / r / sqrt(d): dx = (dk - x * (x . dk) / (d * r**2)) / (r * sqrt(d))
    r2 = (q * q).mean(axis=-1, keepdims=True) + KEY_NORM_EPS  # (B, L, 1)
    xdk = np.einsum("bld,bld->bl", q, d_k)[..., None]  # (B, L, 1)
    d_x = (d_k - q * xdk / (d * r2)) / np.sqrt(r2 * d)  # (B, L, d)
    return d_q + d_x, d_v
