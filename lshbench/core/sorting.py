"""Sort by (round, bucket, position), undo the sort, and the cyclic look-around
(docs/design.md section 2, steps 2-3).

Slots: the H*L (round, position) items of one sequence, round-major. After the sort,
chunk c is sorted slots ``[c*m, (c+1)*m)`` and it attends to chunks
``c - chunks_before .. c + chunks_after`` taken modulo the number of chunks over ALL rounds.
Every method runs the same steps with ``config.pipeline_config()`` (``rounds`` rounds of
chunks of ``sort_chunk_len``; docs/design.md section 2b), on :func:`lshbench.core.hashing.
pipeline_buckets`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from lshbench.core.config import LSHConfig

__all__ = [
    "SortedSlots",
    "adjacent_chunks",
    "count_in_rows",
    "run_lengths",
    "sort_slots",
    "window_blocks",
    "window_multiplicities",
    "window_positions",
]


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


def window_positions(
    buckets: np.ndarray, config: LSHConfig, key_buckets: np.ndarray | None = None
) -> np.ndarray:
    """Key positions each query sees in each round, duplicates and masked keys included.

    buckets: (B, rounds, L) from :func:`lshbench.core.hashing.pipeline_buckets` (for ``lsh``
    the hash buckets). Returns int64 (B, rounds, L, W) with W = config.window_len(L): entry
    [b, r, i] lists the keys of query i's round-r window in window order (the order of the
    backends' key windows). When ``L <= sort_chunk_len`` (the dense path) every round's
    window is all L keys once. The multiplicity of key j for query i is the count of j in
    ``[b, :, i, :]`` (:func:`window_multiplicities`); causal and self masks are not applied
    here (see :func:`lshbench.core.attention.valid_keys`). For long sequences read the
    windows a block of queries at a time with :func:`window_blocks`.

    Separate queries and keys (docs/design.md section 2c): ``buckets`` are the queries',
    ``key_buckets`` (B, rounds, L) the keys'; queries and keys are sorted apart, and query
    chunk c reads key chunks ``c - before .. c + after``. None: shared QK (one sort).
    """
    L = buckets.shape[-1]
    return next(window_blocks(buckets, config, L, key_buckets))[2]


def window_blocks(
    buckets: np.ndarray,
    config: LSHConfig,
    block_rows: int,
    key_buckets: np.ndarray | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, keys)`` for consecutive blocks of ``block_rows`` queries.

    buckets: (B, rounds, L) of the queries; key_buckets: (B, rounds, L) of separate keys, or
    None (shared QK). keys: int64 (B, rounds, stop - start, W), the rows ``[start, stop)``
    of :func:`window_positions`. One sort (two for separate keys), then
    O(B * rounds * block * W) per block: the windows of every query at once are never held.
    """
    B, R, L = buckets.shape
    if config.is_short(L):
        for start in range(0, L, block_rows):
            stop = min(L, start + block_rows)
            yield start, stop, np.broadcast_to(np.arange(L), (B, R, stop - start, L)).copy()
        return
    pc = config.pipeline_config()
    m = pc.chunk_len
    n_chunks = pc.n_chunks(L)
    slots = sort_slots(buckets, pc.total_buckets)
    key_slots = slots if key_buckets is None else sort_slots(key_buckets, pc.total_buckets)
    chunk_pos = key_slots.positions.reshape(B, n_chunks, m)  # (B, NC, m) key positions
    adj = adjacent_chunks(n_chunks, pc.chunks_before, pc.chunks_after)  # (NC, A)
    chunk_of = (slots.inverse // m).reshape(B, R, L)  # chunk of every (round, position) slot
    seq = np.arange(B)[:, None, None, None]  # (B, 1, 1, 1)
    for start in range(0, L, block_rows):
        stop = min(L, start + block_rows)
        # the chunks each query's window reads: (B, R, n) -> (B, R, n, A)
        window_chunks = adj[chunk_of[:, :, start:stop]]
        # their positions: (B, R, n, A, m) -> (B, R, n, W), in window order
        keys = chunk_pos[seq, window_chunks].reshape(B, R, stop - start, -1)
        yield start, stop, keys


def run_lengths(sorted_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows of sorted values (n, K): (first-occurrence mask, run length of every entry).

    Both (n, K); the run length of an entry is how often its value occurs in its row.
    """
    n, K = sorted_rows.shape
    first = np.ones((n, K), dtype=bool)
    first[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    last = np.ones((n, K), dtype=bool)
    last[:, :-1] = first[:, 1:]
    idx = np.arange(K)  # (K,)
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)  # (n, K) run start
    # run end: minimum over the following "last" indices, scanned from the right
    end = np.minimum.accumulate(np.where(last, idx, K - 1)[:, ::-1], axis=1)[:, ::-1]  # (n, K)
    return first, end - start + 1


def count_in_rows(values: np.ndarray) -> np.ndarray:
    """values (..., K) int -> int64 (..., K): how often each entry's value occurs in its row."""
    K = values.shape[-1]
    rows = values.reshape(-1, K)  # (n, K)
    order = np.argsort(rows, axis=-1, kind="stable")  # (n, K)
    _, count = run_lengths(np.take_along_axis(rows, order, axis=-1))  # (n, K) sorted order
    out = np.empty_like(count)
    np.put_along_axis(out, order, count, axis=-1)  # back to the row's own order
    return out.reshape(values.shape)


def window_multiplicities(
    buckets: np.ndarray, config: LSHConfig, key_buckets: np.ndarray | None = None
) -> np.ndarray:
    """C of every window entry: how often its key occurs in ALL of its query's windows.

    buckets: (B, rounds, L). Returns int64 (B, rounds, L, W): entry [b, r, i, w] is the
    number of occurrences of key ``window_positions[b, r, i, w]`` in ``[b, :, i, :]`` (all
    rounds; a key can occur twice in one window when a window straddles two rounds).
    key_buckets: the separate keys' buckets, as in :func:`window_positions`.
    The NumPy reference; backends may compute the same counts their own way.
    """
    windows = window_positions(buckets, config, key_buckets)  # (B, R, L, W)
    B, R, L, W = windows.shape
    per_query = windows.transpose(0, 2, 1, 3).reshape(B, L, R * W)  # every key query i saw
    counts = count_in_rows(per_query)  # (B, L, R*W)
    return counts.reshape(B, L, R, W).transpose(0, 2, 1, 3)  # (B, R, L, W)
