"""Numba kernels of the ``numba`` backend (imported only by :mod:`lshbench.backends.numba_lsh`).

Same semantics as DESIGN.md section 2 and the NumPy reference, restated as loops that
stream: nothing of size ``H*L*W`` or ``H*L*dv`` ever exists. Shapes: B batch, L positions,
d query/key size, dv value size, H rounds, m chunk length, NC = H*L/m chunks over all
rounds, A = 1 + chunks_before + chunks_after, W = A*m keys per window, K = rot_size/2
rotation columns per round, E rows of a round's sorted buffers, nt threads.

Phases (each parallel loop is a ``prange``; the caller keeps BLAS at one thread):

1. :func:`hash_all`: blocks of ``ROWS`` positions; per round one ``(K, d) @ (d, rows)``
   product, then the argmax over ``[xR, -xR]`` as a running max and min down the K rows,
   vectorized across positions (the concatenation is never built).
2. :func:`sort_rounds`: a stable counting sort by bucket per (sequence, round), O(L + nb).
3. :func:`attend_all`, round by round: :func:`gather_round` copies the round's sorted
   rows (and the look-around rows of the neighbouring rounds) into contiguous buffers, so
   every chunk and window is a plain row range; :func:`attend_round` then runs the chunks
   in parallel. Every position occurs once among a round's query slots, so no two threads
   write the same output row; a chunk straddling two rounds is computed in both and each
   time combines only its own round's queries. Per chunk (:func:`_attend_chunk`), scores
   are computed transposed, ``S^T (W, m) = K (W, d) @ Q^T (d, m)`` (a faster BLAS shape
   than ``Q @ K^T``), which also makes the masks, the per-query max, the exp and the
   normalizers element-wise loops across queries (vectorized, no horizontal reductions);
   then ``(m, W) @ (W, dv)`` and an online combine into the output: a running max and
   normalizer per query (the softmax over per-round logsumexps, without a log per round).

The mask constants and the key-normalization epsilon come from :mod:`lshbench.attention`;
Numba freezes them into the on-disk cache, which does not notice edits to another file:
delete ``__pycache__/_numba_kernels*`` after changing them.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from lshbench.attention import CAUSAL_MASK_VALUE, KEY_NORM_EPS, SELF_MASK_VALUE

#: positions hashed per work item (columns of the per-thread projection block)
ROWS = 256
#: sorted rows copied per work item by :func:`gather_round`
GATHER_ROWS = 64
#: rows ahead whose source rows :func:`gather_round` prefetches
PREFETCH_AHEAD = 8

#: fastmath flags: reassociation lets LLVM vectorize reductions; no "nnan"/"ninf"
#: assumptions (inputs are checked finite and every mask value is finite anyway).
FASTMATH = {"nsz", "reassoc", "contract", "arcp"}

# ---------------------------------------------------------------------- prefetch


@intrinsic
def prefetch(typingctx, arr, index):
    """``prefetch(arr, i)``: hint the CPU to load the cache line of ``arr.flat[i]`` (read,
    keep in all levels). Emits ``llvm.prefetch``; never faults, no effect on results.

    The gathers and the output updates jump between rows far apart in memory; asking for
    the next rows while the current ones are processed hides part of the memory latency.
    """
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        byte_ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        name = "llvm.prefetch.p0" if str(byte_ptr.type) == "ptr" else "llvm.prefetch.p0i8"
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(fn, [byte_ptr, i32(0), i32(3), i32(1)])  # read, high locality, data
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@njit(inline="always")
def _prefetch_row(arr, row, width):
    """Prefetch ``width`` elements from the start of row ``row`` of a C-contiguous array."""
    step = max(1, 64 // arr.itemsize)  # elements per 64-byte cache line
    for k in range(0, width, step):
        prefetch(arr, row * width + k)


# --------------------------------------------------------------------------- exp


def exp_sub(
    x: np.ndarray, shift: np.ndarray, total: np.ndarray, ibuf: np.ndarray
) -> None:  # pragma: no cover
    """In place ``x = exp(x - shift[None, :])`` on x (k, n) where ``x <= shift``, and
    ``total = x.sum(0)`` (float64); ibuf: int scratch (n,) of x's item size.

    Numba-only (see the overload). Numba's ``np.exp`` is a scalar libm call here (no SVML
    in these wheels), so this is Cephes' range reduction and polynomial times ``2**k``,
    built as float bits in ``ibuf`` and read back through a float view: plain arithmetic
    in one pass per row, which LLVM vectorizes. Arguments below the underflow limit give 0.
    """
    raise NotImplementedError("exp_sub is only callable from Numba code")


def _exp_sub_f32(x, shift, total, ibuf):
    # Cephes expf: |rel err| < 2e-7 on [-87, 0] (k >= -126: 2**k is a normal float32)
    scale = ibuf.view(np.float32)
    lo = np.float32(-87.0)
    n = x.shape[1]
    for j in range(n):
        total[j] = 0.0
    for row_i in range(x.shape[0]):
        row = x[row_i]
        for j in range(n):
            t = row[j] - shift[j]
            under = t < lo
            t = max(t, lo)
            k = np.floor(t * np.float32(1.4426950408889634) + np.float32(0.5))
            r = t - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
            p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            p = p * (r * r) + r + np.float32(1.0)
            ibuf[j] = np.int32(0) if under else (np.int32(k) + np.int32(127)) << 23  # 2**k
            e = p * scale[j]
            row[j] = e
            total[j] += e


def _exp_sub_f64(x, shift, total, ibuf):
    # Cephes exp (Pade form): |rel err| < 3e-16 on [-708, 0] (k >= -1022: 2**k is normal)
    scale = ibuf.view(np.float64)
    lo = -708.0
    n = x.shape[1]
    for j in range(n):
        total[j] = 0.0
    for row_i in range(x.shape[0]):
        row = x[row_i]
        for j in range(n):
            t = row[j] - shift[j]
            under = t < lo
            t = max(t, lo)
            k = np.floor(t * 1.4426950408889634 + 0.5)
            r = t - k * 6.93145751953125e-1 - k * 1.42860682030941723212e-6
            rr = r * r
            px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 1.0)
            qx = (
                (3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                + 2.27265548208155028766e-1
            ) * rr + 2.0
            ibuf[j] = np.int64(0) if under else (np.int64(k) + np.int64(1023)) << 52
            e = (1.0 + 2.0 * px / (qx - px)) * scale[j]
            row[j] = e
            total[j] += e


@overload(exp_sub, jit_options={"fastmath": FASTMATH})
def _exp_sub_overload(x, shift, total, ibuf):
    if isinstance(x, types.Array) and x.dtype == types.float32:
        return _exp_sub_f32
    if isinstance(x, types.Array) and x.dtype == types.float64:
        return _exp_sub_f64
    return None


# ---------------------------------------------------------------- small products


@njit(cache=True, fastmath=FASTMATH)
def _matmul_nn(a, b, out):
    """Plain loops, ``out (n, e) = a (n, k) @ b (k, e)``: for products too small for BLAS."""
    n, k = a.shape
    e = b.shape[1]
    for i in range(n):
        for c in range(e):
            out[i, c] = 0.0
        for j in range(k):
            w = a[i, j]
            for c in range(e):
                out[i, c] += w * b[j, c]


@njit(cache=True, fastmath=FASTMATH)
def _matmul_tn(a, b, out):
    """Plain loops, ``out (n, e) = a (k, n).T @ b (k, e)``: for products too small for BLAS."""
    k, n = a.shape
    e = b.shape[1]
    for i in range(n):
        for c in range(e):
            out[i, c] = 0.0
    for j in range(k):
        for i in range(n):
            w = a[j, i]
            for c in range(e):
                out[i, c] += w * b[j, c]


# ----------------------------------------------------------------------- hashing


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def key_scales(qk, scale):
    """``scale[b, i] = 1 / sqrt(mean(qk[b, i]**2) + eps) / sqrt(d)``: key = qk * scale.

    qk: (B, L, d); scale: (B, L), written.
    """
    B, L, d = qk.shape
    sqrt_d = np.sqrt(np.float64(d))
    for row in prange(B * L):
        b = row // L
        i = row % L
        acc = 0.0
        for t in range(d):
            x = np.float64(qk[b, i, t])
            acc += x * x
        scale[b, i] = 1.0 / np.sqrt(acc / d + KEY_NORM_EPS) / sqrt_d


@njit(cache=True, fastmath=FASTMATH)
def _argmax_plus_minus(p, mx, mn, amx, amn, out, scale):
    """``out[i] += scale * argmax(concat([p[:, i], -p[:, i]]))`` for every column i.

    p: (k, nr) projections, one row per rotation column; mx, mn (nr,) and amx, amn int32
    (nr,) scratch; out int (nr,). A running max and min down the k rows, vectorized across
    the nr positions; strict comparisons keep the first index, and on a tie between the
    halves the ``+`` half wins (it comes first in the concatenation).
    """
    k, nr = p.shape
    for i in range(nr):
        mx[i] = p[0, i]
        mn[i] = p[0, i]
        amx[i] = 0
        amn[i] = 0
    for c in range(1, k):
        pc = p[c]
        for i in range(nr):
            x = pc[i]
            amx[i] = np.int32(c) if x > mx[i] else amx[i]
            mx[i] = max(x, mx[i])
            amn[i] = np.int32(c) if x < mn[i] else amn[i]
            mn[i] = min(x, mn[i])
    for i in range(nr):
        part = amx[i] if mx[i] >= -mn[i] else amn[i] + k
        out[i] += scale * part


@njit(cache=True, parallel=True)
def hash_all(qk, rot_t, factors, slots, rows_t, proj, mx, mn, amx, amn):
    """Bucket of every position and round, written to ``slots`` (round offsets not added).

    qk: (B, L, d); rot_t: (H, K, d), ``rot_t[r] = rotations[:, r, :].T``; factors: int64
    (n_factors,) bucket counts (one entry when not factorized); slots: int (B, H*L),
    written round-major. Per-thread scratch: rows_t (nt, d*ROWS), proj (nt, K*ROWS);
    mx, mn (nt, ROWS) in qk's dtype; amx, amn int32 (nt, ROWS).
    """
    B, L, d = qk.shape
    H, K, _ = rot_t.shape
    nblk = (L + ROWS - 1) // ROWS
    for item in prange(B * nblk):
        tid = numba.get_thread_id()
        b = item // nblk
        i0 = (item % nblk) * ROWS
        nr = min(L, i0 + ROWS) - i0
        xt = rows_t[tid, : d * nr].reshape((d, nr))  # (nr, d) -> (d, nr), copied once
        for i in range(nr):
            for t in range(d):
                xt[t, i] = qk[b, i0 + i, t]
        p = proj[tid, : K * nr].reshape((K, nr))
        for r in range(H):
            np.dot(rot_t[r], xt, p)  # (K, d) @ (d, nr) -> (K, nr): row k is column k of qk @ R_r
            out = slots[b, r * L + i0 : r * L + i0 + nr]  # (nr,)
            out[:] = 0
            col = 0
            scale = 1
            for f in factors:
                half = f // 2
                _argmax_plus_minus(
                    p[col : col + half], mx[tid, :nr], mn[tid, :nr], amx[tid, :nr],
                    amn[tid, :nr], out, scale,
                )  # fmt: skip
                col += half
                scale *= f


@njit(cache=True, parallel=True)
def sort_rounds(slots, n_hashes, n_buckets, counts, tmp):
    """Replace each round's buckets by its positions sorted by (bucket, position).

    slots: int (B, H*L): on entry round r's buckets at ``[r*L, (r+1)*L)``, on exit the
    positions in sorted order (a stable counting sort, O(L + nb)). Per-thread scratch:
    counts int64 (nt, nb+1), tmp (nt, L) of slots' dtype.
    """
    B = slots.shape[0]
    L = slots.shape[1] // n_hashes
    for item in prange(B * n_hashes):
        tid = numba.get_thread_id()
        b = item // n_hashes
        r = item % n_hashes
        seg = slots[b, r * L : (r + 1) * L]  # (L,) buckets in, positions out
        bk = tmp[tid]
        cnt = counts[tid]
        for i in range(L):
            bk[i] = seg[i]
        for k in range(n_buckets + 1):
            cnt[k] = 0
        for i in range(L):
            cnt[bk[i] + 1] += 1
        for k in range(n_buckets):
            cnt[k + 1] += cnt[k]
        for i in range(L):
            k = bk[i]
            seg[cnt[k]] = i
            cnt[k] += 1


@njit(cache=True, parallel=True)
def sort_rounds_argsort(slots, n_hashes):
    """Like :func:`sort_rounds` with a stable merge sort, for bucket counts far above L."""
    B = slots.shape[0]
    L = slots.shape[1] // n_hashes
    for item in prange(B * n_hashes):
        b = item // n_hashes
        r = item % n_hashes
        seg = slots[b, r * L : (r + 1) * L]
        order = np.argsort(seg, kind="mergesort")
        for i in range(L):
            seg[i] = order[i]


# --------------------------------------------------------------------- attention


@njit(cache=True, parallel=True)
def gather_round(qk, v, kscale, slots, first_slot, eq, ev, escale, epos):
    """Copy the sorted rows a round's chunks and windows need into contiguous buffers.

    Row e holds sorted slot ``(first_slot + e) mod H*L`` (cyclic, so look-arounds into the
    previous or next round, or past either end, are plain row ranges): eq (B, E, d)
    query/key vectors, ev (B, E, dv) values, escale (B, E) key scales, epos (B, E)
    positions. qk (B, L, d), v (B, L, dv), kscale (B, L), slots (B, H*L) sorted positions.
    """
    B = qk.shape[0]
    n_slots = slots.shape[1]
    n_ext = eq.shape[1]
    d = qk.shape[2]
    dv = v.shape[2]
    per_b = (n_ext + GATHER_ROWS - 1) // GATHER_ROWS
    for item in prange(B * per_b):
        b = item // per_b
        e0 = (item % per_b) * GATHER_ROWS
        for e in range(e0, min(n_ext, e0 + GATHER_ROWS)):
            s = first_slot + e
            if s < 0 or s >= n_slots:
                s %= n_slots  # cyclic over all chunks of all rounds
            ahead = slots[b, (s + PREFETCH_AHEAD) % n_slots]
            _prefetch_row(qk[b], ahead, d)
            _prefetch_row(v[b], ahead, dv)
            prefetch(kscale[b], ahead)
            p = slots[b, s]
            epos[b, e] = p
            escale[b, e] = kscale[b, p]
            for t in range(d):
                eq[b, e, t] = qk[b, p, t]
            for t in range(dv):
                ev[b, e, t] = v[b, p, t]


@njit(cache=True, fastmath=FASTMATH)
def _attend_chunk(
    eq, ev, escale, epos, ca, qlo, qhi, wa, causal, first, last, use_blas,
    qt, st, o, top, z, ibuf, out, run,
):  # fmt: skip
    """The chunk at buffer rows ``[ca, ca+m)`` against its window rows ``[wa, wa+W)``.

    eq (E, d), ev (E, dv), escale (E,), epos (E,): one sequence's round buffers (see
    :func:`gather_round`). All m queries are scored; the round's own, chunk rows
    ``[qlo, qhi)``, are combined online: out (L, dv) accumulates
    ``sum_r exp(top_r - M) * (exp(s_r - top_r) @ v)`` with M = run[:, 0] the running max
    and run[:, 1] the matching normalizer (run (L, 2) float64, one cache line per query);
    ``first`` initializes, ``last`` divides. Scratch: qt (d, m), st (W, m), o (m, dv),
    top (m,) in the compute dtype, z (m,) float64, ibuf (m,) int.
    """
    d, m = qt.shape
    W = st.shape[0]
    dv = ev.shape[1]
    for i in range(m):  # queries (m, d) -> (d, m)
        for t in range(d):
            qt[t, i] = eq[ca + i, t]
    ks = eq[wa : wa + W]  # (W, d) raw keys; their scale multiplies the scores
    vs = ev[wa : wa + W]  # (W, dv)
    ksc = escale[wa : wa + W]  # (W,)
    kp = epos[wa : wa + W]  # (W,) key positions
    qp = epos[ca : ca + m]  # (m,) query positions
    if use_blas:
        np.dot(ks, qt, st)  # (W, d) @ (d, m) -> (W, m): scores, transposed
    else:
        _matmul_nn(ks, qt, st)
    causal_value = st.dtype.type(CAUSAL_MASK_VALUE)
    self_value = st.dtype.type(SELF_MASK_VALUE)
    for i in range(m):
        top[i] = self_value  # the query's own key is in its window: max >= -1e5
    n_rows = epos.shape[0]
    for j in range(W):  # masks SET the score; running max per query, element-wise
        nxt = ca + m + j  # prefetch the next chunk's output rows, spread over this loop:
        if j < m and nxt < n_rows:  # that chunk (same thread, usually) combines into them
            _prefetch_row(out, epos[nxt], dv)
            _prefetch_row(run, epos[nxt], 2)
        row = st[j]
        sc = ksc[j]
        kpj = kp[j]
        if causal:
            for i in range(m):
                x = row[i] * sc
                x = causal_value if kpj > qp[i] else x
                x = self_value if kpj == qp[i] else x
                row[i] = x
                top[i] = x if x > top[i] else top[i]
        else:
            for i in range(m):
                x = row[i] * sc
                x = self_value if kpj == qp[i] else x
                row[i] = x
                top[i] = x if x > top[i] else top[i]
    exp_sub(st, top, z, ibuf)  # st = exp(st - top), z = its column sums
    if use_blas:
        np.dot(st.T, vs, o)  # (m, W) @ (W, dv) -> (m, dv), unnormalized
    else:
        _matmul_tn(st, vs, o)
    for i in range(qlo, qhi):
        p = qp[i]
        t_i = np.float64(top[i])  # this round's logsumexp is top + log(z)
        if first:
            run[p, 0] = t_i
            run[p, 1] = z[i]
            for c in range(dv):
                out[p, c] = o[i, c]
        elif t_i > run[p, 0]:
            a = np.exp(run[p, 0] - t_i)  # rescale what was accumulated
            run[p, 0] = t_i
            run[p, 1] = run[p, 1] * a + z[i]
            a_ = out.dtype.type(a)
            for c in range(dv):
                out[p, c] = out[p, c] * a_ + o[i, c]
        else:
            b_ = np.exp(t_i - run[p, 0])  # rescale this round
            run[p, 1] += z[i] * b_
            bo = out.dtype.type(b_)
            for c in range(dv):
                out[p, c] += o[i, c] * bo
        if last:
            inv = out.dtype.type(1.0 / run[p, 1])
            for c in range(dv):
                out[p, c] *= inv


@njit(cache=True, parallel=True)
def attend_round(
    eq, ev, escale, epos, first_slot, lo, L, m, before, causal, first, last, use_blas,
    out, run, qt, st, o, top, z, ibuf,
):  # fmt: skip
    """Round r's queries (sorted slots ``[lo, lo+L)``, each position once), chunk by chunk.

    Buffers from :func:`gather_round` with ``first_slot = (lo // m - before) * m``; out
    (B, L, dv), run (B, L, 2) float64 running max and normalizer. Per-thread scratch: qt (nt, d, m),
    st (nt, W, m), o (nt, m, dv), top (nt, m), z (nt, m) float64, ibuf (nt, m) int.
    """
    B = eq.shape[0]
    c0 = lo // m
    per_b = (lo + L - 1) // m + 1 - c0
    for item in prange(B * per_b):
        tid = numba.get_thread_id()
        b = item // per_b
        c = c0 + item % per_b
        ca = c * m - first_slot  # the chunk's first buffer row
        _attend_chunk(
            eq[b], ev[b], escale[b], epos[b], ca, max(c * m, lo) - c * m,
            min((c + 1) * m, lo + L) - c * m, (c - before) * m - first_slot, causal, first,
            last, use_blas, qt[tid], st[tid], o[tid], top[tid], z[tid], ibuf[tid], out[b],
            run[b],
        )  # fmt: skip


@njit(cache=True)
def attend_all(
    qk, v, kscale, slots, n_hashes, m, before, after, causal, use_blas, out, run, eq, ev,
    escale, epos, qt, st, o, top, z, ibuf,
):  # fmt: skip
    """Every round in order: gather its buffers, then attend and combine online.

    qk (B, L, d), v (B, L, dv), kscale (B, L), slots (B, H*L) sorted positions; writes
    out (B, L, dv) and run (B, L, 2). Round buffers eq (B, E, d), ev (B, E, dv),
    escale and epos (B, E), ``E >= L + (before + after + 2) * m``; scratch as in
    :func:`attend_round`.
    """
    L = qk.shape[1]
    for r in range(n_hashes):
        lo = r * L
        first_slot = (lo // m - before) * m
        n_ext = ((lo + L - 1) // m + 1 + after) * m - first_slot
        gather_round(
            qk, v, kscale, slots, first_slot, eq[:, :n_ext], ev[:, :n_ext], escale[:, :n_ext],
            epos[:, :n_ext],
        )  # fmt: skip
        attend_round(
            eq, ev, escale, epos, first_slot, lo, L, m, before, causal, r == 0,
            r == n_hashes - 1, use_blas, out, run, qt, st, o, top, z, ibuf,
        )  # fmt: skip
