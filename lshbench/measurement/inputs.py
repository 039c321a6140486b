"""Seeded input generators for the sweep (docs/design.md section 5, ``--input``).

Every generator returns ``qk (B, L, d)`` and ``v (B, L, dv)`` drawn in float64 from
``numpy.random.default_rng(seed)`` and then cast to ``dtype``, so a float32 and a float64
cell with the same seed see the same numbers (rounded). The values are O(1):

``gaussian``
    i.i.d. standard normal qk and v. A query's scores against the length-normalized keys
    are about N(0, 1), so attention is spread over many keys: the hard case for LSH.
``clustered``
    ``k = max(1, round(L / cluster_size))`` centroids drawn i.i.d. N(0, 1) in R^d
    (``cluster_size`` = 32 tokens on average by default, so clusters stay small at every L);
    every token is a uniformly chosen centroid plus N(0, noise^2) noise (``noise`` = 0.3).
    Tokens of one cluster score about ``|q| ~ sqrt(d)`` against each other and about
    N(0, 1) against the rest, so attention is peaky: concentrated on the few tokens of the
    own cluster, which LSH hashes into one bucket. v is i.i.d. standard normal.
``duplicate``
    The paper's synthetic task (Reformer, section 5): positions ``L//2 .. 2*(L//2)-1`` copy
    positions ``0 .. L//2-1`` of a gaussian sequence, in qk and in v (an odd L leaves the last
    row unpaired). The ideal query attends to its copy: it is its highest-scoring key, and the
    two always share a bucket, so top-1 agreement measures whether LSH finds it.
    ``target_entropy`` (nats) scales qk so the copy is attended that sharply; the copy of
    each position is :func:`lshbench.measurement.tasks.duplicate_copy_index`.
``peaked``
    Attention of a chosen sharpness, shaped like trained heads (a few keys carry most of a
    query's mass, some queries broad). ``k = max(1, round(L / cluster_size))`` unit centroids
    ``c`` (shared by the batch); cluster ``a`` is drawn with probability proportional to
    ``(a + 1) ** -1.1`` (Zipf(1.1) cluster sizes: a few clusters hold many tokens); token
    ``u_j = normalize(c_a(j) + sigma xi_j)`` with ``xi ~ N(0, I/d)`` and sigma = 0.5 (cosine
    about 0.8 within a cluster); ``qk_j = beta u_j`` with beta found by bisection so that
    the mean exact row entropy (same attention as the dense backend, ``causal`` masks
    included) is ``target_entropy`` nats (default 2.0). Values
    ``v_j = rho w_a(j) + sqrt(1 - rho**2) eta_j`` with per-cluster ``w ~ N(0, I)`` and
    noise ``eta ~ N(0, I)``, rho = ``value_corr`` in [0, 1] (default 0: independent of qk,
    as in the other generators). The same seed gives the same qk for every rho.
``positional``
    ``peaked`` plus position: a share ``local_share`` in [0, 1] (default 0.5) of each
    query's exact attention mass lies on its neighbours (keys within ``local_window / 2`` =
    32 tokens of it), the rest on its content cluster, at mean row entropy
    ``target_entropy`` (default 2.0 nats). Tokens mix ``peaked``'s content vectors with
    position vectors whose dot products peak at nearby positions, and the mix and the scale
    are calibrated together: :mod:`lshbench.measurement.positional`. Share 0 is ``peaked``
    (the same numbers for the same seed); a share above what pure position reaches at that
    entropy gives pure position. Values as ``peaked`` (``value_corr``).
"""

from __future__ import annotations

import numpy as np

from lshbench.core.config import fail
from lshbench.measurement.positional import POSITIONAL_WINDOW, calibrate, position_vectors
from lshbench.measurement.sharpness import check_target_entropy, entropy_scale

__all__ = ["GENERATORS", "make_inputs"]

#: every generator :func:`make_inputs` knows
GENERATORS = ("gaussian", "clustered", "duplicate", "peaked", "positional")

#: defaults of the ``clustered`` distribution
CLUSTER_SIZE = 32
CLUSTER_NOISE = 0.3

#: defaults of the ``peaked`` distribution: target mean row entropy (nats), Zipf exponent
#: of the cluster sizes, token spread around the unit centroids
PEAKED_ENTROPY = 2.0
PEAKED_ZIPF = 1.1
PEAKED_NOISE = 0.5
#: default share of exact attention mass on a query's neighbours (``positional``)
POSITIONAL_SHARE = 0.5
#: the generators that take ``target_entropy`` and ``value_corr`` (``peaked``'s knobs)
_PEAKED_KINDS = ("peaked", "positional")


def make_inputs(
    kind: str,
    batch: int,
    seqlen: int,
    d: int,
    dv: int | None = None,
    seed: int = 0,
    dtype: np.dtype | type | str = np.float32,
    *,
    cluster_size: int = CLUSTER_SIZE,
    noise: float = CLUSTER_NOISE,
    target_entropy: float | None = None,
    value_corr: float = 0.0,
    local_share: float | None = None,
    local_window: int = POSITIONAL_WINDOW,
    causal: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(qk (batch, seqlen, d), v (batch, seqlen, dv))`` of distribution ``kind``.

    dv defaults to d. Both arrays are C-contiguous in ``dtype`` (float32 or float64) and
    reproducible from ``seed``. ``cluster_size``: mean tokens per cluster (clustered,
    peaked, positional); ``noise``: clustered's token noise. ``target_entropy`` (nats;
    peaked and positional, where None means :data:`PEAKED_ENTROPY`, and duplicate, where
    None leaves qk unscaled): the mean exact row entropy qk is scaled to, measured with the
    ``causal`` masks. ``value_corr`` (peaked, positional): rho in [0, 1]. ``local_share``
    (positional; None means :data:`POSITIONAL_SHARE`) in [0, 1] and ``local_window``
    (tokens, even, >= 2): the share of mass on keys within ``local_window / 2`` of the
    query. Raises ConfigError for an unknown kind, bad sizes, or a knob the kind does not
    take.
    """
    if kind not in GENERATORS:
        fail("input", kind, f"must be one of {', '.join(GENERATORS)}")
    for field, value in (("batch", batch), ("seqlen", seqlen), ("d", d)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            fail(field, value, "must be an integer >= 1")
    dv = d if dv is None else dv
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        fail("dtype", str(dtype), "must be float32 or float64")
    _check_knobs(kind, seqlen, target_entropy, value_corr, causal)
    share = _check_share(kind, local_share, local_window)
    rng = np.random.default_rng(seed)
    if kind in _PEAKED_KINDS:
        entropy = PEAKED_ENTROPY if target_entropy is None else target_entropy
        # position vectors come from a stream of their own: share 0 draws what peaked does
        pos_rng = rng.spawn(1)[0]
        qk, v = _peaked(rng, batch, seqlen, d, dv, cluster_size, value_corr)
        if kind == "peaked" or share == 0.0:
            qk *= entropy_scale(qk, entropy, causal, rng)
        else:
            p = position_vectors(pos_rng, seqlen, d, local_window)  # (L, d)
            qk = calibrate(qk, p, share, entropy, causal, rng, local_window)
    elif kind == "clustered":
        n_clusters = max(1, round(seqlen / cluster_size))
        centroids = rng.standard_normal((n_clusters, d))  # (k, d)
        assign = rng.integers(0, n_clusters, size=(batch, seqlen))  # (B, L)
        qk = centroids[assign] + noise * rng.standard_normal((batch, seqlen, d))  # (B, L, d)
        v = rng.standard_normal((batch, seqlen, dv))  # (B, L, dv)
    else:
        qk = rng.standard_normal((batch, seqlen, d))  # (B, L, d)
        v = rng.standard_normal((batch, seqlen, dv))  # (B, L, dv)
        if kind == "duplicate":
            half = seqlen // 2
            qk[:, half : 2 * half] = qk[:, :half]
            v[:, half : 2 * half] = v[:, :half]
            if target_entropy is not None:
                qk *= entropy_scale(qk, target_entropy, causal, rng)
    return np.ascontiguousarray(qk, dtype=dtype), np.ascontiguousarray(v, dtype=dtype)


def _check_knobs(
    kind: str, seqlen: int, target_entropy: float | None, value_corr: float, causal: bool
) -> None:
    """ConfigError for a knob ``kind`` does not take or a value out of its range."""
    if not isinstance(causal, (bool, np.bool_)):
        fail("causal", causal, "must be True or False")
    if target_entropy is not None:
        if kind not in (*_PEAKED_KINDS, "duplicate"):
            fail(
                "target_entropy",
                target_entropy,
                f"applies to peaked, positional and duplicate, not {kind}",
            )
        check_target_entropy(target_entropy, seqlen, bool(causal))
    elif kind in _PEAKED_KINDS:
        check_target_entropy(PEAKED_ENTROPY, seqlen, bool(causal))
    rho_ok = isinstance(value_corr, (int, float, np.integer, np.floating)) and not isinstance(
        value_corr, bool
    )
    if not rho_ok or not 0.0 <= float(value_corr) <= 1.0:
        fail("value_corr", value_corr, "must be a number in [0, 1]")
    if value_corr != 0 and kind not in _PEAKED_KINDS:
        fail("value_corr", value_corr, f"applies to peaked and positional, not {kind}")


def _check_share(kind: str, share: float | None, window: int) -> float:
    """The local share of a ``positional`` input (its default when None); ConfigError for a
    share out of [0, 1], a window that is not an even integer >= 2, or a share given to
    another kind."""
    if share is None:
        share = POSITIONAL_SHARE if kind == "positional" else 0.0
    elif kind != "positional":
        fail("local_share", share, f"applies to positional, not {kind}")
    ok = isinstance(share, (int, float, np.integer, np.floating)) and not isinstance(share, bool)
    if not ok or not 0.0 <= float(share) <= 1.0:
        fail("local_share", share, "must be a number in [0, 1]")
    window_ok = isinstance(window, (int, np.integer)) and not isinstance(window, bool)
    if not window_ok or window < 2 or window % 2:
        fail("local_window", window, "must be an even integer >= 2 (tokens)")
    return float(share)


def _peaked(
    rng: np.random.Generator,
    batch: int,
    seqlen: int,
    d: int,
    dv: int,
    cluster_size: int,
    rho: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length tokens around Zipf-sized clusters, and cluster-correlated values.

    Returns ``u (B, L, d)`` (unit rows, float64, not yet scaled) and ``v (B, L, dv)``.
    """
    n_clusters = max(1, round(seqlen / cluster_size))
    centroids = rng.standard_normal((n_clusters, d))  # (k, d)
    centroids /= np.linalg.norm(centroids, axis=-1, keepdims=True)
    weights = np.arange(1, n_clusters + 1, dtype=np.float64) ** -PEAKED_ZIPF  # (k,)
    assign = rng.choice(n_clusters, size=(batch, seqlen), p=weights / weights.sum())  # (B, L)
    xi = rng.standard_normal((batch, seqlen, d)) / np.sqrt(d)  # (B, L, d), |xi| ~ 1
    u = centroids[assign] + PEAKED_NOISE * xi  # (k, d)[(B, L)] -> (B, L, d)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    cluster_values = rng.standard_normal((n_clusters, dv))  # (k, dv)
    eta = rng.standard_normal((batch, seqlen, dv))  # (B, L, dv)
    v = rho * cluster_values[assign] + np.sqrt(1.0 - rho * rho) * eta  # (B, L, dv)
    return u, v
