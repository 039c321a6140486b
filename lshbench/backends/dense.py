"""The ``dense`` backend: exact attention over all keys (:mod:`lshbench.core.dense`)."""

from __future__ import annotations

import numpy as np

from lshbench.backends.base import Backend
from lshbench.core.config import LSHConfig
from lshbench.core.dense import dense_attention

__all__ = ["DenseBackend"]


class DenseBackend(Backend):
    """Exact attention over all keys; ``n_hashes``, buckets and rotations are ignored."""

    name = "dense"
    description = "exact shared-QK attention, query-blocked (O(L * block) memory)"

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
        return dense_attention(q, v, config.causal, k=k)  # softmax(q k^T) v
