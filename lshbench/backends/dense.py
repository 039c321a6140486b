"""Exact attention over all keys: ``dense`` (fused, blocked Numba kernel) and ``dense-numpy``
(the readable NumPy reference, :mod:`lshbench.core.dense`).

Both compute docs/design.md section 2 over all L keys (keys length-normalized, scores
``q . k``, causal and self masks set), in O(L * block) memory. ``dense`` runs
:mod:`lshbench.backends._dense_kernels` (imported on first use, so importing this module
imports no numba): per block of :data:`QUERY_BLOCK` queries (up to :data:`QUERY_GROUP` blocks
per work item, the items in parallel), the keys in blocks of :data:`KEY_BLOCK`: scores by
BLAS GEMM (one thread inside the parallel loop), masks, an online softmax with a
vectorized exp, and the value product by GEMM; causal attention skips the key blocks
above the diagonal.
"""

from __future__ import annotations

import numpy as np

from lshbench.backends._blas import BlasOneThread
from lshbench.backends.base import Backend
from lshbench.core.config import LSHConfig
from lshbench.core.dense import dense_attention

__all__ = [
    "KEY_BLOCK",
    "QUERY_BLOCK",
    "QUERY_GROUP",
    "DenseBackend",
    "DenseNumpyBackend",
    "query_group",
]

#: queries per work item and keys per GEMM. Measured at d = 64 (float32, one thread, AMD
#: EPYC Zen 4, OpenBLAS 0.3.30): both products of a (32, 256) block run at 107-114 GFLOP/s,
#: above the 2048^3 SGEMM rate (~100), since OpenBLAS multiplies blocks of M*N*K <= 1e6
#: without packing them; (64, 256) or (128, 256) blocks ran at 76-92. bq must divide bk.
QUERY_BLOCK = 32
KEY_BLOCK = 256
#: most query blocks per work item: each key block is read from memory once per group and
#: then from cache. Measured at L = 16384 (float32, one thread, same CPU): 68 GFLOP/s with
#: one block per item, 78 / 82 / 87 with 2 / 4 / 8 (L = 4096: 81-83 with any).
QUERY_GROUP = 8


def query_group(batch: int, seqlen: int, threads: int) -> int:
    """Query blocks per work item: :data:`QUERY_GROUP`, fewer where that would leave fewer
    than 4 work items per thread (short sequences, many threads)."""
    blocks = batch * -(-seqlen // QUERY_BLOCK)
    return max(1, min(QUERY_GROUP, blocks // (4 * threads)))


class DenseBackend(Backend):
    """Exact attention by a fused, blocked Numba kernel (flash-style, online softmax)."""

    name = "dense"
    description = "exact attention: fused blocked Numba kernel, GEMM + online softmax"

    def __init__(self) -> None:
        self._blas = BlasOneThread()

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        from lshbench.backends._numba_kernels import key_scales

        scale = np.empty(qk.shape[:2], np.float64)  # (B, L): key = qk * scale
        key_scales(qk, scale)
        return self._fused(qk, qk, scale, v, config.causal, shared=True)

    def _attend_separate(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray | None,
    ) -> np.ndarray:
        """Separate queries and keys (docs/design.md section 2c): ``softmax(q k^T) v``
        (B, L, dv) by the same fused kernel, the keys as they are, nothing masked."""
        scale = np.ones(k.shape[:2], np.float64)  # (B, L): raw keys
        return self._fused(q, k, scale, v, config.causal, shared=False)

    def _fused(
        self,
        q: np.ndarray,
        k: np.ndarray,
        scale: np.ndarray,
        v: np.ndarray,
        causal: bool,
        shared: bool,
    ) -> np.ndarray:
        """The kernel on queries q (B, L, d), keys ``k * scale`` (B, L, d) x (B, L) float64,
        values v (B, L, dv) -> (B, L, dv); ``shared``: keys are the queries (self mask)."""
        import numba

        from lshbench.backends import _dense_kernels as kernels

        B, L, d = q.shape
        dv = v.shape[-1]
        nt = numba.get_num_threads()
        dtype = q.dtype
        bq, bk = QUERY_BLOCK, KEY_BLOCK
        group = query_group(B, L, nt) * bq  # queries per work item
        kt = np.empty((B, L * d), dtype)  # the keys, transposed per block of bk
        kernels.blocked_keys(k, scale, bk, kt)
        del scale
        out = np.empty((B, L, dv), dtype)
        with self._blas.limit():
            scratch = (  # per thread
                np.empty((nt, bq * bk), dtype),  # a (bq, bk) block of scores, then weights
                np.empty((nt, d * bk), dtype),  # a causal diagonal block's keys, cut short
                np.empty((nt, bq, dv), dtype),  # a key block's value product
                np.empty((nt, group, dv), np.float64),  # accumulated output of a group
                np.empty((nt, group, 3), np.float64),  # running max, normalizer, rescale
            )
            kernels.dense_blocks(q, kt, v, causal, shared, bk, out, scratch)
        return out

    def compile(self, dtype: np.dtype | type = np.float32) -> float:
        """Compile (or load from the on-disk cache) the kernels for ``dtype``; seconds."""
        import time

        start = time.perf_counter()
        rng = np.random.default_rng(0)
        qk = rng.standard_normal((1, KEY_BLOCK + 3, 4)).astype(dtype)
        for causal in (False, True):
            self._attend(qk, qk, LSHConfig(causal=causal), None)
        self._attend_separate(qk, qk, qk, LSHConfig(qk="separate"), None)
        return time.perf_counter() - start


class DenseNumpyBackend(Backend):
    """The readable reference: NumPy, blocks of queries against all keys
    (:func:`lshbench.core.dense.dense_attention`)."""

    name = "dense-numpy"
    description = "exact attention in NumPy, query-blocked (reference)"

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        return dense_attention(qk, v, config.causal)

    def _attend_separate(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray | None,
    ) -> np.ndarray:
        """Separate queries and keys: ``softmax(q k^T) v`` (B, L, dv), no mask."""
        return dense_attention(q, v, config.causal, k=k)
