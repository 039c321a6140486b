"""``lshbench explain``: walk the real LSH attention code on a tiny input, in the lab's words.

The Coursera lab (C4 W4, "Reformer Efficient Attention", Part 3.4) builds ``dotandv`` from
``sq``, ``rsq``, ``dotlike``, ``slogits``, ``so``, ``o``, ``logits`` and ``probs``. This module
runs :func:`lshbench.backends.numpy_lsh.lsh_attention` (the numpy backend's own code path)
with a trace, prints every intermediate array with its shape and meaning, and then checks
numerically why Step 5 is right: the combined output is ONE softmax over the multiset union
of every key a query saw in all rounds, and ``probs[r]`` is round r's share ``Z_r / sum(Z)``
of that softmax's normalizer. Everything runs in float64 on one sequence (no batch axis).

:func:`explain_text` is what the command prints (the command itself is
:mod:`lshbench.cli.explain_command`); :func:`explain_arrays` holds every array it shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lshbench.backends import get_backend
from lshbench.backends.numpy_lsh import lsh_attention
from lshbench.core.attention import (
    CAUSAL_MASK_VALUE,
    SELF_MASK_VALUE,
    combine_rounds,
    logsumexp,
    mask_scores,
    normalize_keys,
    round_weights,
)
from lshbench.core.config import LSHConfig, fail
from lshbench.core.hashing import random_rotations
from lshbench.core.sorting import window_positions
from lshbench.core.validation import check_inputs

__all__ = [
    "LAB_CONFIG",
    "LAB_D",
    "LAB_DV",
    "LAB_SEED",
    "LAB_SEQLEN",
    "Explained",
    "explain_arrays",
    "explain_text",
    "make_inputs",
    "render",
]

#: The lab's example: 2 hashes, 4 buckets, chunks of 2 (L = 8, d = 3, d_v = 5).
LAB_CONFIG = LSHConfig(n_hashes=2, n_buckets=4, chunk_len=2)
LAB_SEQLEN, LAB_D, LAB_DV, LAB_SEED = 8, 3, 5, 0
#: explain prints every array; longer sequences are for the benchmark, not for reading.
MAX_SEQLEN = 64


@dataclass(frozen=True)
class Explained:
    """Every array ``lshbench explain`` prints, for one sequence (lab shapes, no batch axis).

    H rounds, L positions, m chunk length, NC = H*L/m chunks, W keys per window.
    """

    config: LSHConfig
    qk: np.ndarray  # (L, d) shared queries/keys
    v: np.ndarray  # (L, dv) values
    rotations: np.ndarray  # (d, H, rot_size/2)
    buckets: np.ndarray  # (H, L) bucket per round, no offsets
    sticker: np.ndarray  # (H*L,) original slot r*L + t of each sorted slot
    st: np.ndarray  # (H*L,) position of each sorted slot
    undo_sort: np.ndarray  # (H*L,) sorted index of each original slot
    sq: np.ndarray  # (H*L, d) sorted queries
    rsq: np.ndarray  # (NC, m, d) chunks of queries
    qpos: np.ndarray  # (NC, m) positions of the chunk queries
    adj: np.ndarray  # (NC, A) chunks each chunk looks at
    kw: np.ndarray  # (NC, W, d) look-around keys (normalized)
    kpos: np.ndarray  # (NC, W) their positions
    dotlike: np.ndarray  # (NC, m, W) masked scores
    chunk_probs: np.ndarray  # (NC, m, W) softmax within the window
    slogits: np.ndarray  # (NC, m) per-copy logsumexp
    so: np.ndarray  # (NC, m, dv) per-copy outputs
    o: np.ndarray  # (H*L, dv) per-copy outputs, original slot order
    logits: np.ndarray  # (H*L,) per-copy logsumexps, original slot order
    o_rounds: np.ndarray  # (H, L, dv)
    logits_rounds: np.ndarray  # (H, L, 1)
    probs: np.ndarray  # (H, L, 1) round weights (the lab's Step 5)
    out: np.ndarray  # (L, dv) combined output
    # the checks
    windows: np.ndarray  # (H, L, W) key positions query i saw in round r
    union_scores: np.ndarray  # (L, H*W) masked score of every (round, slot) query i saw
    union_out: np.ndarray  # (L, dv) one softmax over those H*W entries
    counts: np.ndarray  # (L, L) C[i, j]: occurrences of key j in query i's windows
    grouped_out: np.ndarray  # (L, dv) softmax over distinct keys of s_ij + log C_ij
    Z: np.ndarray  # (H, L) per-round normalizer (rows scaled by `z_scale`)
    z_scale: np.ndarray  # (L,) score subtracted before exp (0 unless out of float range)
    share: np.ndarray  # (H, L) Z[r] / sum(Z)
    numpy_out: np.ndarray  # (L, dv) lshbench.get_backend("numpy").attend
    dense_out: np.ndarray  # (L, dv) lshbench.get_backend("dense").attend

    @property
    def union_diff(self) -> float:
        """max |combined output - one softmax over the union of windows|."""
        return float(np.max(np.abs(self.out - self.union_out)))

    @property
    def share_diff(self) -> float:
        """max |probs[r] - Z_r / sum(Z)|."""
        return float(np.max(np.abs(self.probs[..., 0] - self.share)))


def make_inputs(
    seqlen: int, d: int, dv: int, config: LSHConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian float64 ``qk (L, d)``, ``v (L, dv)`` and rotations ``(d, H, rot_size/2)``.

    Rotations come from ``random_rotations(d, config, seed)``; the data from its own
    stream (seed sequence ``[seed, 1]``) so it does not repeat the rotations' numbers.
    """
    for field, value in (("seqlen", seqlen), ("d", d), ("dv", dv)):
        if value < 1:
            fail(field, value, "must be an integer >= 1")
    if seqlen > MAX_SEQLEN:
        fail("seqlen", seqlen, f"must be <= {MAX_SEQLEN} for explain (it prints every array)")
    if config.is_short(seqlen):
        fail(
            "chunk_len",
            config.chunk_len,
            f"must be < seqlen = {seqlen} for explain (L <= chunk_len is exact dense "
            "attention: nothing is hashed)",
        )
    if seed < 0:
        fail("seed", seed, "must be an integer >= 0")
    rng = np.random.default_rng([seed, 1])
    qk = rng.standard_normal((seqlen, d))  # (L, d)
    v = rng.standard_normal((seqlen, dv))  # (L, dv)
    return qk, v, random_rotations(d, config, seed=seed, dtype=np.float64)


def explain_arrays(
    config: LSHConfig = LAB_CONFIG,
    seqlen: int = LAB_SEQLEN,
    d: int = LAB_D,
    dv: int = LAB_DV,
    seed: int = LAB_SEED,
) -> Explained:
    """Run the numpy backend's code path with a trace, then compute the two identities."""
    qk, v, rotations = make_inputs(seqlen, d, dv, config, seed)
    qk3, v3, rot, _ = check_inputs(qk, v, config, rotations)  # (1, L, d), (1, L, dv)
    assert rot is not None  # check_inputs returns rotations for a hashing call
    H, L = config.n_hashes, seqlen
    trace: dict[str, np.ndarray] = {}
    o4, lse3, _ = lsh_attention(qk3, v3, config, rot, trace=trace)  # (1, H, L, dv), (1, H, L)
    t = {name: arr[0] for name, arr in trace.items() if name != "adj"}  # drop the batch axis
    o_rounds, lse = o4[0], lse3[0]  # (H, L, dv), (H, L)
    # Which keys did query i see, over all rounds? Straight from the sort, not the chunks.
    windows = window_positions(t["buckets"][None], config)[0]  # (H, L, W)
    return Explained(
        config=config,
        qk=qk,
        v=v,
        rotations=rotations,
        buckets=t["buckets"],
        sticker=t["sticker"],
        st=t["st"],
        undo_sort=t["undo_sort"],
        sq=t["sq"],
        rsq=t["rsq"],
        qpos=t["qpos"],
        adj=trace["adj"],
        kw=t["kw"],
        kpos=t["kpos"],
        dotlike=t["dotlike"],
        chunk_probs=t["chunk_probs"],
        slogits=t["slogits"],
        so=t["so"],
        o=o_rounds.reshape(H * L, dv),  # (H, L, dv) -> (H*L, dv), as the lab's Step 4
        logits=lse.reshape(H * L),  # (H, L) -> (H*L,)
        o_rounds=o_rounds,
        logits_rounds=lse[..., None],  # (H, L) -> (H, L, 1)
        probs=round_weights(lse)[..., None],  # (H, L) -> (H, L, 1)
        out=combine_rounds(o_rounds, lse),  # (H, L, dv) -> (L, dv)
        windows=windows,
        **_union_checks(qk, v, windows, config),
        numpy_out=get_backend("numpy").attend(qk, v, config, rotations),
        dense_out=get_backend("dense").attend(qk, v, config),
    )


def _union_checks(
    qk: np.ndarray, v: np.ndarray, windows: np.ndarray, config: LSHConfig
) -> dict[str, np.ndarray]:
    """The arrays of the proof, from the windows and the scores alone (not the chunks).

    ``qk (L, d)``, ``v (L, dv)``, ``windows (H, L, W)``: key positions query i saw in round r.
    Returns ``union_scores (L, H*W)``, ``union_out (L, dv)``, ``counts (L, L)``,
    ``grouped_out (L, dv)``, ``Z (H, L)``, ``z_scale (L,)`` and ``share (H, L)`` as in
    :class:`Explained`.
    """
    H, L, W = windows.shape
    seen = windows.transpose(1, 0, 2).reshape(L, H * W)  # (L, H, W) -> (L, H*W)
    keys = normalize_keys(qk)  # (L, d)
    # (L, 1, d) @ (L, d, H*W) -> (L, 1, H*W): query i against every key copy it saw
    union_scores = qk[:, None, :] @ keys[seen].transpose(0, 2, 1)
    positions = np.arange(L)
    mask_scores(union_scores, positions[:, None], seen, config.causal)
    union_scores = union_scores[:, 0, :]  # (L, H*W)
    union_lse = logsumexp(union_scores, axis=-1)  # (L,)
    union_p = np.exp(union_scores - union_lse[:, None])  # (L, H*W)
    # (L, 1, H*W) @ (L, H*W, dv) -> (L, 1, dv)
    union_out = (union_p[:, None, :] @ v[seen])[:, 0, :]

    # The same softmax grouped by distinct key: multiplicity C_ij adds log C_ij to s_ij.
    counts = np.zeros((L, L), dtype=np.int64)
    np.add.at(counts, (np.repeat(positions, H * W), seen.ravel()), 1)  # (L, L)
    scores = qk @ keys.T  # (L, d) @ (d, L) -> (L, L)
    mask_scores(scores, positions, positions, config.causal)
    with np.errstate(divide="ignore"):
        grouped = scores + np.log(counts)  # -inf where key j was never seen
    grouped_p = np.exp(grouped - logsumexp(grouped, axis=-1)[:, None])  # (L, L)
    grouped_out = grouped_p @ v  # (L, L) @ (L, dv) -> (L, dv)

    # Each round's normalizer Z_r = sum of exp(score) over its window, from the scores.
    per_round = union_scores.reshape(L, H, W)  # (L, H*W) -> (L, H, W)
    top = per_round.max(axis=(1, 2))  # (L,)
    z_scale = np.where(np.abs(top) > 700.0, top, 0.0)  # keep exp() inside float64 range
    Z = np.exp(per_round - z_scale[:, None, None]).sum(axis=-1).T  # (L, H) -> (H, L)
    return {
        "union_scores": union_scores,
        "union_out": union_out,
        "counts": counts,
        "grouped_out": grouped_out,
        "Z": Z,
        "z_scale": z_scale,
        "share": Z / Z.sum(axis=0, keepdims=True),  # (H, L)
    }


def _fmt(x: np.ndarray, precision: int) -> str:
    return np.array2string(
        np.asarray(x), precision=precision, suppress_small=True, max_line_width=100
    )


def explain_text(
    config: LSHConfig = LAB_CONFIG,
    seqlen: int = LAB_SEQLEN,
    d: int = LAB_D,
    dv: int = LAB_DV,
    seed: int = LAB_SEED,
    query: int = 0,
    precision: int = 4,
) -> str:
    """What ``lshbench explain`` prints: :func:`render` of :func:`explain_arrays`.

    Raises ConfigError (one line) for a ``precision`` outside 1..17, bad sizes (see
    :func:`make_inputs`) or a ``query`` that is not a position.
    """
    if not 1 <= precision <= 17:
        fail("precision", precision, "must be an integer in 1..17")
    ex = explain_arrays(config, seqlen, d, dv, seed)
    if not 0 <= query < seqlen:
        fail("query", query, f"must be a position in 0..{seqlen - 1}")
    return render(ex, precision=precision, query=query)


class _Text:
    """The lines of the explanation, with the three ways they are written."""

    def __init__(self, precision: int) -> None:
        self.lines: list[str] = []
        self.precision = precision

    def say(self, text: str = "") -> None:
        self.lines.append(text)

    def show(self, name: str, arr: np.ndarray, meaning: str) -> None:
        self.say(f"-- {name} {tuple(arr.shape)}: {meaning}")
        self.say(_fmt(arr, self.precision))
        self.say()

    def part(self, title: str) -> None:
        self.say(f"== {title} " + "=" * max(3, 86 - len(title)))
        self.say()


def render(ex: Explained, precision: int = 4, query: int = 0) -> str:
    """The text ``lshbench explain`` prints for ``ex``; ``query`` is shown in detail."""
    text = _Text(precision)
    _render_inputs_and_hashing(text, ex)
    _render_sort_and_chunks(text, ex)
    _render_rounds(text, ex)
    _render_query(text, ex, query)
    _render_proof(text, ex)
    return "\n".join(text.lines)


def _render_inputs_and_hashing(text: _Text, ex: Explained) -> None:
    cfg = ex.config
    H, (L, d), dv = cfg.n_hashes, ex.qk.shape, ex.v.shape[1]
    nb = cfg.total_buckets
    text.say(
        f"LSH attention on one sequence: L={L}, d={d}, d_v={dv}, n_hashes={H}, "
        f"n_buckets={cfg.n_buckets}, chunk_len={cfg.chunk_len}, "
        f"chunks_before={cfg.chunks_before}, chunks_after={cfg.chunks_after}, causal={cfg.causal}"
    )
    text.say(
        "Arrays come from lshbench.backends.numpy_lsh.lsh_attention (the numpy backend), "
        "float64, names as in the Coursera lab (C4 W4, Part 3.4)."
    )
    text.say()
    text.part("inputs")
    text.show("qk", ex.qk, "shared queries/keys, one row per position (Gaussian)")
    text.show("v", ex.v, "values, one row per position")
    text.show("rotations", ex.rotations, "random rotations R, one (d, n_buckets/2) slice per round")

    text.part("hashing (the lab's our_hash_vectors)")
    text.show(
        "buckets",
        ex.buckets,
        f"bucket of each position in each round: argmax([qk R_r, -qk R_r]), 0..{nb - 1}",
    )
    offset = ex.buckets + nb * np.arange(H)[:, None]  # (H, L)
    text.show(
        "buckets + r*n_buckets",
        offset.reshape(H * L),
        "round offsets added and flattened, so rounds never share a bucket",
    )


def _render_sort_and_chunks(text: _Text, ex: Explained) -> None:
    cfg = ex.config
    m, NC, W = cfg.chunk_len, ex.rsq.shape[0], ex.kw.shape[1]
    text.part("sort (the lab's sort_buckets)")
    text.show(
        "sticker", ex.sticker, "slot r*L+t of every sorted item: sorted by (round, bucket, t)"
    )
    text.show("st", ex.st, "st = sticker % L: the position of every sorted item")
    text.show("undo_sort", ex.undo_sort, "where each original slot went: o = so[undo_sort]")
    text.show("sq", ex.sq, "sorted queries sq = qk[st]; rows of one bucket are now neighbours")

    text.part("chunk and look back (the lab's dotandv, Step 1)")
    text.show("rsq", ex.rsq, f"sq cut into {NC} chunks of {m} queries (a chunk may mix buckets)")
    text.show("chunk positions", ex.qpos, "position of each query in each chunk")
    wrap = f" (chunk 0 looks back at chunk {NC - 1})" if cfg.chunks_before else ""
    text.show(
        "look-around chunks",
        ex.adj,
        f"chunk c also sees chunks c-{cfg.chunks_before}..c+{cfg.chunks_after}, cyclically "
        f"over all rounds{wrap}; the lab's dotandv leaves this out",
    )
    text.show(
        "look-back key positions",
        ex.kpos,
        f"positions of the W={W} keys each chunk's queries see (duplicates count twice)",
    )
    text.show(
        "look-back keys",
        ex.kw,
        "keys = the same rows, length-normalized: k / sqrt(mean(k^2) + 1e-6) / sqrt(d)",
    )
    text.show(
        "dotlike",
        ex.dotlike,
        "scores q.k of every chunk query against its window (the lab's is q.q within the "
        f"chunk only); {SELF_MASK_VALUE:g} marks the query's own position"
        + (f", {CAUSAL_MASK_VALUE:g} a future key" if cfg.causal else ""),
    )


def _render_rounds(text: _Text, ex: Explained) -> None:
    text.part("per-copy softmax (Steps 2-3)")
    text.show(
        "dotlike after softmax",
        ex.chunk_probs,
        "our_softmax: exp(dotlike - slogits), each row sums to 1 over its window",
    )
    text.show(
        "slogits",
        ex.slogits,
        "logsumexp of each row of dotlike = log Z, the log of that copy's softmax normalizer",
    )
    text.show("so", ex.so, "(dotlike after softmax) @ values of the window: one output per copy")

    text.part("undo the sort (Step 4)")
    text.show("o", ex.o, "o = so[undo_sort]: row r*L+t is position t's output in round r")
    text.show("logits", ex.logits, "logits = slogits[undo_sort]: log Z of position t in round r")

    text.part("combine the rounds (Step 5)")
    text.show("o", ex.o_rounds, "o reshaped to (n_hashes, L, d_v): one block per round")
    text.show("logits", ex.logits_rounds, "logits reshaped to (n_hashes, L, 1)")
    text.show(
        "probs",
        ex.probs,
        "exp(logits - logsumexp(logits, axis=0)): a softmax over rounds of the log Z's",
    )
    text.show("output", ex.out, "sum over rounds of probs * o")


def _render_query(text: _Text, ex: Explained, i: int) -> None:
    H, W, p = ex.config.n_hashes, ex.kw.shape[1], text.precision
    text.part("why a softmax over logits? one query in detail")
    sc = ex.union_scores[i].reshape(H, W)  # (H*W,) -> (H, W)
    text.say(f"query {i} (position {i}); Z_r = sum of exp(score) over its round-r window:")
    for r in range(H):
        text.say(f"  round {r}: keys {ex.windows[r, i].tolist()}")
        text.say(f"           scores {_fmt(sc[r], p)}")
        z_note = f" (times exp({ex.z_scale[i]:.6g}))" if ex.z_scale[i] else ""
        text.say(
            f"           Z_{r} = {ex.Z[r, i]:.{p}g}{z_note}, "
            f"log Z_{r} = {ex.logits_rounds[r, i, 0]:.{p}g} (= logits), "
            f"probs = {ex.probs[r, i, 0]:.{p}g}"
        )
    text.say(
        "  o_r = sum_j exp(s_j) v_j / Z_r, so probs_r * o_r = (Z_r / sum Z) * "
        "(sum_j exp(s_j) v_j / Z_r): Z_r cancels,"
    )
    text.say(
        "  and the sum over rounds is (all exp(s_j) v_j) / (all exp(s_j)): one softmax over "
        "every key copy seen."
    )
    text.say()


def _render_proof(text: _Text, ex: Explained) -> None:
    H, W = ex.config.n_hashes, ex.kw.shape[1]
    text.part("proof on this input")
    text.show(
        "windows",
        ex.windows,
        "key positions query i saw in round r (lshbench.core.sorting.window_positions)",
    )
    text.show(
        "C",
        ex.counts,
        "C[i, j] = how often key j appears in query i's windows over all rounds",
    )
    text.show(
        "union softmax",
        ex.union_out,
        f"ONE softmax over the {H}*{W} = {H * W} masked scores each query saw, times their values",
    )
    text.show("output", ex.out, "the combined output of Step 5 (as above)")
    ok = "yes" if ex.union_diff < 1e-12 else "NO"
    text.say(f"max |output - union softmax| = {ex.union_diff:.3e}   (below 1e-12: {ok})")
    grouped_diff = float(np.max(np.abs(ex.out - ex.grouped_out)))
    text.say(
        f"max |output - softmax_j(s_ij + log C_ij) @ v| = {grouped_diff:.3e}   "
        "(keys seen C times get a log C bonus)"
    )
    text.say()
    z_note = " (rows scaled by exp(-top score) where needed)" if ex.z_scale.any() else ""
    text.show("Z", ex.Z, f"Z[r, i] = sum of exp(score) over query i's round-r window{z_note}")
    text.show("Z_r / sum(Z)", ex.share, "each round's share of the union's normalizer")
    text.show("probs[r]", ex.probs[..., 0], "the round weights of Step 5 (as above)")
    text.say(f"max |probs[r] - Z_r / sum(Z)| = {ex.share_diff:.3e}")
    text.say()
    numpy_diff = float(np.max(np.abs(ex.out - ex.numpy_out)))
    dense_diff = float(np.max(np.abs(ex.out - ex.dense_out)))
    text.say(f"max |output - get_backend('numpy').attend| = {numpy_diff:.3e}")
    text.say(
        f"max |output - get_backend('dense').attend| = {dense_diff:.3e}   "
        "(0 only if every query saw every key equally often)"
    )
