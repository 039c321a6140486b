"""Approximation error of an attention output against the dense reference (DESIGN.md section 5).

Two kinds of numbers:

* **Output errors** (:func:`output_errors`), per backend: relative Frobenius error
  ``||out - ref||_F / ||ref||_F``, max abs error, and the mean over rows of the cosine
  similarity between ``out_i`` and ``ref_i``.
* **Window coverage** (:func:`window_coverage`), per LSH configuration: what the LSH windows
  let each query see, read from the multiplicities the core exposes
  (:func:`lshbench.window_positions`), never re-derived here.

  - *attention-mass recall*: the share of query i's dense softmax mass on the distinct keys
    its windows contain, averaged over queries;
  - *top-1 agreement*: the share of queries whose highest-weight key under LSH equals the
    highest-weight key under dense attention. LSH gives key j the weight
    ``C_ij * exp(s_ij)`` over valid keys (``C_ij`` = occurrences of j in i's windows over all
    rounds, research note section B), or puts all weight on i itself when no valid key is
    in its windows.

The reference is computed once per input, in float64 whatever the input dtype, in blocks of
queries (:func:`lshbench.backends.dense.dense_probability_blocks`), so memory stays
O(L * block) and the metrics run at L = 65536.

Rows whose only valid key is the query itself (position 0 when causal) are left out of every
metric: they are exact in every implementation, and their float32 output carries the
rounding of logits near -1e5 (DESIGN.md section 2, float32 caveat).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lshbench.core.attention import mask_scores, normalize_keys, valid_keys
from lshbench.core.config import LSHConfig
from lshbench.core.dense import dense_probability_blocks
from lshbench.core.sorting import window_positions

__all__ = [
    "Coverage",
    "DenseReference",
    "OutputErrors",
    "dense_reference",
    "output_errors",
    "scored_rows",
    "window_coverage",
]

#: scores gathered per query block in :func:`window_coverage` (elements of float64)
COVERAGE_BLOCK_ELEMENTS = 2**21
#: a listed key costs about this many times a key of a full score row (measured: a gathered
#: (n, K, d) einsum against a (n, d) @ (d, L) GEMM); below it, scores are gathered
GATHER_COST_RATIO = 16


class DenseReference(NamedTuple):
    """Exact attention of one input, float64."""

    out: np.ndarray  # (B, L, dv) exact output
    lse: np.ndarray  # (B, L) logsumexp of each query's masked scores over all L keys
    top1: np.ndarray  # (B, L) int64: key with the highest dense weight (first on ties)
    rows: np.ndarray  # (B, L) bool: rows scored by the metrics (see scored_rows)


class OutputErrors(NamedTuple):
    rel_err: float  # ||out - ref||_F / ||ref||_F over scored rows
    max_abs_err: float  # max |out - ref| over scored rows
    cos_sim: float  # mean over scored rows of cos(out_i, ref_i)


class Coverage(NamedTuple):
    mass_recall: float  # mean share of dense softmax mass on keys the windows contain
    top1_agree: float  # share of queries whose LSH top key equals the dense top key


def scored_rows(batch: int, seqlen: int, causal: bool) -> np.ndarray:
    """bool (batch, seqlen): rows that have a valid key other than themselves.

    Row i has one iff key 0 or key 1 is valid for it (non-causal: the other of the two;
    causal: key 0 for every i >= 1), so two keys decide it.
    """
    queries = np.arange(seqlen)  # (L,)
    probe = np.minimum(np.array([0, 1]), seqlen - 1)  # (2,) keys 0 and 1
    ok = valid_keys(queries, np.broadcast_to(probe, (seqlen, 2)), causal).any(axis=-1)  # (L,)
    return np.broadcast_to(ok, (batch, seqlen)).copy()


def dense_reference(
    qk: np.ndarray, v: np.ndarray, causal: bool, block_rows: int | None = None
) -> DenseReference:
    """Exact attention of qk (B, L, d), v (B, L, dv) in float64, with lse and top-1 keys.

    One pass over blocks of queries; memory O(B * L * (dv + block_rows)).
    """
    qk64 = np.asarray(qk, dtype=np.float64)
    v64 = np.asarray(v, dtype=np.float64)
    B, L, _ = qk64.shape
    out = np.empty((B, L, v64.shape[-1]))  # (B, L, dv)
    lse = np.empty((B, L))
    top1 = np.empty((B, L), dtype=np.int64)
    for start, stop, probs, block_lse in dense_probability_blocks(qk64, causal, block_rows):
        out[:, start:stop] = probs @ v64  # (B, b, L) @ (B, L, dv) -> (B, b, dv)
        lse[:, start:stop] = block_lse
        top1[:, start:stop] = probs.argmax(axis=-1)  # (B, b)
    return DenseReference(out, lse, top1, scored_rows(B, L, causal))


def output_errors(
    out: np.ndarray, ref: np.ndarray | DenseReference, rows: np.ndarray | None = None
) -> OutputErrors:
    """Errors of ``out`` (B, L, dv) or (L, dv) against ``ref`` of the same shape.

    ``ref`` may be a :class:`DenseReference` (its ``rows`` are used unless ``rows`` is
    given). Computed in float64. A row where both vectors are zero has cosine 1, a row
    where exactly one is zero has cosine 0.
    """
    if isinstance(ref, DenseReference):
        rows = ref.rows if rows is None else rows
        ref = ref.out
    a = np.asarray(out, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"out.shape {a.shape} != ref.shape {b.shape}")
    if rows is not None:
        a, b = a[rows], b[rows]  # (N, dv)
    a = a.reshape(-1, a.shape[-1])  # (N, dv)
    b = b.reshape(-1, b.shape[-1])  # (N, dv)
    if a.shape[0] == 0:
        return OutputErrors(float("nan"), float("nan"), float("nan"))
    diff = a - b
    ref_norm = np.linalg.norm(b)
    rel = np.linalg.norm(diff) / ref_norm if ref_norm > 0 else float(np.linalg.norm(diff) > 0)
    na = np.linalg.norm(a, axis=-1)  # (N,)
    nb = np.linalg.norm(b, axis=-1)  # (N,)
    dots = np.einsum("nd,nd->n", a, b)  # (N,)
    both = na * nb
    cos = np.where(both > 0, dots / np.where(both > 0, both, 1.0), (na == 0) & (nb == 0))
    return OutputErrors(float(rel), float(np.abs(diff).max()), float(cos.mean()))


def _run_lengths(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows of sorted keys (n, K): (first occurrence mask, run length of every entry)."""
    n, K = sorted_keys.shape
    first = np.ones((n, K), dtype=bool)
    first[:, 1:] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
    last = np.ones((n, K), dtype=bool)
    last[:, :-1] = first[:, 1:]
    idx = np.arange(K)  # (K,)
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)  # (n, K) run start
    # run end: minimum over the following "last" indices, scanned from the right
    end = np.minimum.accumulate(np.where(last, idx, K - 1)[:, ::-1], axis=1)[:, ::-1]  # (n, K)
    return first, end - start + 1


def window_coverage(
    qk: np.ndarray,
    buckets: np.ndarray,
    config: LSHConfig,
    reference: DenseReference,
    block_rows: int | None = None,
) -> Coverage:
    """Attention-mass recall and top-1 agreement of the LSH windows of ``buckets``.

    qk: (B, L, d) the input; buckets: (B, H, L) from :func:`lshbench.hash_buckets`;
    reference: :func:`dense_reference` of the same input. Works in query blocks: per block,
    scores against all keys (b, L) and the window lists (b, H*W), never (L, L).
    """
    qk64 = np.asarray(qk, dtype=np.float64)
    B, L, d = qk64.shape
    causal = config.causal
    keys_n = normalize_keys(qk64)  # (B, L, d)
    mass_sum = 0.0
    agree_sum = 0
    for b in range(B):
        windows = window_positions(buckets[b : b + 1], config)[0]  # (H, L, W)
        H, _, W = windows.shape
        K = H * W  # key occurrences per query
        gather = K * GATHER_COST_RATIO < L  # cheaper than a full score row per query
        rows = block_rows or max(1, COVERAGE_BLOCK_ELEMENTS // (K * d if gather else max(L, K)))
        for start in range(0, L, rows):
            stop = min(L, start + rows)
            qpos = np.arange(start, stop)  # (n,)
            # every key occurrence of each query's windows, all rounds: (H, n, W) -> (n, K)
            keys = np.sort(windows[:, start:stop].transpose(1, 0, 2).reshape(stop - start, K))
            q = qk64[b, start:stop]  # (n, d)
            if gather:
                # (n, d) . (n, K, d) -> (n, K)
                scores = np.einsum("nd,nkd->nk", q, keys_n[b][keys])
            else:
                # (n, d) @ (d, L) -> (n, L): scores against all keys, then those listed
                scores = np.take_along_axis(q @ keys_n[b].T, keys, axis=1)  # (n, K)
            mask_scores(scores[:, None, :], qpos[:, None], keys, causal)  # -1e9 / -1e5 set
            prob = np.exp(scores - reference.lse[b, start:stop, None])  # (n, K) dense weights
            first, count = _run_lengths(keys)
            keep = reference.rows[b, start:stop]  # (n,)
            mass_sum += float((prob * first).sum(axis=1)[keep].sum())
            # LSH weight of key j: C_ij * exp(s_ij) over valid keys; all on self if none valid
            valid = valid_keys(qpos, keys, causal)  # (n, K)
            log_w = np.where(valid, scores + np.log(count), -np.inf)  # (n, K)
            best = np.take_along_axis(keys, log_w.argmax(axis=1)[:, None], axis=1)[:, 0]
            top = np.where(valid.any(axis=1), best, qpos)  # (n,)
            agree_sum += int((top == reference.top1[b, start:stop])[keep].sum())
    n_rows = int(reference.rows.sum())
    if n_rows == 0:
        return Coverage(float("nan"), float("nan"))
    return Coverage(mass_sum / n_rows, agree_sum / n_rows)
