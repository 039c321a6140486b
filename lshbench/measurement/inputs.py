"""Seeded input generators for the sweep (DESIGN.md section 5, ``--input``).

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
"""

from __future__ import annotations

import numpy as np

from lshbench.core.config import fail

__all__ = ["INPUTS", "make_inputs"]

#: the names accepted by ``--input``
INPUTS = ("gaussian", "clustered", "duplicate")

#: defaults of the ``clustered`` distribution
CLUSTER_SIZE = 32
CLUSTER_NOISE = 0.3


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
) -> tuple[np.ndarray, np.ndarray]:
    """``(qk (batch, seqlen, d), v (batch, seqlen, dv))`` of distribution ``kind``.

    dv defaults to d. Both arrays are C-contiguous in ``dtype`` (float32 or float64) and
    reproducible from ``seed``. Raises ConfigError for an unknown kind or bad sizes.
    """
    if kind not in INPUTS:
        fail("input", kind, f"must be one of {', '.join(INPUTS)}")
    for field, value in (("batch", batch), ("seqlen", seqlen), ("d", d)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            fail(field, value, "must be an integer >= 1")
    dv = d if dv is None else dv
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        fail("dtype", str(dtype), "must be float32 or float64")
    rng = np.random.default_rng(seed)
    if kind == "clustered":
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
    return np.ascontiguousarray(qk, dtype=dtype), np.ascontiguousarray(v, dtype=dtype)
