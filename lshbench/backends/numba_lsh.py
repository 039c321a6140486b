"""LSH self-attention with Numba: parallel over chunks, streamed, compiled once.

The kernels live in :mod:`lshbench.backends._numba_kernels` (imported here, so importing
:mod:`lshbench` never imports numba). This module owns the buffers: every array the
kernels touch is allocated here with NumPy, so ``tracemalloc`` sees all of it, and the
only arrays whose size depends on ``n_hashes`` are the int32 sorted positions
``(B, H*L)`` (with count-once weighting also the int32 chunk ids ``(B, L, H)`` and, per
thread, a ring of them ``(W, H)`` and a table of query bits over the ``H*L/m`` chunks).
Per-round outputs never exist: rounds are combined online.

Every method and weighting of docs/design.md section 2b runs through the same kernels with
``config.pipeline_config()`` (``local``: one round of chunks of chunk_len * n_hashes).

BLAS inside the ``prange`` loops runs at one thread (threadpoolctl, for the duration of
the call); the Numba threads are ``numba.get_num_threads()``.

The two chunk products of the attention stage run through one of three candidate kernels
(:data:`KERNELS`): ``blas`` (``np.dot``, single-thread BLAS on (W, d) @ (d, m) and
(m, W) @ (W, dv) blocks, whose speed differs a lot between CPUs and BLAS builds),
``tiled`` (Numba register-tiled 2 x 4 blocks of dot products, no BLAS) or ``mixed``
(BLAS for the scores, tiled for the values). :attr:`NumbaBackend.kernel` picks one per
machine: the environment variable ``LSHBENCH_NUMBA_KERNEL`` (``blas``, ``tiled``,
``mixed`` or ``auto``) forces it; otherwise (``auto``) a JSON file next to the compiled
kernels (:func:`kernel_cache_path`) remembers the choice per CPU model and versions, and
when it has none, the candidates are timed on a small representative problem (about
0.1-0.3 s in all) and the fastest kept. All give the same results up to float rounding.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from lshbench.backends import _numba_kernels as kernels
from lshbench.backends._blas import BlasOneThread
from lshbench.backends._numba_choice import (
    cpu_model,
    kernel_cache_path,
    machine_key,
    read_choices,
    warn_if_spinning_pools,
    write_choice,
)
from lshbench.backends.base import Backend
from lshbench.backends.registry import backend_spec
from lshbench.core.config import LSHConfig
from lshbench.core.hashing import _pipeline_buckets
from lshbench.core.validation import check_inputs

__all__ = ["KERNELS", "KERNEL_ENV", "NumbaBackend", "kernel_cache_path"]

#: the candidate kernels for the attention stage's chunk products
KERNELS = ("blas", "tiled", "mixed")
#: environment variable forcing a candidate (one of :data:`KERNELS`) or ``auto`` (the
#: default), as declared in the backend's registry entry (``BackendSpec.kernel_env``)
KERNEL_ENV: str = backend_spec("numba").kernel_env or ""
_KERNEL_CODES = {
    "blas": kernels.KERNEL_BLAS,
    "tiled": kernels.KERNEL_TILED,
    "mixed": kernels.KERNEL_MIXED,
}
#: the problem the candidates are timed on (a few ms each): L, d, n_hashes, chunk, rounds
CHOICE_PROBLEM = {"seqlen": 2048, "d": 64, "n_hashes": 2, "chunk_len": 64, "rounds": 7}

#: counting sort when the bucket count is at most this multiple of L (else merge sort)
COUNTING_SORT_MAX_RATIO = 16

#: chunk products of at most this many multiply-adds (m * W * max(d, dv)) use plain loops.
#: Measured per chunk (scores + values products, ns, one thread, 2-core Zen 4 VM):
#: m=2, d=3, W=4: BLAS 115, loops 98; m=2, d=4, W=8: BLAS 136, loops 211; m=8, d=8, W=16:
#: BLAS 225, loops 767; m=64, d=64, W=128: BLAS 18 us, loops 66 us. So BLAS (np.dot at
#: one thread), except for toy shapes such as the Coursera lab's.
LOOPS_MAX_MACS = 32


#: segments (runs of consecutive chunks walked by one thread) per thread and round; more
#: balance the threads better, each costs one extra gather of its first window
SEGMENTS_PER_THREAD = 4


def segment_chunks(round_chunks: int, threads: int) -> int:
    """Chunks per segment of a round of ``round_chunks`` chunks on ``threads`` threads."""
    return max(1, -(-round_chunks // (threads * SEGMENTS_PER_THREAD)))


#: ``local`` chunks (chunk_len * n_hashes queries) are scored in blocks of at most this many
#: queries, so the (W, block) scores stay in the thread's cache
QUERY_BLOCK = 128


def query_block(config: LSHConfig) -> int:
    """Queries scored together: the pipeline's chunk, except for ``local`` chunks longer than
    QUERY_BLOCK: their largest divisor <= QUERY_BLOCK (the chunk itself when that divisor
    is tiny). lsh and random keep whole chunks, so section 2 runs exactly as it always did."""
    m = config.sort_chunk_len
    if config.method != "local" or m <= QUERY_BLOCK:
        return m
    best = max(k for k in range(1, QUERY_BLOCK + 1) if m % k == 0)
    return best if best >= 16 else m


def needs_counts(config: LSHConfig, seqlen: int) -> bool:
    """Whether count-once weighting changes anything: not with one round whose windows hold
    distinct chunks (every key then occurs once in a query's only window)."""
    if config.weighting != "count-once":
        return False
    pc = config.pipeline_config()
    return pc.n_hashes > 1 or pc.n_adjacent > pc.n_chunks(seqlen)


def use_blas(chunk_len: int, window: int, width: int) -> bool:
    """Whether the per-chunk products (``(W, d) @ (d, m)`` scores, ``(m, W) @ (W, dv)``
    values) go to BLAS rather than plain loops."""
    return chunk_len * window * width > LOOPS_MAX_MACS


def _scaled_values(v: np.ndarray, terms: int) -> tuple[np.ndarray, int]:
    """``(v * 2**-e, e)``: values small enough that the kernels' unnormalized sums stay
    finite, and the power of two to scale the output back by (``e = 0``: ``v`` itself).

    A round's output is accumulated as a sum of at most ``terms`` (keys per window times
    rounds) values weighted by at most 1 before it is normalized, so values above
    ``finfo.max / terms`` (and a safety factor 4) could overflow although the attention
    output, a convex combination of rows of ``v``, is finite. Such ``v`` (B, L, dv) is
    divided by a power of two (exact, no rounding beyond values that underflow far below
    the largest) to ``|v| < 1``; other inputs pass unchanged, with no copy.
    """
    biggest = max(float(v.max()), -float(v.min()))  # reductions: no temporary array
    if biggest <= float(np.finfo(v.dtype).max) / (4 * max(terms, 1)):
        return v, 0
    exponent = int(np.frexp(biggest)[1])  # biggest < 2**exponent
    return np.ldexp(v, -exponent).astype(v.dtype, copy=False), exponent  # (B, L, dv)


class NumbaBackend(Backend):
    """Numba LSH attention: ``prange`` over chunks, per-thread scratch, online round combine.

    :attr:`kernel` is the chunk-product kernel in use (one of :data:`KERNELS`, chosen per
    machine, see the module docstring); :meth:`describe` gives it with how it was chosen.
    """

    name = "numba"
    description = "Numba LSH attention: parallel over chunks, streamed rounds (cache=True)"

    def __init__(self, kernel: str | None = None) -> None:
        """``kernel``: force a candidate of :data:`KERNELS` for this instance (``None`` or
        ``"auto"``: the per-machine choice, see :attr:`kernel`)."""
        from lshbench.core.config import fail

        self._blas = BlasOneThread()
        self._kernel: str | None = None
        self._forced: str | None = None  # set while timing the candidates
        self._choice: dict[str, Any] = {}
        if kernel not in (None, "auto"):
            if kernel not in KERNELS:
                fail("kernel", kernel, f"one of {', '.join(KERNELS)}, auto")
            self._kernel, self._choice = kernel, {"source": "argument"}

    @property
    def kernel(self) -> str:
        """The chunk-product kernel: one of :data:`KERNELS` (chosen at first use)."""
        if self._forced is not None:
            return self._forced
        if self._kernel is None:
            self._kernel, self._choice = self._choose_kernel()
        return self._kernel

    def describe(self) -> dict[str, Any]:
        """Facts to record with results: ``kernel``, ``kernel_source`` (``argument``,
        ``env``, ``cache`` or ``measured``), ``kernel_times_s`` (seconds per candidate on
        the choice problem, when measured), ``cpu_model``, ``numba_threads``,
        ``threading_layer``."""
        import numba

        kernel = self.kernel
        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            layer = None
        return {
            "kernel": kernel,
            "kernel_source": self._choice.get("source"),
            "kernel_times_s": self._choice.get("times_s"),
            "cpu_model": cpu_model(),
            "numba_threads": numba.get_num_threads(),
            "threading_layer": layer,
        }

    def _choose_kernel(self) -> tuple[str, dict[str, Any]]:
        """``LSHBENCH_NUMBA_KERNEL`` if set to a candidate; else the cached choice for this
        machine; else time the candidates (and cache the winner)."""
        from lshbench.core.config import fail

        want = os.environ.get(KERNEL_ENV, "auto").strip().lower() or "auto"
        if want in KERNELS:
            return want, {"source": "env"}
        if want != "auto":
            fail(KERNEL_ENV, want, f"one of {', '.join(KERNELS)}, auto")
        path, key = kernel_cache_path(), machine_key()
        cached = read_choices(path).get(key)
        if isinstance(cached, dict) and cached.get("kernel") in KERNELS:
            return cached["kernel"], {"source": "cache", "times_s": cached.get("times_s")}
        times = self.time_kernels()
        best = min(times, key=times.__getitem__)
        write_choice(path, key, {"kernel": best, "times_s": times, "measured": time.time()})
        return best, {"source": "measured", "times_s": times}

    def time_kernels(self, rounds: int | None = None) -> dict[str, float]:
        """Seconds of the attention stage per candidate on :data:`CHOICE_PROBLEM` (float32,
        Gaussian input): the best of ``rounds`` interleaved calls each."""
        from lshbench.core.hashing import random_rotations

        p = CHOICE_PROBLEM
        cfg = LSHConfig(n_hashes=p["n_hashes"], n_buckets=32, chunk_len=p["chunk_len"])
        rng = np.random.default_rng(0)
        qk = rng.standard_normal((1, p["seqlen"], p["d"])).astype(np.float32)
        v = rng.standard_normal((1, p["seqlen"], p["d"])).astype(np.float32)
        rot = random_rotations(p["d"], cfg, seed=0, dtype=np.float32)
        best = dict.fromkeys(KERNELS, float("inf"))
        try:
            with self._blas.limit():
                slots = self._pipeline_slots(qk, cfg, rot)
                for r in range((rounds or p["rounds"]) + 1):  # round 0: warm-up
                    for name in KERNELS if r % 2 else KERNELS[::-1]:
                        self._forced = name
                        start = time.perf_counter()
                        self._chunked_attention(qk, v, cfg, slots)
                        took = time.perf_counter() - start
                        best[name] = min(best[name], took) if r else best[name]
        finally:
            self._forced = None
        return best

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        assert rotations is not None
        warn_if_spinning_pools()
        with self._blas.limit():
            slots = self._pipeline_slots(qk, config, rotations)
            return self._chunked_attention(qk, v, config, slots)

    def _attend_separate(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray | None,
    ) -> np.ndarray:
        """Separate queries and keys (docs/design.md section 2c): both sorted by this
        backend's pipeline (hash and counting sort, random draws, or positions in order),
        then :mod:`lshbench.backends._numba_separate` over the query chunks."""
        from lshbench.backends import _numba_separate as separate

        assert rotations is not None
        warn_if_spinning_pools()
        pc = config.pipeline_config()
        B, L, _ = q.shape
        R, m = pc.n_hashes, pc.chunk_len
        with self._blas.limit():
            qslots = self._pipeline_slots(q, config, rotations)  # (B, R*L) sorted positions
            kslots = self._pipeline_slots(k, config, rotations)  # (B, R*L)
        count_once = config.weighting == "count-once"
        shape = (B, L, R) if count_once else (1, 1, 1)
        chunks = (np.zeros(shape, np.int64), np.zeros(shape, np.int64))
        if count_once:
            separate.chunk_of_copies(qslots, L, m, chunks[0])
            separate.chunk_of_copies(kslots, L, m, chunks[1])
        round_out = np.empty((B, R, L, v.shape[-1]), np.float64)
        round_lse = np.empty((B, R, L), np.float64)
        window = (int(pc.chunks_before), int(pc.chunks_after))
        separate.attend_separate(
            q, k, v, qslots, kslots, int(m), window, count_once, chunks, (round_out, round_lse)
        )
        out = np.empty((B, L, v.shape[-1]), np.float64)
        separate.combine_rounds(round_out, round_lse, out)
        return out.astype(q.dtype)

    def hash_buckets(self, qk: np.ndarray, rotations: np.ndarray, config: LSHConfig) -> np.ndarray:
        """This backend's own hashing: int (H, L), or (B, H, L) for batched qk.

        Same contract as :func:`lshbench.hash_buckets` (round offsets not added; hashed
        whatever ``config.method``).
        """
        qk3, _, rot, batched = check_inputs(qk, qk, config, rotations)
        assert rot is not None  # check_inputs returns rotations for a hashing call
        with self._blas.limit():
            slots = self._hash(qk3, config, rot)  # (B, H*L)
        buckets = slots.reshape(qk3.shape[0], config.n_hashes, -1).astype(np.int64)
        return buckets if batched else buckets[0]

    def sorted_positions(
        self, qk: np.ndarray, rotations: np.ndarray, config: LSHConfig
    ) -> np.ndarray:
        """This backend's pipeline buckets and sort: int64 (R*L,) or (B, R*L) positions,
        R = ``config.rounds``.

        Equals ``sort_slots(pipeline_buckets(qk, rotations, config),
        config.pipeline_config().total_buckets).positions``.
        """
        qk3, _, rot, batched = check_inputs(qk, qk, config, rotations)
        assert rot is not None  # check_inputs returns rotations for a hashing call
        with self._blas.limit():
            slots = self._pipeline_slots(qk3, config, rot)
        positions = slots.astype(np.int64)
        return positions if batched else positions[0]

    def _pipeline_slots(
        self, qk: np.ndarray, config: LSHConfig, rotations: np.ndarray
    ) -> np.ndarray:
        """Steps 1-2 for every method: qk (B, L, d) -> sorted positions (B, R*L), R rounds.

        ``lsh``: this backend's hashing and counting sort. ``random``: the buckets of
        :func:`~lshbench.core.hashing.pipeline_buckets` (the same seeded draws as every
        backend), then the same sort. ``local``: positions in order (the stable sort of
        all-zero buckets), nothing to hash or sort.
        """
        pc = config.pipeline_config()
        B, L, _ = qk.shape
        index = self._index_dtype(pc, L)
        if config.method == "local":
            return np.broadcast_to(np.arange(L, dtype=index), (B, L)).copy()  # (B, 1*L)
        slots: np.ndarray
        if config.method == "random":
            # int64 (B, H, L) -> (B, H*L), round-major (inputs checked already)
            slots = _pipeline_buckets(qk, rotations, config).reshape(B, -1).astype(index)
        else:
            slots = self._hash(qk, config, rotations)  # (B, H*L)
        self._sort(slots, pc)
        return slots

    @staticmethod
    def _index_dtype(config: LSHConfig, seqlen: int) -> type:
        big = max(config.total_buckets, config.n_hashes * seqlen) >= 2**31
        return np.int64 if big else np.int32

    def _hash(self, qk: np.ndarray, config: LSHConfig, rotations: np.ndarray) -> np.ndarray:
        """Step 1: qk (B, L, d) -> buckets (B, H*L), round-major, no round offsets."""
        import numba

        B, L, d = qk.shape
        H, K = config.n_hashes, config.rot_size // 2
        nt = numba.get_num_threads()
        dtype = qk.dtype
        # (d, H, K) -> (H, K, d): each round's (K, d) block is C-contiguous
        rot_t = np.ascontiguousarray(rotations.transpose(1, 2, 0), dtype=dtype)
        slots = np.empty((B, H * L), dtype=self._index_dtype(config, L))
        rows = kernels.ROWS
        scratch = kernels.HashScratch(
            rows_t=np.empty((nt, d * rows), dtype),  # per-thread (d, rows) transposed positions
            proj=np.empty((nt, K * rows), dtype),  # per-thread (K, rows) projections
            mx=np.empty((nt, rows), dtype),
            mn=np.empty((nt, rows), dtype),
            amx=np.empty((nt, rows), np.int32),
            amn=np.empty((nt, rows), np.int32),
        )
        factors = np.asarray(config.factors, dtype=np.int64)
        kernels.hash_all(qk, rot_t, factors, slots, *kernels.as_fields(scratch))
        return slots

    def _sort(self, slots: np.ndarray, config: LSHConfig) -> None:
        """Step 2, in place: each round's buckets -> its positions sorted by (bucket, position)."""
        import numba

        H, nb = config.n_hashes, config.total_buckets
        L = slots.shape[1] // H
        nt = numba.get_num_threads()
        if nb <= COUNTING_SORT_MAX_RATIO * L:  # counting sort, O(L + nb) per round
            counts = np.empty((nt, nb + 1), dtype=np.int64)
            kernels.sort_rounds(slots, H, nb, counts, np.empty((nt, L), dtype=slots.dtype))
        else:  # far more buckets than positions: a stable merge sort per round
            kernels.sort_rounds_argsort(slots, H)

    def _chunked_attention(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, slots: np.ndarray
    ) -> np.ndarray:
        """Steps 3-7: chunks of the sorted slots (B, R*L), streamed round by round, combined
        online; with the pipeline configuration (``local``: one round, chunks of m*H)."""
        import numba

        pc = config.pipeline_config()
        B, L, d = qk.shape
        dv = v.shape[-1]
        H, m = pc.n_hashes, pc.chunk_len
        mq = query_block(config)
        W = pc.n_adjacent * m  # keys per window (also when m >= L)
        before, after = pc.chunks_before, pc.chunks_after
        v, exponent = _scaled_values(v, W * H)
        nt = numba.get_num_threads()
        dtype = qk.dtype
        kscale = np.empty((B, L), dtype=dtype)  # key = qk * kscale
        kernels.key_scales(qk, kscale)
        count_once = needs_counts(config, L)
        Hc = H if count_once else 0
        chunk_of = np.empty((B, L, Hc), slots.dtype)  # (B, L, H) chunk of every copy
        if count_once:
            kernels.chunk_ids(slots, m, chunk_of)
        # count-once: per thread, a bit per query of the block over every chunk
        table = (pc.n_chunks(L), -(-mq // 64)) if count_once else (1, 1)
        out = np.empty((B, L, dv), dtype=dtype)
        code = self._kernel_code(mq, W, max(d, dv))
        tiled = code in (kernels.KERNEL_TILED, kernels.KERNEL_MIXED)  # values product tiled
        opts = kernels.AttendOptions(
            n_hashes=int(H), m=int(m), before=int(before), after=int(after),
            causal=bool(config.causal), kernel=int(code),
            seg_len=int(segment_chunks(L // m + 1, nt)),
        )  # fmt: skip
        ring = kernels.Ring(  # per thread: the window's A chunks
            rq=np.empty((nt, W, d), dtype),
            rv=np.empty((nt, dv, W) if tiled else (nt, W, dv), dtype),
            rs=np.empty((nt, W), dtype),
            rp=np.empty((nt, W), slots.dtype),
            rch=np.empty((nt, W, Hc), slots.dtype),
        )
        scratch = kernels.ChunkScratch(  # per thread: one block of mq queries
            qt=np.empty((nt, d, mq), dtype),
            pt=np.empty((nt, mq, W) if tiled else (nt, 1, 1), dtype),
            st=np.empty((nt, W, mq), dtype),
            o=np.empty((nt, mq, dv), dtype),
            top=np.empty((nt, mq), dtype),
            z=np.empty((nt, mq), np.float64),
            table=np.zeros((nt, *table), np.int64),
            cw=np.empty((nt, W if count_once else 1, mq), dtype),
        )
        acc = kernels.Accumulator(out=out, run=np.empty((B, L, 2), np.float64))
        inputs = kernels.AttendInputs(qk=qk, v=v, kscale=kscale, chunk_of=chunk_of, slots=slots)
        kernels.attend_all(*kernels.as_fields(inputs, opts, acc, ring, scratch))
        if exponent:  # back to v's scale; out is a convex combination of v's rows
            np.clip(out, v.min(), v.max(), out=out)  # (B, L, dv), rounding kept in range
            np.ldexp(out, exponent, out=out)
        return out

    def _kernel_code(self, mq: int, window: int, width: int) -> int:
        """The kernels' code for this call: plain loops for toy shapes, else :attr:`kernel`."""
        if not use_blas(mq, window, width):
            return kernels.KERNEL_LOOPS
        return _KERNEL_CODES[self.kernel]

    def compile(self, dtype: np.dtype | type = np.float32) -> float:
        """Compile (or load from the on-disk cache) every kernel for ``dtype``, and settle
        :attr:`kernel` (which may time the candidates once per machine); seconds spent."""
        from lshbench.core.hashing import random_rotations

        start = time.perf_counter()
        cfg = LSHConfig(n_hashes=2, n_buckets=(4, 2), chunk_len=4, weighting="count-once")
        qk = np.random.default_rng(0).standard_normal((1, 12, 4)).astype(dtype)
        rot = random_rotations(4, cfg, seed=0, dtype=dtype)
        self._attend(qk, qk, cfg, rot)  # all kernels
        self._attend_separate(qk, qk, qk, replace(cfg, qk="separate"), rot)  # separate QK
        kernels.sort_rounds_argsort(np.zeros((1, 4), dtype=np.int32), 2)  # the huge-nb sort
        self.kernel  # noqa: B018  (chooses the kernel now, not in the first timed call)
        return time.perf_counter() - start
