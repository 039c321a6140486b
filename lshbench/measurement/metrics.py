"""How close an attention output is to exact attention (docs/design.md section 6).

For query i, exact attention is ``a_i = softmax(s_i)`` over its valid keys (the scores and
masks of :mod:`lshbench.core.dense`); an LSH backend computes
``out_i = sum_j ahat_ij v_j`` with ``ahat_ij = C_ij exp(s_ij) / sum_k C_ik exp(s_ik)``, C the
multiplicity of key j in query i's windows over all rounds (``C -> 1`` where ``C > 0`` for
count-once weighting). Recorded:

* **Window metrics** (:func:`window_metrics`), per configuration, from the windows the core
  exposes (:func:`lshbench.core.sorting.window_blocks`), never re-derived here:

  - ``attn_tv = mean_i 0.5 * sum_j |ahat_ij - a_ij|`` in [0, 1], the headline: the share of
    attention mass put in the wrong place (independent of v);
  - ``mass_recall``: mean exact mass on the keys the windows contain (with count-once
    weighting ``attn_tv == 1 - mass_recall``);
  - ``top1_recall``: share of queries whose exact top key is in their windows;
  - the key counts ``keys_slots`` (window slots per query over all rounds, ``rounds * W``,
    repeats included) and ``keys_distinct`` (the mean over every query of the number of
    distinct positions in its windows). Both count the windows as the core lists them:
    causal and self masks are not applied, so windows covering the whole sequence give L.
    Exact attention (dense backends) has ``keys_slots = keys_distinct = L``, causal or not.
* **Output errors** (:func:`output_errors`), per backend: ``out_err_v = ||out - ref||_F /
  ||v - mean(v)||_F`` (the error on the scale of the values; mean over positions per
  sequence), relative error ``||out - ref||_F / ||ref||_F``, max abs error, and the mean
  over rows of ``cos(out_i, ref_i)``.
* ``attn_entropy`` (:class:`DenseReference`): mean exact row entropy in nats, a property of
  the input (how peaked its attention is).

:func:`attention_metrics` computes all of them for one output of any backend.

The **oracle** baseline (:func:`oracle_metrics`, docs/design.md section 2b): each query
keeps its k highest-scoring valid keys, each once (count-once), the best any method that
gives a query k keys can do. Its ``attn_tv`` is ``1 - mean_i (exact mass of those k keys)``
(count-once over a key set S gives ``0.5 * ((1 - a(S)) + (1 - a(S))) = 1 - a(S)``), a lower
bound on the ``attn_tv`` of any windows holding k distinct keys per query.

The reference is computed once per input, in float64 whatever the input dtype, in blocks of
queries (:func:`lshbench.core.dense.dense_probability_blocks`); the window metrics also run
in query blocks, so memory stays O(L * block) and the metrics run at L = 65536.

Separate queries and keys (docs/design.md section 2c): every function takes the keys ``k``
(and the windows the keys' buckets ``key_buckets``); scores are then ``q . k`` as given,
with no mask, and every row is scored.

Rows whose only valid key is the query itself (position 0 when causal) are left out of every
metric: they are exact in every implementation, and their float32 output carries the
rounding of logits near -1e5 (docs/design.md section 2, float32 caveat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lshbench.core.attention import logsumexp, mask_scores, normalize_keys, valid_keys
from lshbench.core.config import LSHConfig, fail
from lshbench.core.dense import dense_probability_blocks
from lshbench.core.hashing import _pipeline_buckets
from lshbench.core.sorting import run_lengths, window_blocks
from lshbench.core.validation import check_inputs, check_keys

__all__ = [
    "DenseReference",
    "GradientErrors",
    "OutputErrors",
    "WindowMetrics",
    "attention_metrics",
    "dense_reference",
    "exact_windows",
    "gradient_errors",
    "oracle_metrics",
    "output_errors",
    "scored_rows",
    "window_metrics",
]

#: scores gathered per query block in :func:`window_metrics` (elements of float64)
COVERAGE_BLOCK_ELEMENTS = 2**21
#: a listed key costs about this many times a key of a full score row (measured: a gathered
#: (n, K, d) einsum against a (n, d) @ (d, L) GEMM); below it, scores are gathered
GATHER_COST_RATIO = 16


class DenseReference(NamedTuple):
    """Exact attention of one input, float64."""

    out: np.ndarray  # (B, L, dv) exact output
    lse: np.ndarray  # (B, L) logsumexp of each query's masked scores over all L keys
    top1: np.ndarray  # (B, L) int64: key with the highest exact weight (first on ties)
    rows: np.ndarray  # (B, L) bool: rows scored by the metrics (see scored_rows)
    entropy: np.ndarray  # (B, L) exact row entropy, nats
    v_spread: float  # ||v - mean(v)||_F, the mean over positions of each sequence

    @property
    def attn_entropy(self) -> float:
        """Mean exact row entropy over the scored rows (nats)."""
        return float(self.entropy[self.rows].mean()) if self.rows.any() else float("nan")


class OutputErrors(NamedTuple):
    rel_err: float  # ||out - ref||_F / ||ref||_F over scored rows
    max_abs_err: float  # max |out - ref| over scored rows
    cos_sim: float  # mean over scored rows of cos(out_i, ref_i)
    out_err_v: float  # ||out - ref||_F over scored rows / ||v - mean(v)||_F


class GradientErrors(NamedTuple):
    grad_err_qk: float  # ||d_qk - ref_d_qk||_F / ||ref_d_qk||_F, every row
    grad_err_v: float  # ||d_v - ref_d_v||_F / ||ref_d_v||_F, every row


def gradient_errors(
    d_qk: np.ndarray, d_v: np.ndarray, ref_d_qk: np.ndarray, ref_d_v: np.ndarray
) -> GradientErrors:
    """Relative Frobenius errors of the gradients of ``sum(out * g)`` against exact
    attention's (:func:`lshbench.core.dense.dense_attention_grads`), in float64; each array
    (B, L, .). A zero reference gives 0 for an equal gradient, else 1 (like ``rel_err``)."""

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        err = float(np.linalg.norm(a64 - b64))
        ref = float(np.linalg.norm(b64))
        return err / ref if ref > 0 else float(err > 0)

    return GradientErrors(rel(d_qk, ref_d_qk), rel(d_v, ref_d_v))


class WindowMetrics(NamedTuple):
    attn_tv: float  # mean total-variation distance between ahat_i and a_i
    mass_recall: float  # mean exact mass on keys the windows contain
    top1_recall: float  # share of queries whose exact top key is in their windows
    keys_slots: int  # window slots per query, all rounds, repeats included
    keys_distinct: float  # mean over every query of the distinct keys its windows hold


def exact_windows(seqlen: int) -> WindowMetrics:
    """The window metrics of exact attention over ``seqlen`` keys (dense backends: every key,
    weighted once; the key counts are L, masks not applied, as for the LSH windows)."""
    return WindowMetrics(0.0, 1.0, 1.0, keys_slots=seqlen, keys_distinct=float(seqlen))


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
    qk: np.ndarray,
    v: np.ndarray,
    causal: bool,
    block_rows: int | None = None,
    k: np.ndarray | None = None,
) -> DenseReference:
    """Exact attention of qk (B, L, d), v (B, L, dv) in float64, with lse, top-1 keys,
    row entropies and the spread of v. k: (B, L, d) separate keys, or None (shared QK).

    One pass over blocks of queries; memory O(B * L * (dv + block_rows)).
    """
    qk64 = np.asarray(qk, dtype=np.float64)
    k64 = None if k is None else np.asarray(k, dtype=np.float64)
    v64 = np.asarray(v, dtype=np.float64)
    B, L, _ = qk64.shape
    out = np.empty((B, L, v64.shape[-1]))  # (B, L, dv)
    lse = np.empty((B, L))
    top1 = np.empty((B, L), dtype=np.int64)
    entropy = np.empty((B, L))
    keys = normalize_keys(qk64) if k64 is None else k64  # (B, L, d)
    blocks = dense_probability_blocks(qk64, causal, block_rows, k64)
    for start, stop, probs, block_lse in blocks:
        out[:, start:stop] = probs @ v64  # (B, b, L) @ (B, L, dv) -> (B, b, dv)
        lse[:, start:stop] = block_lse
        top1[:, start:stop] = probs.argmax(axis=-1)  # (B, b)
        # entropy -sum_j p_ij (s_ij - lse_i) = lse_i - q_i . sum_j p_ij k_j: masked keys have
        # p = 0 exactly in every scored row. (B, b, L) @ (B, L, d) -> (B, b, d)
        mean_key = probs @ keys
        entropy[:, start:stop] = block_lse - np.einsum("bqd,bqd->bq", qk64[:, start:stop], mean_key)
    # separate keys: no self mask, every row has keys to choose from
    rows = scored_rows(B, L, causal) if k is None else np.ones((B, L), dtype=bool)
    entropy[~rows] = 0.0  # all weight on the query itself
    centered = v64 - v64.mean(axis=1, keepdims=True)  # (B, L, dv)
    spread = float(np.linalg.norm(centered))
    return DenseReference(out, lse, top1, rows, entropy, spread)


def output_errors(
    out: np.ndarray,
    ref: np.ndarray | DenseReference,
    rows: np.ndarray | None = None,
    v_spread: float | None = None,
) -> OutputErrors:
    """Errors of ``out`` (B, L, dv) or (L, dv) against ``ref`` of the same shape.

    ``ref`` may be a :class:`DenseReference` (its ``rows`` and ``v_spread`` are used unless
    given). Computed in float64. A row where both vectors are zero has cosine 1, a row
    where exactly one is zero has cosine 0. ``out_err_v`` is NaN without ``v_spread``.
    """
    if isinstance(ref, DenseReference):
        rows = ref.rows if rows is None else rows
        v_spread = ref.v_spread if v_spread is None else v_spread
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
        return OutputErrors(*[float("nan")] * 4)
    diff = a - b
    err = float(np.linalg.norm(diff))
    ref_norm = np.linalg.norm(b)
    rel = err / ref_norm if ref_norm > 0 else float(err > 0)
    if v_spread is None:
        err_v = float("nan")
    else:
        err_v = err / v_spread if v_spread > 0 else float(err > 0)
    na = np.linalg.norm(a, axis=-1)  # (N,)
    nb = np.linalg.norm(b, axis=-1)  # (N,)
    dots = np.einsum("nd,nd->n", a, b)  # (N,)
    both = na * nb
    cos = np.where(both > 0, dots / np.where(both > 0, both, 1.0), (na == 0) & (nb == 0))
    return OutputErrors(float(rel), float(np.abs(diff).max()), float(cos.mean()), err_v)


def window_metrics(
    qk: np.ndarray,
    buckets: np.ndarray,
    config: LSHConfig,
    reference: DenseReference,
    block_rows: int | None = None,
    k: np.ndarray | None = None,
    key_buckets: np.ndarray | None = None,
) -> WindowMetrics:
    """attn_tv, mass recall, top-1 recall and key counts of the windows of ``buckets``.

    qk: (B, L, d) the input; buckets: (B, rounds, L) from
    :func:`lshbench.core.hashing.pipeline_buckets` (for ``lsh``, the hash buckets);
    reference: :func:`dense_reference` of the same input. Per query block, the window lists
    (b, rounds*W) and their scores, never (L, L). The weighting is ``config.weighting``.
    Separate keys: k (B, L, d) and key_buckets (B, rounds, L), the keys' pipeline buckets.
    """
    qk64 = np.asarray(qk, dtype=np.float64)
    B, L, d = qk64.shape
    keys_n = normalize_keys(qk64) if k is None else np.asarray(k, dtype=np.float64)  # (B, L, d)
    K = config.rounds * config.window_len(L)  # key occurrences per query
    gather = K * GATHER_COST_RATIO < L  # cheaper than a full score row per query
    rows = block_rows or max(1, COVERAGE_BLOCK_ELEMENTS // (K * d if gather else max(L, K)))
    sums = np.zeros(3)  # attn_tv, mass_recall, top1_recall summed over scored rows
    distinct = 0  # distinct window keys summed over every query
    for b in range(B):
        kb = None if key_buckets is None else key_buckets[b : b + 1]
        for start, stop, windows in window_blocks(buckets[b : b + 1], config, rows, kb):
            n = stop - start
            # every key occurrence of each query's windows, all rounds: (R, n, W) -> (n, K)
            keys = np.sort(windows[0].transpose(1, 0, 2).reshape(n, K), axis=1)
            q = qk64[b, start:stop]  # (n, d)
            if gather:
                # (n, d) . (n, K, d) -> (n, K)
                scores = np.einsum("nd,nkd->nk", q, keys_n[b][keys])
            else:
                # (n, d) @ (d, L) -> (n, L): scores against all keys, then those listed
                scores = np.take_along_axis(q @ keys_n[b].T, keys, axis=1)  # (n, K)
            qpos = np.arange(start, stop)  # (n,)
            if k is None:  # (n, 1, K)
                mask_scores(scores[:, None, :], qpos[:, None], keys, config.causal)
            keep = reference.rows[b, start:stop]  # (n,)
            block = _block_metrics(
                keys, scores, reference.lse[b, start:stop], reference.top1[b, start:stop], config
            )  # (4, n)
            sums += block[:3, keep].sum(axis=1)
            distinct += int(block[3].sum())
    n_rows = int(reference.rows.sum())
    tv, recall, top = (float(x) for x in (sums / n_rows if n_rows else np.full(3, np.nan)))
    return WindowMetrics(tv, recall, top, keys_slots=K, keys_distinct=distinct / (B * L))


def oracle_metrics(
    qk: np.ndarray,
    budgets: Sequence[int],
    causal: bool,
    reference: DenseReference,
    block_rows: int | None = None,
    k: np.ndarray | None = None,
) -> list[WindowMetrics]:
    """The oracle's window metrics for each k of ``budgets``: every query keeps its k
    highest-probability keys (exact attention's k heaviest valid keys), weighted once.

    qk: (B, L, d); k: (B, L, d) separate keys or None (shared QK); reference: the
    :func:`dense_reference` of the same input (its scored rows). A k above L keeps every key;
    a query with fewer than k valid keys keeps them all (masked keys have probability 0).
    ``top1_recall`` is 1 (the heaviest key is always kept); ``keys_slots`` and
    ``keys_distinct`` are k. One pass over query blocks of the dense probabilities, memory
    O(B * L * block).
    """
    qk64 = np.asarray(qk, dtype=np.float64)
    k64 = None if k is None else np.asarray(k, dtype=np.float64)
    L = qk64.shape[1]
    kept = [min(max(int(b), 1), L) for b in budgets]
    kth = sorted({L - b for b in kept})  # partition points: the k largest lie above L - k
    mass = np.zeros(len(kept))  # kept exact mass summed over scored rows, per budget
    for start, stop, probs, _ in dense_probability_blocks(qk64, causal, block_rows, k64):
        part = np.partition(probs, kth, axis=-1)  # (B, b, L): k largest in [L - k, L)
        rows = reference.rows[:, start:stop]  # (B, b)
        for i, b in enumerate(kept):
            mass[i] += part[..., L - b :].sum(axis=-1)[rows].sum()  # (B, b) -> scalar
    n_rows = int(reference.rows.sum())
    mean = mass / n_rows if n_rows else np.full(len(kept), np.nan)
    top = 1.0 if n_rows else float("nan")
    return [
        WindowMetrics(1.0 - float(m), float(m), top, keys_slots=b, keys_distinct=float(b))
        for m, b in zip(mean, kept, strict=True)
    ]


def _block_metrics(
    keys: np.ndarray, scores: np.ndarray, lse: np.ndarray, top1: np.ndarray, config: LSHConfig
) -> np.ndarray:
    """Per query of one block: (attn_tv, mass_recall, top1_recall, distinct keys) as
    float64 (4, n).

    keys: (n, K) every key occurrence of each query's windows, sorted; scores: (n, K) their
    masked scores; lse: (n,) exact logsumexps; top1: (n,) exact top keys.
    """
    first, count = run_lengths(keys)  # (n, K): first occurrence of each key, its C
    exact = np.exp(scores - lse[:, None])  # (n, K) a_ij of every occurrence
    recall = np.sum(exact, axis=1, where=first)  # (n,) exact mass on distinct window keys
    if config.weighting == "count-once":  # C -> 1: one term per distinct key
        norm = logsumexp(np.where(first, scores, -np.inf), axis=1)  # (n,)
        lsh = np.exp(scores - norm[:, None])  # (n, K) ahat_ij of each distinct key
    else:  # summing all occurrences gives C_ij exp(s_ij) per distinct key
        norm = logsumexp(scores, axis=1)  # (n,)
        lsh = count * np.exp(scores - norm[:, None])  # (n, K) ahat_ij = C_ij exp(s_ij) / Z
    # keys outside the windows: ahat = 0, a = what the windows miss (1 - recall, >= 0)
    missed = np.maximum(1.0 - recall, 0.0)  # (n,) rounding can take 1 - recall below 0
    tv = 0.5 * (np.sum(np.abs(lsh - exact), axis=1, where=first) + missed)  # (n,)
    top = (keys == top1[:, None]).any(axis=1)  # (n,)
    distinct = first.sum(axis=1, dtype=np.float64)  # (n,)
    return np.stack([tv, recall, top.astype(np.float64), distinct])  # (4, n)


def attention_metrics(
    qk: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
    config: LSHConfig,
    rotations: np.ndarray | None = None,
    reference: DenseReference | None = None,
    *,
    exact: bool = False,
    block_rows: int | None = None,
    k: np.ndarray | None = None,
) -> dict[str, float]:
    """Every accuracy metric of one backend output, usable outside a sweep.

    qk: (L, d) or (B, L, d); v: (L, dv) or (B, L, dv); out: the backend's output for them,
    shaped like v. ``config`` and ``rotations`` are what the backend was called with (the
    windows are rebuilt from them, :func:`lshbench.core.hashing.pipeline_buckets`).
    ``exact=True``: ``out`` is exact attention (a dense backend; ``config`` gives only
    ``causal`` and rotations are not needed): attn_tv 0, recalls 1. ``reference``: a
    :func:`dense_reference` of the same input, to reuse (computed otherwise). ``k``: the
    keys, like qk, when ``config.qk == "separate"``.

    Returns ``attn_tv``, ``mass_recall``, ``top1_recall``, ``keys_slots``,
    ``keys_distinct``, ``attn_entropy``,
    ``out_err_v``, ``rel_err``, ``max_abs_err``, ``cos_sim`` (floats, ``keys_slots`` an
    int; NaN where no row is scored).
    """
    if not exact and rotations is None:
        fail("rotations", None, "required for an LSH output (pass exact=True for dense)")
    qk3, v3, rot, batched = check_inputs(qk, v, config, rotations, need_rotations=not exact)
    k3 = check_keys(k, qk3, config, batched)  # (B, L, d) or None
    out3 = np.asarray(out)
    out3 = out3 if batched else out3[None]
    if out3.shape != v3.shape:
        fail("out.shape", np.shape(out), f"must equal v.shape {np.shape(v)}")
    ref = reference if reference is not None else dense_reference(qk3, v3, config.causal, k=k3)
    if exact:
        windows = exact_windows(qk3.shape[1])
    else:
        assert rot is not None  # need_rotations above
        buckets = _pipeline_buckets(qk3, rot, config)  # (B, rounds, L) as the backend sorts
        key_buckets = None if k3 is None else _pipeline_buckets(k3, rot, config)
        windows = window_metrics(qk3, buckets, config, ref, block_rows, k3, key_buckets)
    return {
        **windows._asdict(),
        "attn_entropy": ref.attn_entropy,
        **output_errors(out3, ref)._asdict(),
    }
