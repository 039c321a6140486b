"""Numba kernels of LSH attention over separate queries and keys (docs/design.md section 2c).

Imported only by :mod:`lshbench.backends.numba_lsh` (importing :mod:`lshbench` never imports
numba). Queries and keys are sorted apart (by this backend's hashing and sort, or the shared
random draws, or positions in order for ``local``): ``qslots`` and ``kslots`` (B, R*L) hold
the positions in sorted order, and sorted slot s belongs to round ``s // L``. Query chunk c
(slots ``[c*m, (c+1)*m)``) attends key chunks ``c - before .. c + after`` modulo the
``R*L/m`` chunks. Scores are ``q . k`` as given (no normalization, no mask); with
count-once weighting an occurrence's score is lowered by ``log C``, C the key's count in
all of the query's windows. Each query copy's softmax output and logsumexp are kept per
round, (B, R, L, dv) and (B, R, L), and the rounds combined by a softmax over the
logsumexps, in float64, as the NumPy reference does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["attend_separate", "chunk_of_copies", "combine_rounds"]


@njit(cache=True)
def chunk_of_copies(slots, L, m, out):  # pragma: no cover - compiled
    """out[b, pos, r] = the chunk of position pos's round-r copy: slots (B, R*L) -> (B, L, R)."""
    B, RL = slots.shape
    for b in range(B):
        for s in range(RL):
            out[b, slots[b, s], s // L] = s // m


@njit(inline="always")
def _count(cq, ck, before, after, n_chunks):  # pragma: no cover - compiled
    """Occurrences of a key whose copies sit in chunks ``ck`` (R,) in the windows of a query
    whose copies sit in chunks ``cq`` (R,): pairs (copy, offset) with (cq + offset) % NC ==
    ck, offsets -before..after."""
    total = 0
    for a in range(cq.shape[0]):
        for o in range(-before, after + 1):
            c = (cq[a] + o) % n_chunks
            for r in range(ck.shape[0]):
                if ck[r] == c:
                    total += 1
    return total


@njit(cache=True, parallel=True)
def attend_separate(
    q, k, v, qslots, kslots, m, window, count_once, chunks, rounds
):  # pragma: no cover - compiled
    """Every query chunk, in parallel: scores against its window of keys, softmax, values.

    q, k: (B, L, d); v: (B, L, dv); qslots, kslots: (B, R*L) sorted positions; m: chunk
    length; window: (before, after); count_once: whether C -> 1; chunks: (qchunk, kchunk),
    each (B, L, R), the chunks of every query and key copy (read only with count_once);
    rounds: (round_out (B, R, L, dv), round_lse (B, R, L)) float64, written.
    """
    qchunk, kchunk = chunks
    round_out, round_lse = rounds
    B, L, d = q.shape
    dv = v.shape[2]
    RL = qslots.shape[1]
    n_chunks = RL // m
    before, after = window
    A = before + after + 1
    W = A * m
    for t in prange(B * n_chunks):
        b = t // n_chunks
        c = t % n_chunks
        keys = np.empty(W, np.int64)
        for w in range(A):
            cc = (c - before + w) % n_chunks
            for x in range(m):
                keys[w * m + x] = kslots[b, cc * m + x]
        scores = np.empty(W, np.float64)
        for a in range(m):
            s = c * m + a
            i = qslots[b, s]
            r = s // L
            top = -np.inf
            for w in range(W):
                j = keys[w]
                acc = 0.0
                for e in range(d):
                    acc += float(q[b, i, e]) * float(k[b, j, e])
                if count_once:
                    acc -= math.log(_count(qchunk[b, i], kchunk[b, j], before, after, n_chunks))
                scores[w] = acc
                if acc > top:
                    top = acc
            total = 0.0
            for w in range(W):
                scores[w] = math.exp(scores[w] - top)
                total += scores[w]
            for e in range(dv):
                acc = 0.0
                for w in range(W):
                    acc += scores[w] * float(v[b, keys[w], e])
                round_out[b, r, i, e] = acc / total
            round_lse[b, r, i] = top + math.log(total)


@njit(cache=True, parallel=True)
def combine_rounds(round_out, round_lse, out):  # pragma: no cover - compiled
    """out[b, i] = sum_r softmax_r(round_lse[b, :, i]) * round_out[b, r, i]; out (B, L, dv)."""
    B, R, L, dv = round_out.shape
    for t in prange(B * L):
        b = t // L
        i = t % L
        top = -np.inf
        for r in range(R):
            top = max(top, round_lse[b, r, i])
        z = 0.0
        for r in range(R):
            z += math.exp(round_lse[b, r, i] - top)
        for e in range(dv):
            acc = 0.0
            for r in range(R):
                acc += math.exp(round_lse[b, r, i] - top) * round_out[b, r, i, e]
            out[b, i, e] = acc / z
