"""The small interface every backend implements (in the spirit of einops' ``_backends.py``).

A backend turns checked arrays with a batch axis into attention outputs. Validation, the
batch axis and the short-sequence dense path (``L <= chunk_len``, as in Hugging Face) are
handled once, here, for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from lshbench.backends.registry import BackendSpec, backend_spec
from lshbench.core.config import LSHConfig, fail
from lshbench.core.dense import dense_attention
from lshbench.core.validation import check_inputs, check_keys

__all__ = ["Backend"]


class Backend(ABC):
    """Compute shared-QK attention for ``qk (L, d) | (B, L, d)`` and ``v (L, dv) | (B, L, dv)``.

    Subclasses set ``name``, ``description`` and implement :meth:`_attend` on checked
    inputs ``qk (B, L, d)``, ``v (B, L, dv)``, rotations ``(d, H, rot_size // 2)`` (None
    when ``uses_hashing`` is False), returning ``(B, L, dv)`` in the input dtype. Backends
    whose registry entry declares ``separate_qk`` also implement :meth:`_attend_separate`
    (queries and keys apart, docs/design.md section 2c).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: True when the backend runs ``L <= chunk_len`` itself instead of the shared dense path.
    own_short_path: ClassVar[bool] = False

    @property
    def spec(self) -> BackendSpec:
        """This backend's registry entry: the facts about it, declared once."""
        return backend_spec(self.name)

    @property
    def uses_hashing(self) -> bool:
        """False for exact/dense backends: hashing fields and rotations are ignored."""
        return self.spec.uses_hashing

    @property
    def exact_semantics(self) -> bool:
        """False when the backend computes other semantics (e.g. no self mask)."""
        return self.spec.exact

    def attend(
        self,
        qk: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray | None = None,
        *,
        k: np.ndarray | None = None,
    ) -> np.ndarray:
        """Attention output ``(L, dv)`` or ``(B, L, dv)``, dtype of ``qk``.

        ``k``: the keys, shaped like ``qk``, required when ``config.qk == "separate"`` (``qk``
        is then the queries) and refused otherwise. Raises ConfigError on invalid input
        before any work is done.
        """
        qk3, v3, rot, batched = check_inputs(
            qk, v, config, rotations, need_rotations=self.uses_hashing
        )
        k3 = check_keys(k, qk3, config, batched)  # (B, L, d) or None (shared QK)
        if k3 is not None and not self.spec.separate_qk:
            fail("qk", config.qk, f"backend {self.name!r} computes shared queries/keys only")
        if self.uses_hashing and config.is_short(qk3.shape[1]) and not self.own_short_path:
            out = dense_attention(qk3, v3, config.causal, k=k3)  # the sequence fits one chunk
        elif k3 is not None:
            out = self._attend_separate(qk3, k3, v3, config, rot)  # (B, L, dv)
        else:
            out = self._attend(qk3, v3, config, rot)  # (B, L, dv)
        return out if batched else out[0]

    def _attend_separate(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        config: LSHConfig,
        rotations: np.ndarray | None,
    ) -> np.ndarray:
        """Checked ``q, k (B, L, d)``, ``v (B, L, dv)`` -> ``(B, L, dv)`` (separate QK)."""
        raise NotImplementedError(f"backend {self.name!r} declares separate_qk without it")

    @abstractmethod
    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        """Checked ``qk (B, L, d)``, ``v (B, L, dv)`` -> ``(B, L, dv)``."""

    def forward_torch(self, qk: Any, v: Any, config: LSHConfig, rotations: Any) -> Any:
        """The same attention on torch tensors, differentiable in ``qk`` and ``v`` (backends
        whose registry entry says ``backward``; docs/design.md section 9).

        qk (B, L, d), v (B, L, dv) on one device in one dtype; rotations
        (d, n_hashes, rot_size // 2) numpy (ignored when the backend does not hash).
        Returns (B, L, dv) on that device. Others raise NotImplementedError.
        """
        raise NotImplementedError(f"backend {self.name!r} has no backward pass")

    def compile(self, dtype: np.dtype | type = np.float32) -> float:
        """Compile or load whatever the backend needs for ``dtype``; seconds spent.

        Backends without a compile step return 0.0.
        """
        return 0.0

    def describe(self) -> dict[str, Any]:
        """Facts about this instance to record with its results (JSON values), e.g. which of
        its kernels runs here. A ``kernel`` entry goes into each row's ``kernel`` column,
        the whole dict into the run's metadata. Backends with nothing to say return ``{}``.
        """
        return {}

    def __repr__(self) -> str:
        return f"<lshbench backend {self.name!r}>"
