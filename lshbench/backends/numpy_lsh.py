"""LSH self-attention in vectorized NumPy: the readable reference.

Read it next to the Coursera lab (C4 W4 "Reformer Efficient Attention"): the names
``sq``, ``rsq``, ``dotlike``, ``slogits``, ``so``, ``o``, ``logits`` and ``probs`` are the
lab's. Shapes: B batch, L positions, d query/key size, dv value size, H rounds, m chunk
length, NC = H*L/m chunks over all rounds, A = 1 + chunks_before + chunks_after chunks per
window, W = A*m keys per window. No Python loop runs over tokens or chunks.

Every variant of docs/design.md section 2b runs through the same steps: the pipeline
configuration (``config.pipeline_config()``) sets H = ``config.rounds`` and
m = ``config.sort_chunk_len`` (``local``: one round of chunks of chunk_len * n_hashes), the
buckets come from :func:`lshbench.core.hashing.pipeline_buckets` (hashed, random or all
zero), and count-once weighting subtracts ``log C`` from every key occurrence's score
before the per-round softmax, so each distinct key of a query's windows counts once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lshbench.backends.base import Backend
from lshbench.core.attention import (
    combine_rounds,
    mask_scores,
    normalize_keys,
    softmax_with_lse,
)
from lshbench.core.config import LSHConfig
from lshbench.core.hashing import _pipeline_buckets
from lshbench.core.sorting import adjacent_chunks, sort_slots, window_multiplicities
from lshbench.core.validation import check_inputs

__all__ = ["LSHDetails", "NumpyBackend", "lsh_attention"]


class LSHDetails(NamedTuple):
    """Everything the study needs from one call (leading batch axis kept as given)."""

    out: np.ndarray  # (B, L, dv) combined output
    round_out: np.ndarray  # (B, H, L, dv) per-round outputs o_r, position order (H = rounds)
    round_lse: np.ndarray  # (B, H, L) per-round logsumexps (the lab's `logits`)
    buckets: np.ndarray  # (B, H, L) pipeline buckets, round offsets not added


def lsh_attention(
    qk: np.ndarray,
    v: np.ndarray,
    config: LSHConfig,
    rotations: np.ndarray,
    trace: dict[str, np.ndarray] | None = None,
    k: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked qk (B, L, d), v (B, L, dv), rotations (d, n_hashes, rot_size/2),
    L > config.sort_chunk_len; k (B, L, d) separate keys or None (shared QK).

    Returns ``(round_out (B, H, L, dv), round_lse (B, H, L), buckets (B, H, L))`` with
    H = ``config.rounds`` (1 for ``local``); buckets are the queries'. ``trace``, if given,
    receives the intermediate arrays under the lab's names (read by ``lshbench explain``);
    ``dotlike`` is stored after masking (and the count-once adjustment), ``so`` as
    (B, NC, m, dv).

    Separate keys (docs/design.md section 2c): queries hash from qk and keys from k with the
    same rotations, each sorted apart by (round, bucket, position); query chunk c attends
    key chunks c - before .. c + after; scores q . k as given, no mask.
    """
    B, L, d = qk.shape
    dv = v.shape[-1]
    pc = config.pipeline_config()  # local: one round of chunks of chunk_len * n_hashes
    H, m = pc.n_hashes, pc.chunk_len
    NC = pc.n_chunks(L)

    # Step 1, buckets of every position in every round: hashed (lsh), drawn at random
    # (random) or all zero (local: the stable sort keeps positions in order).
    buckets = _pipeline_buckets(qk, rotations, config)  # (B, H, L)
    key_buckets = None if k is None else _pipeline_buckets(k, rotations, config)  # (B, H, L)

    # Step 2, sort the H*L (round, position) slots by (round, bucket, position).
    perm, undo_sort, st = sort_slots(buckets, pc.total_buckets)  # each (B, H*L)
    sq = np.take_along_axis(qk, st[..., None], axis=1)  # (B, H*L, d) sorted queries
    # separate keys are sorted by their own buckets: (B, H*L) key positions
    kst = st if key_buckets is None else sort_slots(key_buckets, pc.total_buckets).positions
    sv = np.take_along_axis(v, kst[..., None], axis=1)  # (B, H*L, dv) sorted values

    # Step 3, chunk: m consecutive sorted slots form a chunk (chunks may straddle rounds).
    rsq = sq.reshape(B, NC, m, d)  # (B, H*L, d) -> (B, NC, m, d)
    rsv = sv.reshape(B, NC, m, dv)  # (B, H*L, dv) -> (B, NC, m, dv)
    qpos = st.reshape(B, NC, m)  # (B, NC, m) position of every query
    kpos_chunks = kst.reshape(B, NC, m)  # (B, NC, m) position of every key

    if k is None:
        # Keys are the same vectors, length-normalized (queries are not).
        rsk = normalize_keys(rsq)  # (B, NC, m, d)
    else:
        # (B, H*L, d) sorted keys, as given -> (B, NC, m, d)
        rsk = np.take_along_axis(k, kst[..., None], axis=1).reshape(B, NC, m, d)

    # Look around: chunk c sees chunks c-before..c+after, cyclically over all rounds.
    adj = adjacent_chunks(NC, pc.chunks_before, pc.chunks_after)  # (NC, A)
    kw = rsk[:, adj].reshape(B, NC, -1, d)  # (B, NC, A, m, d) -> (B, NC, W, d)
    vw = rsv[:, adj].reshape(B, NC, -1, dv)  # (B, NC, A, m, dv) -> (B, NC, W, dv)
    kpos = kpos_chunks[:, adj].reshape(B, NC, -1)  # (B, NC, A, m) -> (B, NC, W)

    # Step 4, scores: (B, NC, m, d) @ (B, NC, d, W) -> (B, NC, m, W)
    dotlike = rsq @ kw.swapaxes(-1, -2)
    if k is None:
        mask_scores(dotlike, qpos, kpos, config.causal)  # set -1e9 (future) and -1e5 (self)
    if config.weighting == "count-once":
        # Each distinct key once: an occurrence's weight exp(s) becomes exp(s) / C, C the
        # key's count in ALL of the query's windows (every round).
        C = window_multiplicities(buckets, config, key_buckets)  # (B, H, L, W), position order
        # to sorted order: (B, H*L, W)[perm] -> (B, NC, m, W), the layout of dotlike
        C = np.take_along_axis(C.reshape(B, H * L, -1), perm[..., None], axis=1)
        dotlike -= np.log(C.reshape(B, NC, m, -1)).astype(dotlike.dtype)

    # Step 5, per-copy softmax, keeping its logsumexp (float64: rounds are compared by it).
    probs, slogits = softmax_with_lse(dotlike)  # (B, NC, m, W), (B, NC, m)
    # (B, NC, m, W) @ (B, NC, W, dv) -> (B, NC, m, dv)
    so = probs @ vw
    if trace is not None:
        trace.update(
            buckets=buckets, sticker=perm, undo_sort=undo_sort, st=st, sq=sq, sv=sv, rsq=rsq,
            rsv=rsv, qpos=qpos, rsk=rsk, adj=adj, kw=kw, vw=vw, kpos=kpos, dotlike=dotlike,
            slogits=slogits, chunk_probs=probs, so=so,
        )  # fmt: skip

    # Step 6, undo the sort: back to (round, position) order.
    so = so.reshape(B, H * L, dv)  # (B, NC, m, dv) -> (B, H*L, dv)
    slogits = slogits.reshape(B, H * L)  # (B, NC, m) -> (B, H*L)
    o = np.take_along_axis(so, undo_sort[..., None], axis=1)  # (B, H*L, dv)
    logits = np.take_along_axis(slogits, undo_sort, axis=1)  # (B, H*L)
    return o.reshape(B, H, L, dv), logits.reshape(B, H, L), buckets


class NumpyBackend(Backend):
    """Vectorized NumPy LSH attention (the readable reference implementation)."""

    name = "numpy"
    description = "vectorized NumPy LSH attention (reference)"

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        assert rotations is not None  # a hashing backend: Backend.attend checked them
        o, logits, _ = lsh_attention(qk, v, config, rotations)
        # Step 7, combine rounds: softmax over the per-round logsumexps.
        return combine_rounds(o, logits)  # (B, H, L, dv) -> (B, L, dv)

    def _attend_separate(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray | None,
    ) -> np.ndarray:
        assert rotations is not None  # a hashing backend: Backend.attend checked them
        o, logits, _ = lsh_attention(q, v, config, rotations, k=k)
        return combine_rounds(o, logits)  # (B, H, L, dv) -> (B, L, dv)

    def attend_details(
        self,
        qk: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray,
    ) -> LSHDetails:
        """Like :meth:`attend`, also returning per-round outputs, logsumexps and buckets.

        Arrays keep a leading batch axis only if the input had one; H = ``config.rounds``
        (1 for ``local``). For ``L <= config.sort_chunk_len`` (the dense path) every round is
        the same exact attention over all keys.
        """
        qk3, v3, rot, batched = check_inputs(qk, v, config, rotations)
        assert rot is not None  # check_inputs returns rotations for a hashing call
        L = qk3.shape[1]
        if config.is_short(L):
            from lshbench.core.dense import dense_attention, dense_probability_blocks

            out = dense_attention(qk3, v3, config.causal)  # (B, L, dv)
            lse = np.concatenate(
                [blk[3] for blk in dense_probability_blocks(qk3, config.causal)], axis=1
            )  # (B, L)
            H = config.rounds
            o = np.repeat(out[:, None], H, axis=1)  # (B, H, L, dv)
            logits = np.repeat(lse[:, None], H, axis=1)  # (B, H, L)
            buckets = _pipeline_buckets(qk3, rot, config)  # (B, H, L)
        else:
            o, logits, buckets = lsh_attention(qk3, v3, config, rot)
            out = combine_rounds(o, logits)
        details = LSHDetails(out, o, logits, buckets)
        return details if batched else LSHDetails(*(x[0] for x in details))
