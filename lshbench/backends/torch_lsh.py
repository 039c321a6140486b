"""LSH self-attention in torch: the numpy pipeline on any torch device, differentiable.

The steps and names are those of :mod:`lshbench.backends.numpy_lsh` (docs/design.md
section 2, steps 1-7, and the variants of section 2b): hash by matmul + argmax, a stable sort
of the (round, position) slots, chunks gathered with their look-around, masked scores, a
per-round softmax keeping its logsumexp, the undo of the sort and the softmax over rounds.
Shapes: B batch, L positions, d query/key size, dv value size, H rounds, m chunk length,
NC = H*L/m chunks over all rounds, A = 1 + chunks_before + chunks_after, W = A*m.

:func:`attend_torch` takes and returns torch tensors on any device and is differentiable in
``qk`` and ``v`` (the bucket choice is discrete and has no gradient, as in the paper), for use
inside a model (docs/design.md section 9). :class:`TorchLSHBackend` is the numpy-in,
numpy-out backend on the CPU.

Queries and keys are taken in separate steps (``_queries_and_keys``): the keys are the
shared vectors length-normalized (once per position, before the H-fold gather), gathered in
the same sorted order as the queries. Without autograd (``torch.no_grad``, or inputs that
need no gradient) the masks and the softmax work in place.

What runs on the host: the ``random`` method's buckets (drawn by numpy from a seed digested
from the rotations, so every backend draws alike) and the ``count-once`` multiplicities
(:func:`lshbench.core.sorting.window_multiplicities` on the buckets); both are integer
arrays without gradient, moved to the device afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lshbench.backends.base import Backend
from lshbench.backends.torch_ops import normalize_keys_torch
from lshbench.core.attention import CAUSAL_MASK_VALUE, SELF_MASK_VALUE
from lshbench.core.config import LSHConfig, fail
from lshbench.core.hashing import _pipeline_buckets
from lshbench.core.sorting import window_multiplicities
from lshbench.core.validation import check_config, check_rotations

__all__ = ["TorchLSHBackend", "attend_torch", "lsh_attention_torch"]

#: dtypes attend_torch accepts; float16 and bfloat16 are meant for accelerators
TORCH_DTYPES = ("float32", "float64", "float16", "bfloat16")


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision of the per-round logsumexps, which the round combine compares: float64 for
    float32/float64 input (as the numpy backend), float32 for half precisions."""
    return torch.float64 if dtype in (torch.float32, torch.float64) else torch.float32


def _score_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision of masked scores and softmax: the input's, float32 for half precisions
    (whose range holds neither mask value, -1e5 and -1e9)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _argmax_plus_minus(proj: torch.Tensor) -> torch.Tensor:
    """``argmax(concat([proj, -proj], -1), -1)``, first index winning ties (as
    :func:`lshbench.core.hashing.argmax_plus_minus`). proj: (..., k) -> int64 (...)."""
    hi = proj.argmax(dim=-1)  # (...)
    lo = proj.argmin(dim=-1)  # (...)
    hi_val = proj.gather(-1, hi[..., None])[..., 0]  # (...)
    lo_val = proj.gather(-1, lo[..., None])[..., 0]  # (...)
    return torch.where(hi_val >= -lo_val, hi, lo + proj.shape[-1])


def _buckets(qk: torch.Tensor, rotations: torch.Tensor, config: LSHConfig) -> torch.Tensor:
    """Pipeline buckets int64 (B, rounds, L) on qk's device, round offsets not added.

    qk: (B, L, d); rotations: (d, n_hashes, rot_size // 2) in qk's dtype and device.
    ``lsh`` hashes on the device; ``random`` and ``local`` are the numpy draws/zeros of
    :func:`lshbench.core.hashing.pipeline_buckets`.
    """
    if config.method != "lsh":
        q_np = np.zeros((qk.shape[0], qk.shape[1], 1))  # only B and L are read
        rot_np = rotations.detach().to("cpu", torch.float64).numpy()
        return torch.from_numpy(_pipeline_buckets(q_np, rot_np, config)).to(qk.device)
    x = qk.detach()
    B, L, d = x.shape
    H = config.n_hashes
    # (B, L, d) @ (d, H*rot/2) -> (B, L, H*rot/2) -> (B, L, H, rot/2)
    proj = (x @ rotations.reshape(d, -1)).reshape(B, L, H, -1)
    buckets = torch.zeros((B, L, H), dtype=torch.int64, device=x.device)
    col, scale = 0, 1
    for f in config.factors:
        buckets += scale * _argmax_plus_minus(proj[..., col : col + f // 2])  # (B, L, H)
        col += f // 2
        scale *= f
    return buckets.transpose(1, 2).contiguous()  # (B, L, H) -> (B, H, L)


def _mask(
    scores: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor, causal: bool
) -> torch.Tensor:
    """Mask scores (..., q, k) in place and return them; qpos (..., q), kpos (..., k): causal
    keys after the query -> -1e9, then the query's own position -> -1e5 (set, not added)."""
    qp = qpos[..., :, None]  # (..., q, 1)
    kp = kpos[..., None, :]  # (..., 1, k)
    # in place is safe under autograd too: the product's backward does not read its output
    if causal:
        scores.masked_fill_(kp > qp, CAUSAL_MASK_VALUE)
    return scores.masked_fill_(kp == qp, SELF_MASK_VALUE)


def _softmax_with_lse(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (..., k) -> (probs (..., k) in scores' dtype, lse (...) in :func:`_lse_dtype`).

    ``exp(s - max) / sum`` and ``lse = max + log(sum)``, as
    :func:`lshbench.core.attention.softmax_with_lse`.
    """
    top = scores.amax(dim=-1, keepdim=True).detach()  # (..., 1); exact gradient either way
    if scores.requires_grad:
        e = torch.exp(scores - top)  # (..., k)
    else:  # nothing to differentiate: reuse the scores' memory
        e = scores.sub_(top).exp_()  # (..., k)
    norm = e.sum(dim=-1, keepdim=True)  # (..., 1)
    lse_dtype = _lse_dtype(scores.dtype)
    lse = top[..., 0].to(lse_dtype) + torch.log(norm[..., 0].to(lse_dtype))  # (...)
    return (e / norm if scores.requires_grad else e.div_(norm)), lse


def _combine(round_out: torch.Tensor, round_lse: torch.Tensor) -> torch.Tensor:
    """round_out (B, H, L, dv), round_lse (B, H, L) -> (B, L, dv): softmax over rounds."""
    w = torch.exp(round_lse - round_lse.amax(dim=1, keepdim=True))  # (B, H, L)
    w = (w / w.sum(dim=1, keepdim=True)).to(round_out.dtype)
    return (w[..., None] * round_out).sum(dim=1)  # (B, H, L, dv) -> (B, L, dv)


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, c), index (B, K) int64 in [0, N) -> (B, K, c): ``x[b, index[b, k]]``.

    One ``index_select`` of whole rows over the flattened batch (a row copy per index, where
    ``gather`` would index every element)."""
    B, N, c = x.shape
    offsets = torch.arange(B, device=x.device)[:, None] * N  # (B, 1)
    flat = (index + offsets).reshape(-1)  # (B*K,)
    return x.reshape(B * N, c).index_select(0, flat).reshape(B, -1, c)  # (B*N, c) -> (B, K, c)


def _look_around(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """x (B, NC, m, c) -> (B, NC, A*m, c): chunk c's window is chunks c-before..c+after,
    cyclic over all NC chunks (:func:`lshbench.core.sorting.adjacent_chunks` order).

    One ``index_select`` of whole chunks, each window written once."""
    B, NC, m, c = x.shape
    offsets = torch.arange(-before, after + 1, device=x.device)  # (A,)
    adj = (torch.arange(NC, device=x.device)[:, None] + offsets) % NC  # (NC, A)
    flat = (torch.arange(B, device=x.device)[:, None, None] * NC + adj).reshape(-1)  # (B*NC*A,)
    # (B*NC, m*c) rows -> (B*NC*A, m*c) -> (B, NC, A*m, c)
    return x.reshape(B * NC, m * c).index_select(0, flat).reshape(B, NC, -1, c)


def _queries_and_keys(qk: torch.Tensor, st: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted queries and keys: qk (B, L, d), st (B, H*L) -> two (B, H*L, d).

    Keys are the shared vectors length-normalized (queries are not).
    """
    sq = _gather_rows(qk, st)  # (B, H*L, d)
    return sq, _gather_rows(normalize_keys_torch(qk), st)  # keys: (B, L, d) -> (B, H*L, d)


def lsh_attention_torch(
    qk: torch.Tensor, v: torch.Tensor, config: LSHConfig, rotations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunked pipeline on checked tensors (the caller takes the short path, if any):
    qk (B, L, d), v (B, L, dv), rotations (d, n_hashes, rot_size // 2) in qk's dtype, all on
    one device, ``rounds * L`` divisible by the sort chunk length.

    Returns ``(round_out (B, H, L, dv), round_lse (B, H, L), buckets (B, H, L))`` with
    H = ``config.rounds``, as :func:`lshbench.backends.numpy_lsh.lsh_attention`.
    """
    B, L, d = qk.shape
    dv = v.shape[-1]
    pc = config.pipeline_config()
    H, m = pc.n_hashes, pc.chunk_len
    NC = pc.n_chunks(L)
    dev = qk.device

    # Step 1, buckets (no gradient: the choice is discrete).
    buckets = _buckets(qk, rotations, config)  # (B, H, L)

    # Step 2, stable sort of the round-major slots by offset bucket (positions ascend).
    offsets = torch.arange(H, device=dev, dtype=torch.int64)[:, None] * pc.total_buckets  # (H, 1)
    key = (buckets + offsets).reshape(B, H * L)  # (B, H*L)
    perm = torch.argsort(key, dim=-1, stable=True)  # (B, H*L)
    undo_sort = torch.empty_like(perm).scatter_(
        1, perm, torch.arange(H * L, device=dev).expand(B, -1)
    )  # (B, H*L)
    st = perm % L  # (B, H*L) position of every sorted slot

    # Step 3, chunks and their look-around windows.
    sq, sk = _queries_and_keys(qk, st)  # (B, H*L, d) each
    sv = _gather_rows(v, st)  # (B, H*L, dv)
    rsq = sq.reshape(B, NC, m, d)  # (B, H*L, d) -> (B, NC, m, d)
    rsk = sk.reshape(B, NC, m, d)  # (B, H*L, d) -> (B, NC, m, d)
    rsv = sv.reshape(B, NC, m, dv)  # (B, H*L, dv) -> (B, NC, m, dv)
    qpos = st.reshape(B, NC, m)  # (B, NC, m)
    before, after = pc.chunks_before, pc.chunks_after
    kw = _look_around(rsk, before, after)  # (B, NC, W, d)
    vw = _look_around(rsv, before, after)  # (B, NC, W, dv)
    kpos = _look_around(qpos[..., None], before, after)[..., 0]  # (B, NC, W)

    # Step 4, scores: (B, NC, m, d) @ (B, NC, d, W) -> (B, NC, m, W), masked.
    scores = (rsq @ kw.transpose(-1, -2)).to(_score_dtype(qk.dtype))
    dotlike = _mask(scores, qpos, kpos, config.causal)
    if config.weighting == "count-once":
        C = window_multiplicities(buckets.cpu().numpy(), config)  # (B, H, L, W) position order
        logc = torch.from_numpy(np.log(C.reshape(B, H * L, -1))).to(dev, dotlike.dtype)
        logc = _gather_rows(logc, perm)  # sorted order (B, H*L, W)
        dotlike = dotlike - logc.reshape(B, NC, m, -1)  # (B, H*L, W) -> (B, NC, m, W)

    # Step 5, per-copy softmax and its logsumexp.
    probs, slogits = _softmax_with_lse(dotlike)  # (B, NC, m, W), (B, NC, m)
    so = probs.to(v.dtype) @ vw  # (B, NC, m, W) @ (B, NC, W, dv) -> (B, NC, m, dv)

    # Step 6, undo the sort.
    o = _gather_rows(so.reshape(B, H * L, dv), undo_sort)  # (B, NC, m, dv) -> (B, H*L, dv)
    logits = slogits.reshape(B, H * L).gather(1, undo_sort)  # (B, NC, m) -> (B, H*L)
    return o.reshape(B, H, L, dv), logits.reshape(B, H, L), buckets


def dense_attention_torch(qk: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Exact attention with the section-2 masks (the short path ``L <= chunk_len``):
    qk (B, L, d), v (B, L, dv) -> (B, L, dv)."""
    L = qk.shape[1]
    pos = torch.arange(L, device=qk.device)  # (L,)
    # (B, L, d) @ (B, d, L) -> (B, L, L)
    scores = (qk @ normalize_keys_torch(qk).transpose(-1, -2)).to(_score_dtype(qk.dtype))
    probs, _ = _softmax_with_lse(_mask(scores, pos, pos, causal))  # (B, L, L)
    return probs.to(v.dtype) @ v  # (B, L, L) @ (B, L, dv) -> (B, L, dv)


def _check_tensor(field: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        fail(field, type(x).__name__, "must be a torch.Tensor")
    if x.ndim not in (2, 3):
        fail(f"{field}.shape", tuple(x.shape), "must be (L, d) or (B, L, d)")
    if str(x.dtype).removeprefix("torch.") not in TORCH_DTYPES:
        fail(f"{field}.dtype", str(x.dtype), f"must be one of {', '.join(TORCH_DTYPES)}")
    if 0 in x.shape:
        fail(f"{field}.shape", tuple(x.shape), "must have no empty axis")
    if x.device.type != "meta" and not bool(torch.isfinite(x).all()):  # meta: no values
        fail(field, "tensor with NaN or Inf", "all values must be finite")
    return x


def _device_rotations(rotations: Any, qk: torch.Tensor, config: LSHConfig) -> torch.Tensor:
    """Rotations (numpy or torch) checked, cast to qk's dtype (as every backend holds them) and
    moved to qk's device: (d, n_hashes, rot_size // 2)."""
    if isinstance(rotations, torch.Tensor):
        rotations = rotations.detach().to("cpu", torch.float64).numpy()
    rot = check_rotations(rotations, qk.shape[-1], config, np.dtype(np.float64))
    return torch.from_numpy(rot).to(qk.device, qk.dtype)


def attend_torch(
    qk: torch.Tensor, v: torch.Tensor, config: LSHConfig, rotations: Any
) -> torch.Tensor:
    """Shared-QK LSH attention of torch tensors, differentiable in ``qk`` and ``v``.

    qk: (L, d) or (B, L, d); v: (L, dv) or (B, L, dv) on the same device, same dtype
    (float32, float64, float16 or bfloat16); rotations (d, n_hashes, rot_size // 2), numpy
    or torch, moved to qk's device. Returns (L, dv) or (B, L, dv) on qk's device in its
    dtype. ``L <= sort_chunk_len`` is exact attention (docs/design.md section 2).
    Raises ConfigError on invalid input before any work is done.
    """
    config = check_config(config)
    if config.separate:
        fail("qk", config.qk, "attend_torch computes shared queries/keys only")
    qk = _check_tensor("qk", qk)
    v = _check_tensor("v", v)
    if qk.ndim != v.ndim or qk.shape[:-1] != v.shape[:-1]:
        fail(
            "v.shape", tuple(v.shape), f"must match qk.shape {tuple(qk.shape)} except the last axis"
        )
    if v.dtype != qk.dtype:
        fail("v.dtype", str(v.dtype), f"must equal qk.dtype ({qk.dtype})")
    if v.device != qk.device:
        fail("v.device", str(v.device), f"must equal qk.device ({qk.device})")
    batched = qk.ndim == 3
    qk3 = qk if batched else qk[None]  # (B, L, d)
    v3 = v if batched else v[None]  # (B, L, dv)
    L = qk3.shape[1]
    config.check_seqlen(L)
    rot = _device_rotations(rotations, qk3, config)  # (d, H, rot_size // 2)
    if config.is_short(L):
        out = dense_attention_torch(qk3, v3, config.causal)
    else:
        o, lse, _ = lsh_attention_torch(qk3, v3, config, rot)
        out = _combine(o, lse)  # (B, H, L, dv) -> (B, L, dv)
    return out if batched else out[0]


class TorchLSHBackend(Backend):
    """LSH attention written in torch (CPU here; :func:`attend_torch` on any device)."""

    name = "torch-lsh"
    description = "LSH attention in torch: vectorized like numpy, differentiable, any device"

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        assert rotations is not None  # a hashing backend: Backend.attend checked them
        rot = torch.from_numpy(np.ascontiguousarray(rotations, dtype=qk.dtype))  # (d, H, rot/2)
        with torch.no_grad():
            o, lse, _ = lsh_attention_torch(torch.from_numpy(qk), torch.from_numpy(v), config, rot)
            out = _combine(o, lse)  # (B, L, dv)
        return out.numpy()

    def forward_torch(self, qk: Any, v: Any, config: LSHConfig, rotations: Any) -> Any:
        """:func:`attend_torch` on (B, L, d), (B, L, dv) tensors (differentiable)."""
        return attend_torch(qk, v, config, rotations)
