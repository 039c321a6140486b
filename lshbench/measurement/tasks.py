"""Inputs scored as a task: the Reformer paper's duplication task (docs/design.md section 6).

In the ``duplicate`` input the second half of each sequence copies the first, so every
paired query has a copy elsewhere whose value it should retrieve. ``task_acc`` is the share
of paired queries whose attention output, decoded to the nearest value vector of the
sequence by cosine, is the value of its copy. Dense attention scores 1.0 (the copy is each
query's top key); an LSH configuration loses a query when no round puts it in a window with
its copy and enough other mass drowns it.
"""

from __future__ import annotations

import numpy as np

from lshbench.core.config import fail
from lshbench.core.dense import rows_per_block

__all__ = ["duplicate_copy_index", "task_accuracy"]


def duplicate_copy_index(seqlen: int) -> np.ndarray:
    """Position of each position's copy in a ``duplicate`` input, -1 where it has none.

    (L,) int64: ``i + L//2`` for ``i < L//2``, ``i - L//2`` for ``L//2 <= i < 2*(L//2)``,
    and -1 for the last position of an odd L.
    """
    half = seqlen // 2
    index = np.full(seqlen, -1, dtype=np.int64)  # (L,)
    index[:half] = np.arange(half, 2 * half)
    index[half : 2 * half] = np.arange(half)
    return index


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero). (..., n) -> (..., n), float64."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)  # (..., 1)
    return x / np.where(norm > 0, norm, 1.0)


def task_accuracy(out: np.ndarray, v: np.ndarray, copy_index: np.ndarray) -> float:
    """Share of queries with a copy whose output is nearest (cosine) to their copy's value.

    out: attention output (L, dv) or (B, L, dv); v: the values, same shape; copy_index:
    (L,) int, the copy of each position or -1 (see :func:`duplicate_copy_index`). A query
    counts as right when the value vector its output is nearest to (over all L positions of
    its sequence) equals its copy's value, so positions holding the same value tie. Returns
    a number in [0, 1]; NaN when no position has a copy. Works in query blocks: memory
    O(block * L), never L x L.
    """
    out = np.asarray(out)
    v = np.asarray(v)
    if out.shape != v.shape or out.ndim not in (2, 3):
        fail("out", out.shape, f"must match v {v.shape}, (L, dv) or (B, L, dv)")
    if out.ndim == 2:
        out, v = out[None], v[None]  # (1, L, dv)
    B, L, _ = v.shape
    copy_index = np.asarray(copy_index)
    if copy_index.shape != (L,) or copy_index.dtype.kind not in "iu":
        fail("copy_index", copy_index.shape, f"must be integers of shape ({L},)")
    queries = np.flatnonzero(copy_index >= 0)  # (n,)
    if queries.size == 0:
        return float("nan")
    values_t = _unit_rows(v).swapaxes(-1, -2)  # (B, L, dv) -> (B, dv, L)
    batch = np.arange(B)[:, None]  # (B, 1)
    hits = 0
    step = rows_per_block(B, L)
    for start in range(0, queries.size, step):
        rows = queries[start : start + step]  # (b,)
        # (B, b, dv) @ (B, dv, L) -> (B, b, L)
        cosine = _unit_rows(out[:, rows]) @ values_t
        nearest = cosine.argmax(axis=-1)  # (B, b)
        # decoded value == copy's value, every component: (B, b, dv) -> (B, b)
        same = (v[batch, nearest] == v[:, copy_index[rows]]).all(axis=-1)
        hits += int(same.sum())
    return hits / (B * queries.size)
