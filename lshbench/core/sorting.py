"""Sort by (round, bucket, position), undo the sort, and the cyclic look-around
(DESIGN.md section 2, steps 2-3).

Slots: the H*L (round, position) items of one sequence, round-major. After the sort,
chunk c is sorted slots ``[c*m, (c+1)*m)`` and it attends to chunks
``c - chunks_before .. c + chunks_after`` taken modulo the number of chunks over ALL rounds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lshbench.core.config import LSHConfig

__all__ = ["SortedSlots", "adjacent_chunks", "sort_slots", "window_positions"]


class SortedSlots(NamedTuple):
    perm: np.ndarray  # (B, H*L) int64: sorted slot k holds original slot perm[k]
    inverse: np.ndarray  # (B, H*L) int64: original slot s sits at sorted slot inverse[s]
    positions: np.ndarray  # (B, H*L) int64: token position of each sorted slot (perm % L)


def sort_slots(buckets: np.ndarray, total_buckets: int) -> SortedSlots:
    """Sort every sequence's H*L slots by (offset bucket, position).

    buckets: (B, H, L) in [0, total_buckets), round offsets not added.
    The offset bucket ``bucket + r*nb`` puts round r before round r+1; a stable sort of the
    round-major flattened slots keeps positions ascending within a bucket, so the key
    (offset bucket, position) is unique and the order matches every reference implementation.
    """
    B, H, L = buckets.shape
    offsets = np.arange(H, dtype=np.int64)[:, None] * total_buckets  # (H, 1)
    offset_buckets = (buckets + offsets).reshape(B, H * L)  # (B, H*L), round-major
    perm = np.argsort(offset_buckets, axis=-1, kind="stable")  # (B, H*L)
    inverse = np.empty_like(perm)
    np.put_along_axis(inverse, perm, np.arange(H * L, dtype=perm.dtype)[None, :], axis=-1)
    return SortedSlots(perm, inverse, perm % L)


def adjacent_chunks(n_chunks: int, chunks_before: int, chunks_after: int) -> np.ndarray:
    """Chunk indices each chunk attends to, in window order [c-before, ..., c, ..., c+after].

    Returns int64 (n_chunks, 1 + before + after), taken modulo n_chunks (cyclic over all
    rounds: chunk 0 looks back at the last chunk of the last round).
    """
    offsets = np.arange(-chunks_before, chunks_after + 1)  # (A,)
    return (np.arange(n_chunks)[:, None] + offsets[None, :]) % n_chunks  # (NC, A)


def window_positions(buckets: np.ndarray, config: LSHConfig) -> np.ndarray:
    """Key positions each query sees in each round, duplicates and masked keys included.

    buckets: (B, H, L). Returns int64 (B, H, L, W) with W = config.window_len(L): entry
    [b, r, i] lists the keys of query i's round-r window in window order. When
    ``L <= chunk_len`` (the dense path) every round's window is all L keys once.
    The multiplicity of key j for query i is the count of j in ``[b, :, i, :]``; causal and
    self masks are not applied here (see :func:`lshbench.attention.valid_keys`).
    """
    B, H, L = buckets.shape
    if config.is_short(L):
        return np.broadcast_to(np.arange(L), (B, H, L, L)).copy()  # (B, H, L, L)
    m = config.chunk_len
    n_chunks = config.n_chunks(L)
    slots = sort_slots(buckets, config.total_buckets)
    chunk_pos = slots.positions.reshape(B, n_chunks, m)  # (B, NC, m)
    adj = adjacent_chunks(n_chunks, config.chunks_before, config.chunks_after)  # (NC, A)
    # (B, NC, A, m) -> (B, NC, W): the keys of each chunk's window
    window = chunk_pos[:, adj].reshape(B, n_chunks, -1)
    # every query of a chunk shares its window: (B, NC, W) -> (B, H*L, W) in sorted order
    per_slot = np.repeat(window, m, axis=1)
    # undo the sort: (B, H*L, W) -> (B, H, L, W)
    per_slot = np.take_along_axis(per_slot, slots.inverse[..., None], axis=1)
    return per_slot.reshape(B, H, L, -1)
