"""Numba kernel of the ``dense`` backend (imported only by :mod:`lshbench.backends.dense`).

Exact attention over all L keys, fused and blocked as flash attention does it:
per block of ``bq`` queries (one work item of a ``prange``), the keys are walked in blocks
of ``bk``; per key block one GEMM gives the scores ``S (bq, bk) = Q (bq, d) @ K^T (d, bk)``
(BLAS ``np.dot`` at one thread; the queries and values are row slices of the inputs and the
keys are stored normalized and transposed per block by :func:`blocked_keys`, so no operand
is copied), then per query row the masks, the row max, ``exp(s - max)`` with its sum (a
polynomial exp that vectorizes, :func:`lshbench.backends._numba_kernels.exp_nonpositive`),
and the value product ``(bq, bk) @ (bk, dv)`` (BLAS again), combined online: a running max
and normalizer per query, and what was accumulated is rescaled only when the max grows.
Nothing of size L x L exists; per thread the scratch is O(bq * bk + d * bk + bq * dv).

Same semantics as :func:`lshbench.core.dense.dense_attention` (docs/design.md section 2):
shared QK: keys length-normalized, scores ``q . k``, masks SET scores (causal -1e9, then
self -1e5); separate queries and keys (section 2c): raw scores ``q . k``, no mask.
A query's own key is always inside its block range, so its running max is at least -1e5
and a causally masked key (-1e9) weighs ``exp(-1e9 - max) = 0`` exactly: causal blocks
above the diagonal are skipped, not computed.

Shapes: B batch, L positions, d query/key size, dv value size, nt threads. The mask
constants come from :mod:`lshbench.core.attention` and are frozen into Numba's on-disk
cache, which does not notice edits to another file: delete ``__pycache__/_dense_kernels*``
after changing them (or the exp of :mod:`lshbench.backends._numba_kernels`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from lshbench.backends._numba_kernels import FASTMATH, exp_nonpositive
from lshbench.core.attention import CAUSAL_MASK_VALUE, SELF_MASK_VALUE


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def blocked_keys(qk, scale, bk, kt):
    """Normalized keys, transposed per block of ``bk`` keys: key block c is the (d, n_c)
    matrix at ``kt[b, c*bk*d : (c*bk + n_c)*d]`` (n_c = bk, or what is left for the last),
    so the score GEMM of a block takes it as it is. qk (B, L, d); scale (B, L) float64, the
    key scales of :func:`lshbench.backends._numba_kernels.key_scales` (key i is
    ``qk[b, i] * scale[b, i]``); kt (B, L*d), written.
    """
    B, L, d = qk.shape
    for row in prange(B * L):
        b = row // L
        i = row % L
        c0 = (i // bk) * bk  # the block's first key
        n_c = min(bk, L - c0)
        base = c0 * d + (i - c0)
        for t in range(d):
            kt[b, base + t * n_c] = qk[b, i, t] * scale[b, i]


@njit(inline="always")
def _row_max(row, n):
    """``max(row[:n])``, n >= 1, in eight independent lanes (a plain running max is one
    chain of dependent compares that LLVM does not vectorize)."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    n8 = n - n % 8
    for j in range(0, n8, 8):
        m0 = max(m0, row[j])
        m1 = max(m1, row[j + 1])
        m2 = max(m2, row[j + 2])
        m3 = max(m3, row[j + 3])
        m4 = max(m4, row[j + 4])
        m5 = max(m5, row[j + 5])
        m6 = max(m6, row[j + 6])
        m7 = max(m7, row[j + 7])
    for j in range(n8, n):
        m0 = max(m0, row[j])
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(cache=True, fastmath=FASTMATH)
def _softmax_rows(s, nk, k0, q0, causal, diagonal, run):
    """Per query row of the score block s (nq, >= nk), keys ``k0 + j``, queries ``q0 + i``:
    masks (only where the blocks meet: ``diagonal``), then ``s = exp(s - shift)`` with a
    running shift per query, run (nq, 3) float64: shift, normalizer, and the factor that
    rescales what was accumulated (1 when the shift stays). The shift is the running max of
    the scores: it only moves when a block's max exceeds it."""
    nq = s.shape[0]
    causal_value = s.dtype.type(CAUSAL_MASK_VALUE)
    self_value = s.dtype.type(SELF_MASK_VALUE)
    for i in range(nq):
        row = s[i]
        if diagonal:
            qp = q0 + i
            j_self = qp - k0
            if causal:
                for j in range(max(0, j_self + 1), nk):
                    row[j] = causal_value
            if 0 <= j_self < nk:
                row[j_self] = self_value
        mx = _row_max(row, nk)
        old = run[i, 0]
        if mx > old:
            run[i, 0] = mx
            run[i, 2] = np.exp(old - np.float64(mx))
            run[i, 1] *= run[i, 2]
        else:
            run[i, 2] = 1.0
        shift = s.dtype.type(run[i, 0])
        total = s.dtype.type(0.0)
        for j in range(nk):
            e = exp_nonpositive(row[j] - shift)
            row[j] = e
            total += e
        run[i, 1] += total


@njit(cache=True, parallel=True)
def dense_blocks(qk, kt, v, causal, shared, bk, out, scratch):
    """Exact attention of every query block; out (B, L, dv) written.

    qk (B, L, d) queries, kt (B, L*d) the keys in transposed blocks of bk
    (:func:`blocked_keys`: the normalized queries when ``shared``, else the separate keys),
    v (B, L, dv). ``shared``: the keys are the queries, so the self mask (and with
    ``causal`` the causal mask) applies; separate keys are never masked (and never causal).
    A work item is a group of G query blocks of bq (G = acc.shape[1] // bq): each key block
    is multiplied with the G query blocks one after the other, so it is read from memory
    once per group and then from cache.
    Per-thread scratch, the tuple ``scratch = (st, kd, ob, acc, run)``: st (nt, bq*bk) one (nq,
    nk) block of scores then weights, kd (nt, d*bk) a causal diagonal block's keys when it is
    cut short, ob (nt, bq, dv) one key block's value product, acc (nt, G*bq, dv) float64
    accumulated output, run (nt, G*bq, 3) float64 (see :func:`_softmax_rows`); bq divides bk.
    Groups are visited in the order 0, n-1, 1, n-2, ... so that the static split of the
    ``prange`` gives each thread as much causal work as another.
    """
    st, kd, ob = scratch[0], scratch[1], scratch[2]  # indexed: no tuple unpacking in prange
    acc, run = scratch[3], scratch[4]
    B, L, d = qk.shape
    dv = v.shape[2]
    bq = ob.shape[1]
    group = acc.shape[1]  # queries per work item, G * bq
    n_groups = (L + group - 1) // group
    for item in prange(B * n_groups):
        tid = numba.get_thread_id()
        b = item // n_groups
        r = item % n_groups
        gi = r // 2 if r % 2 == 0 else n_groups - 1 - r // 2  # zigzag: light and heavy groups
        q0 = gi * group
        q1 = min(L, q0 + group)
        t_ob, t_acc, t_run = ob[tid], acc[tid], run[tid]
        for i in range(q1 - q0):
            t_run[i, 0] = -np.inf
            t_run[i, 1] = 0.0
            for c in range(dv):
                t_acc[i, c] = 0.0
        k_last = q1 if causal else L  # keys after the group's last query weigh 0
        for k0 in range(0, k_last, bk):
            n_c = min(bk, L - k0)  # keys stored in this block
            k_block = kt[b, k0 * d : (k0 + n_c) * d].reshape((d, n_c))
            for s0 in range(q0, q1, bq):  # the group's query blocks
                nq = min(q1, s0 + bq) - s0
                k_end = s0 + nq if causal else L
                if k0 >= k_end:
                    continue  # causal: the key block lies after this query block
                nk = min(k_end, k0 + bk) - k0
                kb = k_block
                if nk < n_c:  # a causal block cut at the last query: its first nk columns
                    kb = kd[tid, : d * nk].reshape((d, nk))
                    for t in range(d):
                        for j in range(nk):
                            kb[t, j] = k_block[t, j]
                s = st[tid, : nq * nk].reshape((nq, nk))
                np.dot(qk[b, s0 : s0 + nq], kb, s)  # (nq, d) @ (d, nk) -> (nq, nk)
                diagonal = shared and k0 < s0 + nq and s0 < k0 + nk
                i0 = s0 - q0
                rows = t_run[i0 : i0 + nq]
                _softmax_rows(s, nk, k0, s0, causal, diagonal, rows)
                o = t_ob[:nq]
                np.dot(s, v[b, k0 : k0 + nk], o)  # (nq, nk) @ (nk, dv) -> (nq, dv)
                for i in range(nq):
                    a = rows[i, 2]
                    for c in range(dv):
                        t_acc[i0 + i, c] = t_acc[i0 + i, c] * a + o[i, c]
        for i in range(q1 - q0):
            inv = 1.0 / t_run[i, 1]
            for c in range(dv):
                out[b, q0 + i, c] = t_acc[i, c] * inv
