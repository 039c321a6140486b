"""Peer backend ``torch-sdpa``: ``torch.nn.functional.scaled_dot_product_attention``.

The dense speed and memory peer: exact attention over all L keys by torch's fused CPU
kernel (flash-style, O(L) extra memory; inputs are passed as one head, ``(B, 1, L, .)``,
the layout that kernel takes), on the same shapes as the ``dense`` backend.
Queries are ``qk``, keys are ``qk`` length-normalized as in every lshbench backend
(:func:`lshbench.core.attention.normalize_keys`), ``scale=1`` and ``is_causal`` follows the
config, so the scores are the section-2 scores.

**Its masks differ.** SDPA cannot express the self mask (a query's own key set to -1e5)
without an explicit L x L mask, which would defeat its purpose as a speed and memory
peer, so here every query also attends to itself. Its output is therefore NOT the
reference semantics, and its registry entry says so (``exact=False``): whoever reports error
metrics (relative error, recall, top-1 agreement against ``dense``) must leave them empty
for this backend rather than report numbers that measure the mask difference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lshbench.backends.base import Backend
from lshbench.core.config import LSHConfig

__all__ = ["TorchSDPABackend"]


class TorchSDPABackend(Backend):
    """Dense attention by torch SDPA: a timing/memory peer, without the self mask."""

    name = "torch-sdpa"
    description = "peer: torch scaled_dot_product_attention, dense speed/memory (no self mask)"
    #: False: the output differs from the section-2 semantics (no self mask), so error
    #: metrics against ``dense`` are not meaningful and must not be reported.

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.forward_torch(torch.from_numpy(qk), torch.from_numpy(v), config, None)
        return out.numpy()  # (B, L, dv)

    def forward_torch(self, qk: Any, v: Any, config: LSHConfig, rotations: Any) -> Any:
        """qk (B, L, d), v (B, L, dv) tensors -> (B, L, dv), differentiable, on their device."""
        import torch

        from lshbench.backends.torch_ops import normalize_keys_torch

        # one head: (B, 1, L, .) is the layout of torch's fused CPU (flash) kernel; 3-D
        # inputs take the "math" path, which materializes the (L, L) scores
        q = qk[:, None]  # (B, 1, L, d)
        k = normalize_keys_torch(qk)[:, None]  # (B, 1, L, d), about unit length
        val = v[:, None]  # (B, 1, L, dv)
        # (B, 1, L, d) x (B, 1, L, d) x (B, 1, L, dv) -> (B, 1, L, dv); scores q . k
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, val, is_causal=config.causal, scale=1.0
        )
        return out[:, 0]  # (B, L, dv)
