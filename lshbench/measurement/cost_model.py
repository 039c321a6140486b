"""Nominal FLOPs and analytic peak memory of one attention call (docs/design.md section 5.4).

FLOPs are the *nominal* count of the algorithm (a multiply-add is 2), the same function for
every backend, as flash-attn does; softmax, sort and gather work is left out:

* LSH, ``L > chunk_len``: ``2*B*H*L*W*(d + dv)`` for the chunked attention (``W`` keys per
  query copy: ``(1 + before + after) * chunk_len``; with ``dv = d`` this is docs/design.md's
  ``4*H*L*W*d``) plus ``B*H*L*d*rot_size`` for hashing (``2*H*L*d*rot_size/2``).
* dense, and LSH with ``L <= chunk_len`` (it runs dense): ``2*B*L*L*(d + dv)``
  (``4*L^2*d``), no causal discount.

Memory models estimate the bytes a backend allocates during one call on top of its inputs,
from the arrays its code creates (shapes in the comments); the sweep reports them next to the
measured peaks (``mem_model_bytes``), where a large gap points at hidden temporaries, and uses
them to skip cells predicted over ``--mem-budget``. A backend without a model gets ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

from lshbench.backends.dense import KEY_BLOCK as DENSE_KEY_BLOCK
from lshbench.backends.dense import QUERY_BLOCK as DENSE_QUERY_BLOCK
from lshbench.backends.dense import query_group as dense_query_group
from lshbench.core.config import LSHConfig
from lshbench.core.dense import rows_per_block
from lshbench.measurement.metrics import COVERAGE_BLOCK_ELEMENTS, GATHER_COST_RATIO

__all__ = [
    "MEMORY_MODELS",
    "attention_flops",
    "coverage_bytes",
    "memory_model",
    "reference_bytes",
    "reference_work_bytes",
]

INT_BYTES = 8  # int64 indices


def attention_flops(
    uses_hashing: bool, batch: int, seqlen: int, d: int, dv: int, config: LSHConfig | None
) -> int:
    """Nominal FLOPs of one call on ``batch`` sequences of ``seqlen`` tokens."""
    B, L = batch, seqlen
    if not uses_hashing or config is None or config.is_short(L):
        return 2 * B * L * L * (d + dv)
    H, W = config.rounds, config.window_len(L)  # local: 1 round, no hashing
    hashing = 0 if config.method == "local" else B * config.n_hashes * L * d * config.rot_size
    return 2 * B * H * L * W * (d + dv) + hashing


def _dense_bytes(B: int, L: int, d: int, dv: int, f: int, separate: bool = False) -> int:
    # keys (B, L, d) and one temporary while normalizing; output (B, L, dv); score blocks
    # (B, b, L) of about BLOCK_ELEMENTS, two alive when there are several (the caller's and
    # the generator's next), and a bool mask (b, L). Separate keys are neither normalized
    # nor masked: the one key copy is the contiguous transpose the score product makes.
    rows = rows_per_block(B, L)
    block = B * rows * L
    alive = 2 if rows < L else 1
    if separate:
        return B * L * d * f + B * L * dv * f + alive * block * f
    return max(2 * B * L * d * f, B * L * d * f + B * L * dv * f + alive * block * f + rows * L)


def _dense_kernel_bytes(B: int, L: int, d: int, dv: int, f: int, threads: int) -> int:
    # the ``dense`` backend's Numba kernel: normalized keys in transposed blocks (B, L*d),
    # made with float64 key scales (B, L) that are freed before the output (B, L, dv) and,
    # per thread, a (bq, bk) score block, a (d, bk) key block, the (bq, dv) value product, a
    # float64 (G*bq, dv) accumulator and (G*bq, 3) running values
    bq, bk = DENSE_QUERY_BLOCK, DENSE_KEY_BLOCK
    group = dense_query_group(B, L, threads) * bq
    scratch = threads * ((bq * bk + d * bk + bq * dv) * f + (group * dv + 3 * group) * 8)
    return B * L * d * f + max(B * L * 8, B * L * dv * f + scratch)


def _numpy_bytes(B: int, L: int, d: int, dv: int, f: int, cfg: LSHConfig, threads: int) -> int:
    if cfg.is_short(L):
        return _dense_bytes(B, L, d, dv, f, separate=cfg.separate)
    S = B * cfg.rounds * L  # slots (B, H*L); local: one round
    A, W = cfg.n_adjacent, cfg.window_len(L)
    ints = 4 * S * INT_BYTES + S * A * INT_BYTES  # buckets, perm, inverse, positions; kpos
    sorted_vecs = S * (2 * d + dv) * f  # sq, sv, rsk (B, H*L, .)
    windows = S * A * (d + dv) * f  # kw (B, NC, W, d), vw (B, NC, W, dv)
    scores = 3 * S * W * f  # dotlike, dotlike - lse, probs (B, NC, m, W)
    if cfg.weighting == "count-once":  # window lists, sort order, counts, sorted C (S, W)
        scores += 4 * S * W * INT_BYTES + S * W * 8
    return ints + sorted_vecs + windows + scores


#: the numba backend's query block (lshbench.backends.numba_lsh.QUERY_BLOCK / query_block),
#: repeated here because importing that module imports numba; a test keeps the two equal
NUMBA_QUERY_BLOCK = 128


def numba_query_block(config: LSHConfig) -> int:
    """Queries the numba kernels score together: the pipeline's chunk, or for ``local``
    chunks longer than 128 their largest divisor <= 128 (the chunk when that is below 16)."""
    m = config.sort_chunk_len
    if config.method != "local" or m <= NUMBA_QUERY_BLOCK:
        return m
    best = max(k for k in range(1, NUMBA_QUERY_BLOCK + 1) if m % k == 0)
    return best if best >= 16 else m


def _numba_bytes(B: int, L: int, d: int, dv: int, f: int, cfg: LSHConfig, threads: int) -> int:
    if cfg.separate:
        return _numba_separate_bytes(B, L, d, dv, f, cfg, threads)
    if cfg.is_short(L):
        return _dense_bytes(B, L, d, dv, f)
    cfg = cfg.pipeline_config()  # local: one round of chunks of chunk_len * n_hashes
    W, nb = cfg.window_len(L), cfg.total_buckets
    idx = 4  # int32 indices below 2**31
    sorted_slots = B * cfg.n_hashes * L * idx  # (B, H*L): the only n_hashes-sized array
    per_sequence = B * L * (f + dv * f + 16)  # key scales, output, running (max, normalizer)
    ring = threads * W * ((d + dv) * f + f + idx)  # per-thread window rows, scales, positions
    sort = threads * ((nb + 1) * INT_BYTES + L * idx)  # counting-sort scratch
    mq = numba_query_block(cfg)  # queries scored together (local: blocks of a long chunk)
    # per-block buffers: queries (d, mq), scores (W, mq), output (mq, dv), max; normalizer f64
    scratch = threads * (mq * (d + W + dv + 1) * f + mq * 8)
    if cfg.weighting == "count-once" and (cfg.n_hashes > 1 or cfg.n_adjacent > cfg.n_chunks(L)):
        nc = cfg.n_chunks(L)
        chunk_ids = B * cfg.n_hashes * L * idx  # (B, L, H) int32 chunk of every copy
        # per thread: ring chunk ids (W, H), bit table (NC, ceil(mq/64)) uint64, counts (W, mq)
        scratch += chunk_ids + threads * (W * cfg.n_hashes * idx + nc * -(-mq // 64) * 8)
        scratch += threads * W * mq * f
    # hashing blocks of 256 rows: rows (d, 256), projections (K, 256), max/min, arg max/min
    hashing = threads * 256 * ((d + cfg.rot_size // 2 + 2) * f + 2 * 4)
    if cfg.method == "random":  # drawn buckets (B, H, L) int64 replace the hashing phase
        hashing = B * cfg.n_hashes * L * INT_BYTES
    # the phases run one after another, each freeing its scratch: the peak is the largest
    return sorted_slots + max(hashing, sort, per_sequence + ring + scratch)


def _numba_separate_bytes(
    B: int, L: int, d: int, dv: int, f: int, cfg: LSHConfig, threads: int
) -> int:
    # separate queries and keys (lshbench.backends._numba_separate): both sorted apart, the
    # rounds' outputs kept in float64 and combined after, then cast to the input dtype
    if cfg.is_short(L):
        return _dense_bytes(B, L, d, dv, f, separate=True)
    pc = cfg.pipeline_config()  # local: one round of chunks of chunk_len * n_hashes
    R, W = pc.n_hashes, pc.window_len(L)
    idx = 8 if max(pc.total_buckets, R * L) >= 2**31 else 4
    slots = 2 * B * R * L * idx  # sorted query and key positions, (B, R*L) each
    chunks = 2 * B * L * R * INT_BYTES if cfg.weighting == "count-once" else 0  # (B, L, R)
    rounds = B * R * L * (dv + 1) * 8  # per-round outputs (B, R, L, dv) and lse (B, R, L)
    kernel = threads * W * 16  # per thread: a query chunk's key positions and scores
    outputs = B * L * dv * (8 + f)  # the combined float64 output and its cast
    hashing = 0  # local: positions in order
    if cfg.method == "lsh":  # blocks of 256 rows as in the shared-QK model
        hashing = threads * 256 * ((d + cfg.rot_size // 2 + 2) * f + 2 * 4)
    elif cfg.method == "random":  # drawn buckets (B, H, L) int64
        hashing = B * R * L * INT_BYTES
    sort = threads * ((pc.total_buckets + 1) * INT_BYTES + L * idx)
    return slots + max(hashing, sort, chunks + rounds + max(kernel, outputs))


#: models of backends that attend to all keys (no LSH configuration needed)
EXACT_MODELS = ("dense", "dense-numpy")

#: analytic memory models by the name a backend's registry entry declares
MEMORY_MODELS: dict[str, Callable[..., int]] = {
    "dense": lambda B, L, d, dv, f, cfg, threads: _dense_kernel_bytes(B, L, d, dv, f, threads),
    "dense-numpy": lambda B, L, d, dv, f, cfg, threads: _dense_bytes(
        B, L, d, dv, f, separate=cfg is not None and cfg.separate
    ),
    "numpy": _numpy_bytes,
    "numba": _numba_bytes,
}


def memory_model(
    model_name: str | None,
    batch: int,
    seqlen: int,
    d: int,
    dv: int,
    itemsize: int,
    config: LSHConfig | None,
    threads: int = 1,
) -> int | None:
    """Analytic bytes allocated by one call, by the model a backend's registry entry names
    (``BackendSpec.memory_model``); None without a model. ``config``: the cell's
    configuration (its ``qk`` picks the separate-QK variant of a model); it may be None for
    backends that do not hash (the shared-QK model then)."""
    model = MEMORY_MODELS.get(model_name) if model_name else None
    if model is None or (config is None and model_name not in EXACT_MODELS):
        return None
    return int(model(batch, seqlen, d, dv, itemsize, config, threads))


def reference_bytes(batch: int, seqlen: int, d: int, dv: int, itemsize: int) -> int:
    """Bytes a sweep worker holds for one input all through its cell: qk and v, and the
    float64 reference (:func:`lshbench.measurement.metrics.dense_reference`: out, lse, top1,
    rows, entropy)."""
    B, L = batch, seqlen
    inputs = B * L * (d + dv) * itemsize
    held = B * L * (dv + 3) * 8 + B * L  # out, lse, top1, entropy float64/int64; rows bool
    return inputs + held


def reference_work_bytes(batch: int, seqlen: int, d: int, dv: int) -> int:
    """Peak bytes, on top of :func:`reference_bytes`, while the reference is computed
    (measured with tracemalloc, d = 64: within 2% at B x L = 8192 to 32768, up to twice the
    measured at L <= 2048, where one block is the whole score matrix).

    float64 copies of qk and v and the normalized keys (freed after), and three query blocks
    of probabilities (``B * rows_per_block(B, L) * L`` float64 each: the scores, and the
    products and reductions taken from them)."""
    B, L = batch, seqlen
    copies = B * L * (2 * d + dv) * 8
    block = B * rows_per_block(B, L) * L * 8
    return copies + 3 * block


def coverage_bytes(batch: int, seqlen: int, d: int, itemsize: int, config: LSHConfig) -> int:
    """Peak bytes of the accuracy phase of one LSH configuration, on top of
    :func:`reference_bytes` (measured with tracemalloc at L = 1024 to 32768, B = 1 to 8,
    d = 64, H = 1 to 8, every method and weighting: the model is 0 to 35% above, and twice
    the measured where one chunk holds the whole sequence).

    The buckets (B, rounds, L) int64 of :func:`lshbench.core.hashing.pipeline_buckets`, plus
    the larger of its hashing (``lsh``: a projection (B, L, rot_size / 2) in the input dtype
    and its temporaries, about twice that) and the window metrics
    (:func:`lshbench.measurement.metrics.window_metrics`): float64 qk and normalized keys,
    one sequence's sort of its rounds * L slots (offset buckets, order, inverse, positions,
    chunk of each slot), and one query block (scores against all keys or gathered keys, and
    about eight (rows, K) arrays of the K key occurrences of each query's windows).
    """
    B, L, R = batch, seqlen, config.rounds
    buckets = B * R * L * INT_BYTES
    hashing = 0
    if config.method == "lsh":
        hashing = 2 * B * L * ((config.rot_size // 2) * itemsize + INT_BYTES)
    K = R * config.window_len(L)  # key occurrences per query
    gather = K * GATHER_COST_RATIO < L  # as window_metrics decides
    width = K * d if gather else max(L, K)
    rows = min(L, max(1, COVERAGE_BLOCK_ELEMENTS // width))
    block = rows * width * 8 + 8 * rows * K * 8
    metrics = 2 * B * L * d * 8 + 6 * R * L * INT_BYTES + block
    return buckets + max(hashing, metrics)
