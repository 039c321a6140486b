"""Numba kernels of the ``numba`` backend (imported only by :mod:`lshbench.backends.numba_lsh`).

Same semantics as docs/design.md section 2 and the NumPy reference, restated as loops that
stream: nothing of size ``H*L*W`` or ``H*L*dv`` ever exists. Shapes: B batch, L positions,
d query/key size, dv value size, H rounds, m chunk length, NC = H*L/m chunks over all
rounds, A = 1 + chunks_before + chunks_after, W = A*m keys per window, K = rot_size/2
rotation columns per round, nt threads.

Phases (each parallel loop is a ``prange``; the caller keeps BLAS at one thread):

1. :func:`hash_all`: blocks of ``ROWS`` positions; per round one ``(K, d) @ (d, rows)``
   product, then the argmax over ``[xR, -xR]`` as a running max and min down the K rows,
   vectorized across positions (the concatenation is never built).
2. :func:`sort_rounds`: a stable counting sort by bucket per (sequence, round), O(L + nb).
3. :func:`attend_all`, round by round (:func:`attend_round`): the round's chunks are cut
   into runs of consecutive chunks, one run per work item. A thread walks its run with a
   ring holding the A chunks of the current window: each step copies the one chunk that
   enters the window (:func:`_gather_chunk`, sorted rows taken cyclically over all rounds,
   so look-arounds into the previous or next round need no special case) over the one that
   left, so every sorted row is copied about once per round into memory that stays in the
   thread's cache, and the window is a plain (W, d) block for BLAS. Every position occurs
   once among a round's query slots, so no two threads write the same output row; a chunk
   straddling two rounds is computed in both and each time combines only its own round's
   queries. Per chunk (:func:`_attend_chunk`), scores are computed transposed,
   ``S^T (W, m) = K (W, d) @ Q^T (d, m)`` (a faster BLAS shape than ``Q @ K^T``), which also
   makes the masks, the per-query max, the exp and the normalizers element-wise loops across
   queries (vectorized, no horizontal reductions); then ``(m, W) @ (W, dv)`` and an online
   combine into the output: a running max and normalizer per query (the softmax over
   per-round logsumexps, without a log per round).

Variants (docs/design.md section 2b) run through the same phases with the pipeline
configuration: ``random`` sorts drawn buckets instead of hashed ones; ``local`` is one round
of chunks of m*H positions in order (no hash, no sort), its long chunks scored in blocks of
queries against the whole window. Count-once weighting divides every weight
``exp(s - top)`` by C, the key's occurrences in all of the query's windows (the same as
subtracting ``log C`` from the score): :func:`chunk_ids` gives the chunk of every
(position, round) copy, the ring carries each key's H chunk ids, and per block of queries
:func:`occurrence_counts` counts with a table of query bits over the chunks, O(H) per
query and key plus one step per extra occurrence; no H*L*W array either.

The mask constants and the key-normalization epsilon come from :mod:`lshbench.core.attention`;
Numba freezes them into the on-disk cache, which does not notice edits to another file:
delete ``__pycache__/_numba_kernels*`` after changing them.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from lshbench.core.attention import CAUSAL_MASK_VALUE, KEY_NORM_EPS, SELF_MASK_VALUE

#: positions hashed per work item (columns of the per-thread projection block)
ROWS = 256
#: rows ahead whose source rows :func:`_gather_chunk` prefetches
PREFETCH_AHEAD = 8

#: fastmath flags: reassociation lets LLVM vectorize reductions; no "nnan"/"ninf"
#: assumptions (inputs are checked finite and every mask value is finite anyway).
FASTMATH = {"nsz", "reassoc", "contract", "arcp"}

# ----------------------------------------------------------------- bundled arguments
# The kernels take their arrays and options in named tuples (Numba compiles them to plain
# structs): a buffer is named where it is made and where it is used, so two buffers of one
# dtype cannot be swapped by position. From Python, the entry points (hash_all,
# attend_all) are called with the bundles as plain tuples of their fields (as_fields):
# Numba's dispatcher types a plain tuple in C but a named tuple in Python, about 0.5 us per
# array per call; the entry point names the fields again (HashScratch(*hs), ...), in the
# order of the class, so the names still decide which buffer is which.


def as_fields(*bundles: tuple) -> tuple[tuple, ...]:
    """The named tuples ``bundles`` as plain tuples of their fields, in their order: what
    Python passes to an entry point (see the note above)."""
    return tuple(tuple(b) for b in bundles)


class HashScratch(NamedTuple):
    """Per-thread scratch of :func:`hash_all` (nt threads, ROWS positions per work item)."""

    rows_t: np.ndarray  #: (nt, d*ROWS) a block of positions, transposed
    proj: np.ndarray  #: (nt, K*ROWS) their projections
    mx: np.ndarray  #: (nt, ROWS) running max, in qk's dtype
    mn: np.ndarray  #: (nt, ROWS) running min, in qk's dtype
    amx: np.ndarray  #: (nt, ROWS) int32 index of the max
    amn: np.ndarray  #: (nt, ROWS) int32 index of the min


class AttendInputs(NamedTuple):
    """What :func:`attend_all` reads: (B, ...) arrays, or one sequence's (b-th) slices."""

    qk: np.ndarray  #: (B, L, d) shared query/key vectors
    v: np.ndarray  #: (B, L, dv) values
    kscale: np.ndarray  #: (B, L) key = qk * kscale (:func:`key_scales`)
    chunk_of: np.ndarray  #: (B, L, Hc) chunk ids (:func:`chunk_ids`), Hc = 0 unless count-once
    slots: np.ndarray  #: (B, H*L) sorted positions, round-major


class AttendOptions(NamedTuple):
    """The attention stage's options (all plain scalars)."""

    n_hashes: int  #: rounds H (of the pipeline configuration)
    m: int  #: chunk length
    before: int  #: chunks a window looks back
    after: int  #: chunks a window looks ahead
    causal: bool  #: mask keys after the query
    kernel: int  #: one of the KERNEL_* codes (the chunk products)
    seg_len: int  #: consecutive chunks per parallel work item


class Accumulator(NamedTuple):
    """The online round combine's state: output and per-query running max and normalizer."""

    out: np.ndarray  #: (B, L, dv) (one sequence's (L, dv) inside a work item)
    run: np.ndarray  #: (B, L, 2) float64: running max, running normalizer


class Ring(NamedTuple):
    """Per-thread ring holding the A chunks of the current window (W = A*m rows); (nt, ...)
    arrays, or one thread's slices inside a work item (see :func:`_gather_chunk`)."""

    rq: np.ndarray  #: (nt, W, d) the window's query/key rows
    rv: np.ndarray  #: (nt, W, dv) their values ((nt, dv, W) when :func:`values_tiled`)
    rs: np.ndarray  #: (nt, W) their key scales
    rp: np.ndarray  #: (nt, W) their positions
    rch: np.ndarray  #: (nt, W, Hc) their chunk ids (count-once)


class ChunkScratch(NamedTuple):
    """Per-thread scratch of one block of mq queries (:func:`_attend_chunk`); (nt, ...)
    arrays, or one thread's slices inside a work item."""

    qt: np.ndarray  #: (nt, d, mq) the query block, transposed
    pt: np.ndarray  #: (nt, mq, W) probabilities, transposed (any shape unless values are tiled)
    st: np.ndarray  #: (nt, W, mq) scores (transposed), then probabilities
    o: np.ndarray  #: (nt, mq, dv) unnormalized round output
    top: np.ndarray  #: (nt, mq) per-query max score, compute dtype
    z: np.ndarray  #: (nt, mq) float64 per-query normalizer
    table: np.ndarray  #: int64 (nt, NC, ceil(mq/64)) all zero: query bits (count-once)
    cw: np.ndarray  #: (nt, W, mq) occurrence counts C (count-once; any shape otherwise)


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


@intrinsic
def _bits_as_float(typingctx, bits):
    """``_bits_as_float(i)``: the float with i's bits (int32 -> float32, int64 -> float64);
    an LLVM bitcast, no memory."""
    if bits == types.int32:
        ret = types.float32
    elif bits == types.int64:
        ret = types.float64
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(signature.return_type))

    return ret(bits), codegen


def exp_nonpositive(t: float) -> float:  # pragma: no cover
    """``exp(t)`` for ``t <= 0``, arguments below the underflow limit give 0. Numba-only.

    Numba's ``np.exp`` is a scalar libm call here (no SVML in these wheels), so this is
    Cephes' range reduction and polynomial times ``2**k``, with ``2**k`` built from its
    float bits: plain arithmetic, which LLVM vectorizes inside a loop.
    """
    raise NotImplementedError("exp_nonpositive is only callable from Numba code")


def _exp_nonpositive_f32(t):
    # Cephes expf: |rel err| < 2e-7 on [-87, 0] (k >= -126: 2**k is a normal float32)
    lo = np.float32(-87.0)
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
    bits = np.int32(0) if under else np.int32((np.int32(k) + np.int32(127)) << 23)  # 2**k
    return p * _bits_as_float(bits)


def _exp_nonpositive_f64(t):
    # Cephes exp (Pade form): |rel err| < 3e-16 on [-708, 0] (k >= -1022: 2**k is normal)
    lo = -708.0
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
    bits = np.int64(0) if under else np.int64((np.int64(k) + np.int64(1023)) << 52)  # 2**k
    return (1.0 + 2.0 * px / (qx - px)) * _bits_as_float(bits)


# no "reassoc" here: it would fold the two-constant range reduction t - k*ln2_hi - k*ln2_lo
# into t - k*ln2, an error growing with |t| (float64: 2e-14 relative near -700, not 3e-16)
@overload(exp_nonpositive, jit_options={"fastmath": FASTMATH - {"reassoc"}})
def _exp_nonpositive_overload(t):
    if t == types.float32:
        return _exp_nonpositive_f32
    if t == types.float64:
        return _exp_nonpositive_f64
    return None


@njit(cache=True, fastmath=FASTMATH)
def exp_sub(x, shift, total):
    """In place ``x = exp(x - shift[None, :])`` on x (k, n) where ``x <= shift``, and
    ``total = x.sum(0)`` (n,) float64: one pass per row, vectorized across columns."""
    n = x.shape[1]
    for j in range(n):
        total[j] = 0.0
    for row_i in range(x.shape[0]):
        row = x[row_i]
        for j in range(n):
            e = exp_nonpositive(row[j] - shift[j])
            row[j] = e
            total[j] += e


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def exp_sub_div(x, shift, total, count):
    """Like :func:`exp_sub`, each entry then divided by ``count`` (k, n) (same dtype as x):
    ``x = exp(x - shift[None, :]) / count``, ``total = x.sum(0)``. Dividing an occurrence's
    weight by C is subtracting ``log C`` from its score (count-once weighting). NumPy's
    error model: no zero-division check, so the division vectorizes (counts are >= 1)."""
    n = x.shape[1]
    for j in range(n):
        total[j] = 0.0
    for row_i in range(x.shape[0]):
        row = x[row_i]
        crow = count[row_i]
        for j in range(n):
            e = exp_nonpositive(row[j] - shift[j]) / crow[j]
            row[j] = e
            total[j] += e


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


#: chunk-product kernels (``AttendOptions.kernel``): plain loops for toy
#: shapes, BLAS ``np.dot`` for both products, :func:`_matmul_abt` register-tiled dot products
#: for both, or mixed: BLAS for the scores, tiled for the values
KERNEL_LOOPS, KERNEL_BLAS, KERNEL_TILED, KERNEL_MIXED = 0, 1, 2, 3


@njit(inline="always")
def values_tiled(kernel):
    """Whether the values product is tiled (the ring then holds the values transposed)."""
    return kernel == KERNEL_TILED or kernel == KERNEL_MIXED


@njit(cache=True, fastmath=FASTMATH)
def _matmul_abt(a, b, out):
    """``out (n, e) = a (n, k) @ b (e, k).T``, both operands row-contiguous: blocks of 2 x 4
    dot products, each vectorized along k (8 accumulators and 6 loads stay in registers on
    AVX2), so the speed does not hang on any BLAS's small-matrix code."""
    n, k = a.shape
    e = b.shape[0]
    zero = out.dtype.type(0)
    n2, e4 = n - n % 2, e - e % 4
    for i in range(0, n2, 2):
        a0, a1 = a[i], a[i + 1]
        for j in range(0, e4, 4):
            b0, b1, b2, b3 = b[j], b[j + 1], b[j + 2], b[j + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            for t in range(k):
                x0, x1 = a0[t], a1[t]
                y0, y1, y2, y3 = b0[t], b1[t], b2[t], b3[t]
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
            out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s00, s01, s02, s03
            out[i + 1, j], out[i + 1, j + 1], out[i + 1, j + 2], out[i + 1, j + 3] = (
                s10, s11, s12, s13,
            )  # fmt: skip
        for j in range(e4, e):  # the last 0-3 columns
            s0 = s1 = zero
            for t in range(k):
                s0 += a0[t] * b[j, t]
                s1 += a1[t] * b[j, t]
            out[i, j], out[i + 1, j] = s0, s1
    for i in range(n2, n):  # the last row (odd n)
        for j in range(e):
            s = zero
            for t in range(k):
                s += a[i, t] * b[j, t]
            out[i, j] = s


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


@njit(inline="always")
def _track(x, c, hi, ahi, lo, alo):
    """One step of a running max and min with their first indices: row c's value x."""
    ahi = c if x > hi else ahi
    hi = max(x, hi)
    alo = c if x < lo else alo
    lo = min(x, lo)
    return hi, ahi, lo, alo


@njit(cache=True, fastmath=FASTMATH)
def _argmax_plus_minus(p, hs, tid, out, scale):
    """``out[i] += scale * argmax(concat([p[:, i], -p[:, i]]))`` for every column i.

    p: (k, nr) projections, one row per rotation column; hs: :class:`HashScratch`, thread
    tid's rows of mx, mn and amx, amn used (nr entries each); out int (nr,). A running max
    and min down the k rows, vectorized across the nr positions, four rows per pass so the
    running values stay in registers; strict comparisons keep the first index, and on a tie
    between the halves the ``+`` half wins (it comes first in the concatenation).
    """
    k, nr = p.shape
    mx, mn, amx, amn = hs.mx[tid, :nr], hs.mn[tid, :nr], hs.amx[tid, :nr], hs.amn[tid, :nr]
    for i in range(nr):
        mx[i] = p[0, i]
        mn[i] = p[0, i]
        amx[i] = 0
        amn[i] = 0
    c = 1
    while c + 4 <= k:  # rows c .. c+3
        p0, p1, p2, p3 = p[c], p[c + 1], p[c + 2], p[c + 3]
        c0, c1, c2, c3 = np.int32(c), np.int32(c + 1), np.int32(c + 2), np.int32(c + 3)
        for i in range(nr):
            hi, ahi, lo, alo = _track(p0[i], c0, mx[i], amx[i], mn[i], amn[i])
            hi, ahi, lo, alo = _track(p1[i], c1, hi, ahi, lo, alo)
            hi, ahi, lo, alo = _track(p2[i], c2, hi, ahi, lo, alo)
            mx[i], amx[i], mn[i], amn[i] = _track(p3[i], c3, hi, ahi, lo, alo)
        c += 4
    for rest in range(c, k):  # the last 0-3 rows
        pc, cr = p[rest], np.int32(rest)
        for i in range(nr):
            mx[i], amx[i], mn[i], amn[i] = _track(pc[i], cr, mx[i], amx[i], mn[i], amn[i])
    for i in range(nr):
        part = amx[i] if mx[i] >= -mn[i] else amn[i] + k
        out[i] += scale * part


@njit(cache=True, parallel=True)
def hash_all(qk, rot_t, factors, slots, hs):
    """Bucket of every position and round, written to ``slots`` (round offsets not added).

    qk: (B, L, d); rot_t: (H, K, d), ``rot_t[r] = rotations[:, r, :].T``; factors: int64
    (n_factors,) bucket counts (one entry when not factorized); slots: int (B, H*L),
    written round-major. hs: the per-thread :class:`HashScratch` (or its fields, in order).
    """
    hs = HashScratch(*hs)
    B, L, d = qk.shape
    rows_t, proj = hs.rows_t, hs.proj
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
                _argmax_plus_minus(p[col : col + half], hs, tid, out, scale)
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


# ------------------------------------------------------------ count-once weighting


@njit(cache=True, parallel=True)
def chunk_ids(slots, m, out):
    """``out[b, p, r]``: the chunk holding round r's copy of position p (its sorted slot // m).

    slots: int (B, H*L) sorted positions (round r's items fill sorted slots
    ``[r*L, (r+1)*L)``); m: chunk length; out: int32 (B, L, H), written.
    """
    B, L, H = out.shape
    for item in prange(B * H):
        b = item // H
        r = item % H
        row = slots[b]
        for s in range(r * L, (r + 1) * L):
            out[b, row[s], r] = s // m


@njit(inline="always")
def _offset_count(delta, before, A, NC):
    """How often the chunk ``delta`` chunks after a window's own chunk (cyclically over NC
    chunks, ``|delta| < NC``) occurs in that window: the offsets ``o`` in
    ``[-before, after]`` with ``o = delta (mod NC)`` (more than one only when A > NC)."""
    if A <= NC:  # no division: at most one offset matches
        u = delta + before
        u = u + NC if u < 0 else u
        u = u - NC if u >= NC else u
        return 1 if u < A else 0
    u = (delta + before) % NC  # Python semantics: in [0, NC)
    return 0 if u >= A else 1 + (A - 1 - u) // NC


@njit(inline="always")
def _inside_round(c, r, L, m, before, after):
    """Whether the window of chunk c lies within round r's sorted slots ``[r*L, (r+1)*L)``
    (then it holds round r's key copies only, each once)."""
    return (c - before) * m >= r * L and (c + after + 1) * m <= (r + 1) * L


@intrinsic
def _lowest_bit(typingctx, x):
    """``_lowest_bit(x)``: index of the lowest set bit of the int64 x != 0 (``llvm.cttz``)."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, ir.IntType(1)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.IntType(1)(1)])  # 1: x == 0 is undefined

    return types.int64(x), codegen


@njit(inline="always")
def _add_bits(row, mk, base, one):
    """``row[base + b] += one`` for every set bit b of the int64 mask mk."""
    while mk != 0:
        row[base + _lowest_bit(mk)] += one
        mk &= mk - 1  # clear the lowest set bit


@njit(inline="always")
def _wrap(y, n):
    """``y mod n`` for ``-n <= y < 2n``, without a division."""
    y = y + n if y < 0 else y
    return y - n if y >= n else y


@njit(inline="always")
def _window_sum(rch, j, x, L, m, before, after):
    """Occurrences of ring row j's key in the window of chunk x (any window: straddling,
    wrapping, longer than all chunks), over the rounds the window's slots touch."""
    H = rch.shape[1]
    A = before + 1 + after
    NC = H * L // m
    x0 = ((x - before) * m) // L  # unwrapped rounds of the window's first and last slot
    x1 = ((x + after + 1) * m - 1) // L
    acc = 0
    if x1 - x0 + 1 >= H:
        for r2 in range(H):
            acc += _offset_count(np.int64(rch[j, r2]) - x, before, A, NC)
    else:
        for y in range(x0, x1 + 1):
            acc += _offset_count(np.int64(rch[j, y % H]) - x, before, A, NC)
    return acc


@njit(cache=True)
def occurrence_counts(rch, row0, nq, s0, L, opts, table, cw):
    """``cw[j, i]`` = C: occurrences of ring row j's key in ALL the windows of query i.

    The queries are ring rows ``[row0, row0+nq)``, sorted slots ``[s0, s0+nq)`` (a block
    of chunk ``c = s0 // m``, whose window is the ring; m, before, after from
    :class:`AttendOptions` opts). rch int (W, H): chunk ids
    (:func:`chunk_ids`) of each ring row's key in every round; table int64
    (NC, ceil(nq/64)) all zero (left all zero); cw (W, nq) written, in the compute dtype.
    Query i, of round r_i, counts:

    * its own window, the ring: how often the key occurs in the ring (1 unless the window
      straddles rounds or wraps), the same for every query of the block;
    * its windows of the other rounds: a table over all chunks holds a bit per query, set
      over each of those windows' A chunks; key j then adds the set bits of
      ``table[ch_j[r']]`` over its H copies r' (lookups mostly zero; each set bit is one
      occurrence). Exact as long as no chunk is in two of a query's windows; a query whose
      windows overlap (near round ends), or any query when A > NC, is counted exactly,
      window by window, instead.
    """
    W, H = rch.shape
    m, before, after = opts.m, opts.before, opts.after
    A = before + 1 + after
    NC = H * L // m
    c = s0 // m
    one = cw.dtype.type(1)
    r_own = ((c - before) * m) // L  # round of the window's first slot (unwrapped)
    plain = r_own >= 0 and _inside_round(c, r_own, L, m, before, after)
    for j in range(W):  # the own window: how often the key occurs in the ring
        kf = one if plain else cw.dtype.type(_window_sum(rch, j, c, L, m, before, after))
        for i in range(nq):
            cw[j, i] = kf
    r_first = s0 // L  # the block's queries: round r_first, then r_first + 1 from i_next on
    i_next = (r_first + 1) * L - s0
    for i in range(nq):  # the other rounds' windows: set the query's bit over their chunks
        r_i = r_first + (i >= i_next)
        word = i >> 6
        bit = np.int64(1) << (i & 63)
        overlap = np.int64(0)
        if A <= NC:
            for r in range(H):
                if r != r_i:
                    x = np.int64(rch[row0 + i, r])
                    for y in range(x - before, x + after + 1):
                        y = _wrap(y, NC)
                        overlap |= table[np.uint64(y), word] & bit
                        table[np.uint64(y), word] |= bit
        if overlap != 0 or A > NC:  # count this query exactly instead
            for r in range(H):
                if r != r_i:
                    x = np.int64(rch[row0 + i, r])
                    if A <= NC:
                        for y in range(x - before, x + after + 1):
                            table[np.uint64(_wrap(y, NC)), word] &= ~bit
                    for j in range(W):
                        cw[j, i] += _window_sum(rch, j, x, L, m, before, after)
    if A > NC:
        return
    for j in range(W):  # every copy of every key against the table
        row = cw[j]
        for word in range(table.shape[1]):
            seen = np.int64(0)  # queries set in at least one of the key's H lookups
            seen2 = np.int64(0)  # ... in at least two
            for r2 in range(H):
                mk = table[np.uint64(rch[j, r2]), word]  # unsigned: no wraparound check
                seen2 |= seen & mk
                seen |= mk
            if seen2 == 0:  # no query twice (most keys of unclustered input): one pass
                _add_bits(row, seen, word * 64, one)
                continue
            for r2 in range(H):
                _add_bits(row, table[np.uint64(rch[j, r2]), word], word * 64, one)
    for i in range(nq):  # clear the table again
        word = i >> 6
        for r in range(H):
            x = np.int64(rch[row0 + i, r])
            for y in range(x - before, x + after + 1):
                table[np.uint64(_wrap(y, NC)), word] = 0


# --------------------------------------------------------------------- attention


@njit(inline="always")
def _gather_chunk(seq, ring, x, m, row0, vt):
    """Copy chunk x's sorted rows into ring rows ``[row0, row0+m)``.

    Chunk x holds sorted slots ``[x*m, (x+1)*m)`` taken cyclically over all chunks of all
    rounds (so x = -1 is the last chunk of the last round, as in the look-back of the very
    first chunk). seq: one sequence's :class:`AttendInputs`, qk (L, d), v (L, dv), kscale
    (L,), chunk_of (L, Hc) (Hc = 0 unless count-once), slots (H*L,) sorted positions; ring:
    the thread's :class:`Ring`, rq (A*m, d), rv (A*m, dv), rs (A*m,), rp (A*m,), rch
    (A*m, Hc); ``vt``: rv holds the values transposed, (dv, A*m) (the tiled kernel's layout).
    """
    qk, v, kscale, chunk_of, slots = seq.qk, seq.v, seq.kscale, seq.chunk_of, seq.slots
    rq, rv, rs, rp, rch = ring.rq, ring.rv, ring.rs, ring.rp, ring.rch
    n_slots = slots.shape[0]
    d = qk.shape[1]
    dv = v.shape[1]
    for i in range(m):
        s = (x * m + i) % n_slots  # cyclic over all chunks of all rounds
        ahead = slots[(s + PREFETCH_AHEAD) % n_slots]  # rows are far apart: ask early
        _prefetch_row(qk, ahead, d)
        _prefetch_row(v, ahead, dv)
        prefetch(kscale, ahead)
        p = slots[s]
        e = row0 + i
        rp[e] = p
        rs[e] = kscale[p]
        for t in range(d):
            rq[e, t] = qk[p, t]
        if vt:
            for t in range(dv):
                rv[t, e] = v[p, t]
        else:
            for t in range(dv):
                rv[e, t] = v[p, t]
        for t in range(chunk_of.shape[1]):
            rch[e, t] = chunk_of[p, t]


@njit(inline="always")
def _combine(scr, qp, qlo, qhi, first, last, acc):
    """Online round combine of queries ``[qlo, qhi)`` of a block (positions qp): out (L, dv)
    accumulates ``exp(top - M) * o`` (o, top, z from the thread's :class:`ChunkScratch`
    scr) with M = run[:, 0] the running max and run[:, 1] the matching normalizer (out, run:
    one sequence's :class:`Accumulator`); ``first`` initializes, ``last`` divides (see
    :func:`_attend_chunk`)."""
    o, top, z = scr.o, scr.top, scr.z
    out, run = acc.out, acc.run
    dv = o.shape[1]
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


@njit(cache=True, fastmath=FASTMATH)
def _attend_chunk(ring, scr, acc, opts, ca, qlo, qhi, first, last, next_pos):
    """A block of queries, at ring rows ``[ca, ca+mq)``, against the whole ring (its window).

    ring: the thread's :class:`Ring`, rq (W, d), rv (W, dv) ((dv, W) when
    :func:`values_tiled`), rs (W,), rp (W,): the window's query/key vectors, values, key
    scales and positions (see :func:`_gather_chunk`; the order of the window's chunks in the
    ring does not matter to a softmax). All mq queries are scored; the round's own, block
    rows ``[qlo, qhi)``, are combined online into acc (:class:`Accumulator` of one
    sequence): out (L, dv) accumulates ``sum_r exp(top_r - M) * (exp(s_r - top_r) @ v)``
    with M = run[:, 0] the running max and run[:, 1] the matching normalizer (run (L, 2)
    float64, one cache line per query); ``first`` initializes, ``last`` divides. next_pos
    (mq,): the next block's query positions, whose output rows are prefetched. opts
    (:class:`AttendOptions`): causal, and kernel, one of the KERNEL_* codes (the chunk
    products). scr: the thread's :class:`ChunkScratch`, qt (d, mq) transposed queries, pt
    (mq, W) transposed probabilities (when values are tiled), st (W, mq), o (mq, dv), top
    (mq,) in the compute dtype, z (mq,) float64. Count-once weighting (ring rows carry chunk
    ids): every weight ``exp(s - top)`` is divided by cw (W, mq), the key's occurrences in
    all of the query's windows (:func:`occurrence_counts`).
    """
    rq, rv, rs, rp, rch = ring.rq, ring.rv, ring.rs, ring.rp, ring.rch
    qt, pt, st, o, top, z, cw = scr.qt, scr.pt, scr.st, scr.o, scr.top, scr.z, scr.cw
    out, run = acc.out, acc.run
    causal, kernel = opts.causal, opts.kernel
    count_once = rch.shape[1] > 0
    W, m = st.shape
    d = rq.shape[1]
    dv = o.shape[1]
    qp = rp[ca : ca + m]  # (m,) query positions
    if kernel == KERNEL_TILED:
        _matmul_abt(rq, rq[ca : ca + m], st)  # (W, d) @ (m, d).T -> (W, m): raw scores
    else:
        for i in range(m):  # queries (m, d) -> (d, m)
            for t in range(d):
                qt[t, i] = rq[ca + i, t]
        if kernel != KERNEL_LOOPS:
            np.dot(rq, qt, st)  # (W, d) @ (d, m) -> (W, m): raw scores, transposed
        else:
            _matmul_nn(rq, qt, st)
    causal_value = st.dtype.type(CAUSAL_MASK_VALUE)
    self_value = st.dtype.type(SELF_MASK_VALUE)
    for i in range(m):
        top[i] = self_value  # the query's own key is in its window: max >= -1e5
    for j in range(W):  # key scale; masks SET the score; running max per query, element-wise
        if j < next_pos.shape[0]:  # prefetch the next chunk's output rows, spread over this loop
            _prefetch_row(out, next_pos[j], dv)
            _prefetch_row(run, next_pos[j], 2)
        row = st[j]
        sc = rs[j]
        kpj = rp[j]
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
    if count_once:
        exp_sub_div(st, top, z, cw)  # st = exp(st - top) / C, z = its column sums
    else:
        exp_sub(st, top, z)  # st = exp(st - top), z = its column sums
    if values_tiled(kernel):
        for j in range(W):  # probabilities (W, m) -> (m, W)
            for i in range(m):
                pt[i, j] = st[j, i]
        _matmul_abt(pt, rv, o)  # (m, W) @ (dv, W).T -> (m, dv), unnormalized
    elif kernel == KERNEL_BLAS:
        np.dot(st.T, rv, o)  # (m, W) @ (W, dv) -> (m, dv), unnormalized
    else:
        _matmul_tn(st, rv, o)
    _combine(scr, qp, qlo, qhi, first, last, acc)


@njit(cache=True, parallel=True)
def attend_round(inputs, opts, acc, ring, scr, lo, first, last):
    """Round r's queries (sorted slots ``[lo, lo+L)``, each position once), chunk by chunk.

    The round's chunks are cut into segments of ``seg_len`` consecutive chunks, run in
    parallel. A thread walks its segment with a ring of the A = before + 1 + after chunks
    of the current window: moving on one chunk gathers one new chunk (:func:`_gather_chunk`)
    over the one that left the window, so every sorted row is copied about once per round,
    into memory the thread keeps in cache. A chunk's queries are taken in blocks of mq
    (mq = m unless chunks are long, e.g. ``local``), each against the whole window. Each
    position occurs once among a round's query slots, so no two threads write the same
    output row; a chunk straddling two rounds is computed in both and each time combines
    only its own round's queries.

    inputs: :class:`AttendInputs` (B, ...), chunk ids with Hc = H for count-once weighting,
    else 0; acc: :class:`Accumulator`, out (B, L, dv) and run (B, L, 2) float64 running max
    and normalizer. Per-thread scratch: ring, the :class:`Ring` (nt, A*m, ...), and scr, the
    :class:`ChunkScratch` (nt, ...); for count-once, its table is all zero (see
    :func:`occurrence_counts`). opts: :class:`AttendOptions`.
    """
    qk, v, kscale = inputs.qk, inputs.v, inputs.kscale
    chunk_of, slots = inputs.chunk_of, inputs.slots
    out, run = acc.out, acc.run
    rq, rv, rs, rp, rch = ring.rq, ring.rv, ring.rs, ring.rp, ring.rch
    qt, pt, st, o, top, z = scr.qt, scr.pt, scr.st, scr.o, scr.top, scr.z
    table, cw = scr.table, scr.cw
    m, before, after, seg_len = opts.m, opts.before, opts.after, opts.seg_len
    B, L, _ = qk.shape
    A = before + 1 + after
    mq = top.shape[1]
    vt = values_tiled(opts.kernel)
    count_once = chunk_of.shape[2] > 0
    n_slots = slots.shape[1]
    c0 = lo // m
    c_end = (lo + L - 1) // m + 1  # one past the round's last chunk
    n_seg = (c_end - c0 + seg_len - 1) // seg_len
    for item in prange(B * n_seg):
        tid = numba.get_thread_id()
        b = item // n_seg
        ca = c0 + (item % n_seg) * seg_len
        cb = min(ca + seg_len, c_end)
        sl_b = slots[b]
        seq = AttendInputs(qk[b], v[b], kscale[b], chunk_of[b], sl_b)  # this sequence
        acc_b = Accumulator(out[b], run[b])
        t_ring = Ring(rq[tid], rv[tid], rs[tid], rp[tid], rch[tid])  # this thread's ring
        t_scr = ChunkScratch(
            qt[tid], pt[tid], st[tid], o[tid], top[tid], z[tid], table[tid], cw[tid]
        )
        for x in range(ca - before, ca + after):  # the first window, but its last chunk
            _gather_chunk(seq, t_ring, x, m, (x % A) * m, vt)
        for c in range(ca, cb):
            x = c + after  # the chunk entering the window
            _gather_chunk(seq, t_ring, x, m, (x % A) * m, vt)
            for q0 in range(0, m, mq):  # blocks of mq queries
                s0 = c * m + q0  # the block's first sorted slot
                nxt = s0 + mq
                qlo, qhi = max(s0, lo) - s0, min(nxt, lo + L) - s0  # the round's queries
                if qhi <= qlo:
                    continue  # a block of another round's queries (long straddling chunks)
                row0 = (c % A) * m + q0
                if count_once:
                    occurrence_counts(t_ring.rch, row0, mq, s0, L, opts, t_scr.table, t_scr.cw)
                next_pos = sl_b[nxt : min(nxt + mq, n_slots)]
                _attend_chunk(t_ring, t_scr, acc_b, opts, row0, qlo, qhi, first, last, next_pos)


@njit(cache=True)
def attend_all(inputs, opts, acc, ring, scr):
    """Every round in order, each combined online into acc (:class:`Accumulator`: out
    (B, L, dv) and run (B, L, 2)).

    inputs: :class:`AttendInputs`; opts: :class:`AttendOptions`; ring, scr: the per-thread
    :class:`Ring` and :class:`ChunkScratch`, as in :func:`attend_round` (each the named
    tuple or its fields, in order: :func:`as_fields`).
    """
    inputs, opts, acc = AttendInputs(*inputs), AttendOptions(*opts), Accumulator(*acc)
    ring, scr = Ring(*ring), ChunkScratch(*scr)
    L = inputs.qk.shape[1]
    n_hashes = opts.n_hashes
    for r in range(n_hashes):
        attend_round(inputs, opts, acc, ring, scr, r * L, r == 0, r == n_hashes - 1)


@njit(cache=True, parallel=True)
def products_only(kernel, n_chunks, rq, rv, qt, pt, st, o):
    """The attention stage's two chunk products alone, ``n_chunks`` times, on per-thread
    blocks that stay in cache (for the stage breakdown of ``bench/perf_bars.py``): what the
    products cost without gathers, masks, exp and combine. kernel: KERNEL_BLAS,
    KERNEL_TILED or KERNEL_MIXED; rq (nt, W, d), rv (nt, W, dv) ((nt, dv, W) when values
    are tiled), qt (nt, d, m), pt (nt, m, W), st (nt, W, m), o (nt, m, dv), as in
    :func:`attend_round`.
    """
    m = st.shape[2]
    for _ in prange(n_chunks):
        tid = numba.get_thread_id()
        if kernel == KERNEL_TILED:
            _matmul_abt(rq[tid], rq[tid, :m], st[tid])  # (W, d) @ (m, d).T -> (W, m)
        else:
            np.dot(rq[tid], qt[tid], st[tid])  # (W, d) @ (d, m) -> (W, m)
        if values_tiled(kernel):
            _matmul_abt(pt[tid], rv[tid], o[tid])  # (m, W) @ (dv, W).T -> (m, dv)
        else:
            np.dot(st[tid].T, rv[tid], o[tid])  # (m, W) @ (W, dv) -> (m, dv)
