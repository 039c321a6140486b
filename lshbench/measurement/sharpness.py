"""How peaked exact attention is, and the qk scale that makes it as peaked as asked.

The entropy of query i's exact attention ``a_i`` (docs/design.md section 2, step 8: the same key
normalization and masks as every backend) is ``-sum_j a_ij log a_ij`` in nats; the mean over
rows is the ``attn_entropy`` of the results. Scaling qk by ``beta`` changes no bucket but
multiplies every score by about ``beta``, so the mean row entropy falls monotonically from
its uniform value (``beta = 0``) towards 0: :func:`entropy_scale` finds ``beta`` for a target
by bisection on ``log beta``, on a subsample of rows, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lshbench.core.attention import mask_scores, normalize_keys
from lshbench.core.config import fail
from lshbench.core.dense import dense_probability_blocks

__all__ = [
    "bracket_log_scale",
    "entropy_scale",
    "max_mean_entropy",
    "mean_row_entropy",
    "regula_falsi",
    "row_entropies",
]

#: query rows (over the whole batch) the bisection measures; all rows when L * B is smaller
SAMPLE_ROWS = 1024
#: most bisection (regula falsi) steps on log(beta) after bracketing
BISECTION_STEPS = 40
#: stop once the sampled mean entropy is this close to the target (relative)
ENTROPY_RTOL = 1e-3
#: qk scales tried when bracketing: 4**-40 .. 4**14 (about 2.7e8)
_MIN_LOG4, _MAX_LOG4 = -40, 14


def _entropy(probs: np.ndarray) -> np.ndarray:
    """``-sum p log p`` over the last axis (``0 log 0 = 0``). (..., L) -> (...,)"""
    tiny = np.finfo(probs.dtype).tiny
    return -(probs * np.log(np.maximum(probs, tiny))).sum(axis=-1)


def row_entropies(qk: np.ndarray, causal: bool, rows: np.ndarray | None = None) -> np.ndarray:
    """Entropy (nats) of exact attention rows: qk (B, L, d) -> (B, n).

    rows: query positions (n,) to measure, each against all L keys; None: every position
    (n = L), through :func:`lshbench.core.dense.dense_probability_blocks`. A subset uses
    the same key normalization, masks and softmax on just those queries.
    """
    if rows is None:
        blocks = [_entropy(p) for _, _, p, _ in dense_probability_blocks(qk, causal)]
        return np.concatenate(blocks, axis=1)  # (B, L)
    rows = np.asarray(rows)
    keys_t = normalize_keys(qk).swapaxes(-1, -2)  # (B, L, d) -> (B, d, L)
    out = np.empty((qk.shape[0], rows.size), dtype=qk.dtype)  # (B, n)
    step = max(1, 2**21 // (qk.shape[0] * qk.shape[1]))
    for start in range(0, rows.size, step):
        pos = rows[start : start + step]  # (b,)
        scores = qk[:, pos] @ keys_t  # (B, b, d) @ (B, d, L) -> (B, b, L)
        mask_scores(scores, pos, np.arange(qk.shape[1]), causal)
        top = scores.max(axis=-1, keepdims=True)  # (B, b, 1)
        probs = np.exp(scores - top)  # (B, b, L), unnormalized
        norm = probs.sum(axis=-1)  # (B, b)
        # H = log Z - sum p s with p = exp(s) / Z (no log per key; masked keys have p = 0)
        mean_score = np.einsum("bql,bql->bq", probs, scores) / norm  # (B, b)
        out[:, start : start + step] = np.log(norm) + top[..., 0] - mean_score
    return out


def mean_row_entropy(qk: np.ndarray, causal: bool = False) -> float:
    """Mean exact row entropy (nats) over all B * L rows of qk (B, L, d), in float64."""
    return float(row_entropies(np.asarray(qk, dtype=np.float64), causal).mean())


def max_mean_entropy(seqlen: int, causal: bool) -> float:
    """Mean row entropy of uniform attention (``beta = 0``), the largest reachable.

    Non-causal: every query spreads over its L - 1 other keys, ``log(L - 1)``. Causal: query
    i over its i earlier keys (query 0 only itself, entropy 0), ``sum_i log(i) / L``.
    """
    if causal:
        return math.lgamma(seqlen) / seqlen
    return math.log(seqlen - 1) if seqlen > 1 else 0.0


def check_target_entropy(target: float, seqlen: int, causal: bool) -> float:
    """The target as a float, or ConfigError unless ``0 < target < max_mean_entropy``."""
    top = max_mean_entropy(seqlen, causal)
    ok = isinstance(target, (int, float, np.floating, np.integer)) and not isinstance(target, bool)
    if not ok or not 0.0 < float(target) < top:
        fail(
            "target_entropy",
            target,
            f"must be a number of nats in (0, {top:.4g}), the entropy of uniform attention "
            f"at L={seqlen}{' (causal)' if causal else ''}",
        )
    return float(target)


def entropy_scale(qk: np.ndarray, target: float, causal: bool, rng: np.random.Generator) -> float:
    """``beta`` such that ``beta * qk`` has mean exact row entropy ``target`` nats.

    qk: (B, L, d), float64. The mean is taken over ``SAMPLE_ROWS`` query rows (all rows
    when fewer) at positions drawn from rng, each against all L keys. Raises ConfigError
    for a target outside ``(0, max_mean_entropy)`` or one no scale up to ~1e8 reaches.
    """
    B, L, _ = qk.shape
    target = check_target_entropy(target, L, causal)
    n = min(L, -(-SAMPLE_ROWS // B))
    rows = np.arange(L) if n == L else np.sort(rng.choice(L, size=n, replace=False))  # (n,)

    def excess(log_beta: float) -> float:
        return float(row_entropies(math.exp(log_beta) * qk, causal, rows).mean()) - target

    found = bracket_log_scale(excess)
    if isinstance(found, str):
        fail("target_entropy", target, found)
    return math.exp(regula_falsi(excess, *found, ENTROPY_RTOL * target))


def bracket_log_scale(excess: Callable[[float], float]) -> tuple[float, float, float, float] | str:
    """``(lo, excess(lo), hi, excess(hi))``: adjacent powers of 4 (as logs) between which
    ``excess``, a decreasing function of ``log beta``, changes sign from + to -; or why
    there are none (the text of a ConfigError)."""
    step = math.log(4.0)
    k = 0  # bracket [4**(k-1), 4**k] with the excess positive at the low end
    high = excess(0.0)  # the excess at 4**k
    while high > 0:
        k += 1
        if k > _MAX_LOG4:
            return "not reached: qk would need a scale above 1e8"
        high = excess(k * step)
    while (low := excess((k - 1) * step)) < 0:
        k, high = k - 1, low
        if k < _MIN_LOG4:
            return "not reached: too close to uniform attention"
    return (k - 1) * step, low, k * step, high


def regula_falsi(
    f: Callable[[float], float], lo: float, low: float, hi: float, high: float, tol: float
) -> float:
    """A root of ``f`` in ``[lo, hi]`` where ``f(lo) = low > 0 > high = f(hi)``: regula falsi
    (Illinois variant: keeps bisection's bracket, steps along the slope) until
    ``|f| <= tol`` or :data:`BISECTION_STEPS` steps; the last point tried."""
    mid = hi
    side = 0  # which end moved last: +1 lo, -1 hi
    for _ in range(BISECTION_STEPS):
        mid = lo - low * (hi - lo) / (high - low)
        gap = f(mid)
        if abs(gap) <= tol:
            break
        if gap > 0:
            lo, low = mid, gap
            high = high / 2 if side == 1 else high
            side = 1
        else:
            hi, high = mid, gap
            low = low / 2 if side == -1 else low
            side = -1
    return mid
