"""The ``positional`` input: attention that puts a chosen share of its mass near the query.

Shared-QK attention scores a query against the length-normalized queries themselves, so
position can only enter through the vectors. A token is

    x_j = normalize(cos(theta) u_j + sin(theta) p_j)

with ``u_j`` the unit content vector of ``peaked`` (Zipf-sized clusters) and ``p_j`` a unit
**position vector**: a smooth random curve on the sphere, ``p_j = normalize(sum_b
g((j - b s) / s) e_b)`` over bumps ``b`` spaced ``s = window / 6`` tokens apart, with
``g(t) = exp(-t^2 / 2)`` and i.i.d. random unit directions ``e_b`` in R^d. Then
``p_i . p_j`` is about ``exp(-(i - j)^2 / (4 s^2))`` (1 at the query, 0.1 at the window's
edge ``|i - j| = window / 2``) plus the ``O(1 / sqrt(d))`` overlap of random directions
far away. ``qk_j = beta x_j``: ``theta`` moves mass from the content clusters to the
neighbours, ``beta`` sharpens both; :func:`calibrate` finds the pair for which the mean
**local share** (a query's exact attention mass on keys with ``0 < |i - j| <= window / 2``,
the same masks as the dense backend) is the asked share and the mean row entropy the asked
entropy. Share 0 is ``theta = 0``: exactly ``peaked``. A share above what pure position
(``theta = pi / 2``) gives at that entropy is not reachable: the input is then pure
position, and its measured share (:func:`local_share`) says how local it is.
"""

from __future__ import annotations

import math

import numpy as np

from lshbench.core.attention import mask_scores, normalize_keys
from lshbench.core.config import fail
from lshbench.measurement.sharpness import ENTROPY_RTOL, bracket_log_scale, regula_falsi

__all__ = [
    "POSITIONAL_WINDOW",
    "calibrate",
    "local_share",
    "position_vectors",
]

#: width of the neighbourhood (tokens) the local share counts: keys with
#: ``0 < |i - j| <= POSITIONAL_WINDOW / 2`` (the quick grid's chunk length)
POSITIONAL_WINDOW = 64
#: at most this many scores (sampled query rows x L keys) are held while calibrating
_MAX_SCORES = 2**24
#: query rows the calibration measures at most (over the whole batch)
_SAMPLE_ROWS = 1024
#: stop once the sampled share is this close to its target (absolute; the entropy: as
#: ``peaked``'s, :data:`lshbench.measurement.sharpness.ENTROPY_RTOL`)
_SHARE_ATOL = 2e-3


def position_vectors(
    rng: np.random.Generator, seqlen: int, d: int, window: int = POSITIONAL_WINDOW
) -> np.ndarray:
    """Unit position vectors ``p (L, d)`` (float64) whose dot products peak at nearby
    positions: ``p_i . p_j`` about ``exp(-(i - j)^2 / (4 s^2))``, ``s = window / 6``."""
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 2:
        fail("local_window", window, "must be an integer >= 2 (tokens)")
    s = window / 6.0
    n_bumps = math.ceil(seqlen / s) + 1
    pad = 4  # bumps beyond the sequence's ends, so the first and last tokens are alike
    e = rng.standard_normal((n_bumps + 2 * pad, d))  # (nb, d)
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    pos = np.arange(seqlen, dtype=np.float64)  # (L,)
    nearest = np.floor(pos / s).astype(np.int64)  # (L,), the bump at or before each token
    p = np.zeros((seqlen, d))  # (L, d)
    for k in range(-pad + 1, pad + 1):  # bumps within 4 s of the token
        b = nearest + k  # (L,)
        weight = np.exp(-0.5 * ((pos - b * s) / s) ** 2)  # (L,)
        p += weight[:, None] * e[b + pad]  # (L, 1) * (L, d) -> (L, d)
    p /= np.linalg.norm(p, axis=-1, keepdims=True)
    return p


def _mix(u: np.ndarray, p: np.ndarray, theta: float) -> np.ndarray:
    """``normalize(cos(theta) u + sin(theta) p)``: (B, L, d), (L, d) -> (B, L, d)."""
    x = math.cos(theta) * u + math.sin(theta) * p  # (B, L, d) + (L, d) -> (B, L, d)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


class _Rows:
    """Cosine scores of sampled query rows against every key, their masks and local band.

    cos: (B, n, L) ``x_i . normalize(x_j)`` with masked entries at the mask values; near:
    (n, L) whether key j is in query i's window (and not masked)."""

    def __init__(self, x: np.ndarray, rows: np.ndarray, causal: bool, half: int) -> None:
        keys = np.arange(x.shape[1])  # (L,)
        keys_t = normalize_keys(x).swapaxes(-1, -2)  # (B, L, d) -> (B, d, L)
        self.cos = x[:, rows] @ keys_t  # (B, n, d) @ (B, d, L) -> (B, n, L)
        mask_scores(self.cos, rows, keys, causal)
        gap = keys[None, :] - rows[:, None]  # (n, L)
        self.near = (gap != 0) & (np.abs(gap) <= half)  # (n, L)
        if causal:
            self.near &= gap < 0

    def stats(self, beta: float) -> tuple[float, float]:
        """(mean row entropy in nats, mean local share) of ``softmax(beta * cos)``."""
        scores = beta * self.cos  # (B, n, L); masked entries stay far below the rest
        np.maximum(scores, -1e30, out=scores)
        top = scores.max(axis=-1, keepdims=True)  # (B, n, 1)
        probs = np.exp(scores - top)  # (B, n, L), unnormalized
        norm = probs.sum(axis=-1)  # (B, n)
        mean_score = np.einsum("bql,bql->bq", probs, scores) / norm  # (B, n)
        entropy = np.log(norm) + top[..., 0] - mean_score  # (B, n)
        share = np.where(self.near, probs, 0.0).sum(axis=-1) / norm  # (B, n)
        return float(entropy.mean()), float(share.mean())


def _sample_rows(batch: int, seqlen: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted query positions (n,) the calibration measures (all when few)."""
    n = min(seqlen, -(-_SAMPLE_ROWS // batch), max(1, _MAX_SCORES // (batch * seqlen)))
    if n == seqlen:
        return np.arange(seqlen)
    return np.sort(rng.choice(seqlen, size=n, replace=False))


def _beta_for_entropy(rows: _Rows, target: float) -> float | None:
    """``beta`` with mean entropy ``target`` over ``rows`` (regula falsi on log beta, as
    ``peaked``'s); None when no beta up to ~1e8 sharpens the rows that far (ties that never
    break)."""

    def excess(log_beta: float) -> float:
        return rows.stats(math.exp(log_beta))[0] - target

    found = bracket_log_scale(excess)
    if isinstance(found, str):
        return None
    return math.exp(regula_falsi(excess, *found, ENTROPY_RTOL * target))


def calibrate(
    u: np.ndarray,
    p: np.ndarray,
    share: float,
    entropy: float,
    causal: bool,
    rng: np.random.Generator,
    window: int = POSITIONAL_WINDOW,
) -> np.ndarray:
    """``qk (B, L, d) = beta * normalize(cos(theta) u + sin(theta) p)`` at the asked local
    share and mean row entropy (nats), measured on sampled query rows (see the module
    docstring). u: (B, L, d) unit content vectors; p: (L, d) unit position vectors. The
    entropy must be reachable (checked by the caller); ConfigError when it is not reached
    even by pure content."""
    rows = _sample_rows(u.shape[0], u.shape[1], rng)
    half = window // 2
    found: dict[float, tuple[float, float]] = {}  # theta -> (beta, measured share)

    def shortfall(theta: float) -> float:
        """How far the share at ``theta`` (beta calibrated) is below the target; -1 where
        the entropy cannot be reached (too positional: ties that never break)."""
        if theta not in found:
            sample = _Rows(_mix(u, p, theta), rows, causal, half)
            beta = _beta_for_entropy(sample, entropy)
            if beta is None:
                return -1.0
            found[theta] = (beta, sample.stats(beta)[1])
        return share - found[theta][1]

    lo, hi = 0.0, math.pi / 2
    if (low := shortfall(lo)) == -1.0 and lo not in found:
        fail("target_entropy", entropy, "not reached: qk would need a scale above 1e8")
    if low > 0:
        while (high := shortfall(hi)) == -1.0 and hi not in found:
            hi = (lo + hi) / 2  # pure position ties its two neighbours: back off
        if high < 0:
            regula_falsi(shortfall, lo, low, hi, high, _SHARE_ATOL)
    theta = min(found, key=lambda t: (abs(share - found[t][1]), t))
    return found[theta][0] * _mix(u, p, theta)


def local_share(qk: np.ndarray, causal: bool = False, window: int = POSITIONAL_WINDOW) -> float:
    """Mean exact attention mass (over all B * L rows of qk (B, L, d)) on keys with
    ``0 < |i - j| <= window / 2`` (causal: the ``window / 2`` keys before the query), with
    the dense backend's key normalization and masks; in float64."""
    qk = np.asarray(qk, dtype=np.float64)
    B, L, _ = qk.shape
    step = max(1, 2**22 // (B * L))
    total = 0.0
    for start in range(0, L, step):
        rows = np.arange(start, min(L, start + step))  # (n,)
        total += _Rows(qk, rows, causal, window // 2).stats(1.0)[1] * B * rows.size
    return total / (B * L)
