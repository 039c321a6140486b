"""Peer backend ``hf``: Hugging Face transformers' ``LSHSelfAttention``, fed our inputs.

The layer is run as is, except for what must be injected so that it computes exactly the
attention of the same ``qk``, ``v`` and rotations as the other backends:

* Projections: the hidden states are ``concat([qk, v_block], -1)`` and the layer's
  ``query_key`` and ``value`` linear maps are replaced by exact column slices of them
  (no arithmetic, so no rounding).
* Rotations: HF draws them with ``torch.randn(...)`` inside ``_hash_vectors``; during the
  call, that module's ``torch`` name is a proxy whose ``randn`` returns our rotations
  (shape checked), everything else being the real torch.
* HF requires ``d_v == d`` (one head of size d). Attention weights do not depend on v, so
  for ``d_v != d`` the values are processed in blocks of d columns (zero padded), one call
  per block: exact, since the output is linear in v.
* ``L <= chunk_len`` runs HF's own full-attention path (not lshbench's dense one).
* Only section 2: a configuration with another ``method`` or ``weighting`` (section 2b) is a
  ConfigError (its registry entry says ``variants=False``).

Hashing, sorting, masks, softmax and the round combine are all Hugging Face's code. float32
in, float32 out; float64 runs the layer in double precision.
"""

from __future__ import annotations

import types
from typing import Any, ClassVar

import numpy as np

from lshbench.backends.base import Backend
from lshbench.core.config import LSHConfig, fail

__all__ = ["HFBackend"]


class _RotationTorch(types.ModuleType):
    """Stand-in for the ``torch`` module inside ``modeling_reformer`` during one call."""

    def __init__(self, torch: Any, rotations: Any) -> None:
        super().__init__("torch")
        self._torch = torch
        self._rotations = rotations  # (1, d, H, rot_size // 2) tensor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._torch, name)

    def randn(self, *shape: Any, **kwargs: Any) -> Any:
        size = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        if tuple(size) != tuple(self._rotations.shape):
            raise RuntimeError(
                f"hf backend: HF asked for rotations of shape {tuple(size)}, "
                f"injected {tuple(self._rotations.shape)}"
            )
        return self._rotations.to(
            device=kwargs.get("device", self._rotations.device),
            dtype=kwargs.get("dtype", self._rotations.dtype),
        )


def _columns(start: int, stop: int) -> Any:
    """``hidden[..., start:stop]`` as a torch module: an exact bias-free "projection"."""
    import torch

    class Columns(torch.nn.Module):
        def forward(self, hidden: Any) -> Any:
            return hidden[..., start:stop]

    return Columns()


def _check_section_2(config: LSHConfig) -> None:
    """Hugging Face computes section 2 only: ConfigError for a variant of section 2b."""
    for field, value, only in (
        ("method", config.method, "lsh"),
        ("weighting", config.weighting, "multiplicity"),
    ):
        if value != only:
            fail(
                field,
                value,
                f"the hf backend (Hugging Face's LSHSelfAttention) computes only {field} "
                f"{only}; the variants of docs/design.md section 2b need a backend that has them, "
                "e.g. numpy",
            )


class HFBackend(Backend):
    """Hugging Face ``LSHSelfAttention`` (transformers) on the same qk, v and rotations."""

    name = "hf"
    description = "Hugging Face transformers LSHSelfAttention (torch), same inputs and rotations"
    #: ``L <= chunk_len`` runs HF's own full-attention code, not lshbench's dense path
    own_short_path: ClassVar[bool] = True

    def __init__(self) -> None:
        self._layers: dict[tuple[LSHConfig, int], Any] = {}  # (config, d) -> layer

    def _layer(self, config: LSHConfig, d: int) -> Any:
        """The layer for ``config`` and head size d (built once, so timings exclude it)."""
        key = (config, d)
        if key not in self._layers:
            if len(self._layers) >= 16:  # a sweep moves on from configuration to configuration
                self._layers.pop(next(iter(self._layers)))
            self._layers[key] = self._build_layer(config, d)
        return self._layers[key]

    def _build_layer(self, config: LSHConfig, d: int) -> Any:
        from transformers import ReformerConfig
        from transformers.models.reformer.modeling_reformer import LSHSelfAttention

        nb = config.n_buckets
        hf_config = ReformerConfig(
            attention_head_size=d,
            num_attention_heads=1,
            hidden_size=2 * d,
            attn_layers=["lsh"],
            num_hashes=config.n_hashes,
            num_buckets=list(nb) if isinstance(nb, tuple) else nb,
            lsh_attn_chunk_length=config.chunk_len,
            lsh_num_chunks_before=config.chunks_before,
            lsh_num_chunks_after=config.chunks_after,
            is_decoder=config.causal,
            lsh_attention_probs_dropout_prob=0.0,
            hash_seed=None,
            max_position_embeddings=4096,  # unused: n_buckets is always given
        )
        layer = LSHSelfAttention(hf_config, layer_idx=0).eval()
        layer.query_key = _columns(0, d)
        layer.value = _columns(d, 2 * d)
        return layer

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.forward_torch(torch.from_numpy(qk), torch.from_numpy(v), config, rotations)
        return out.numpy()  # (B, L, dv)

    def forward_torch(self, qk: Any, v: Any, config: LSHConfig, rotations: Any) -> Any:
        """qk (B, L, d), v (B, L, dv) tensors -> (B, L, dv) on their device, differentiable;
        rotations (d, n_hashes, rot_size // 2) numpy."""
        _check_section_2(config)
        import torch
        from transformers.models.reformer import modeling_reformer

        d, dv = qk.shape[-1], v.shape[-1]
        layer = self._layer(config, d).to(qk.device)
        rot = torch.from_numpy(np.ascontiguousarray(rotations))[None]  # (1, d, H, rot/2)
        rot = rot.to(qk.device, qk.dtype)
        blocks = []
        real_torch = modeling_reformer.torch
        modeling_reformer.torch = _RotationTorch(torch, rot)
        try:
            for start in range(0, dv, d):
                stop = min(dv, start + d)
                pad = d - (stop - start)
                block = torch.nn.functional.pad(v[..., start:stop], (0, pad))  # (B, L, d)
                hidden = torch.cat([qk, block], dim=-1)  # (B, L, 2d)
                res = layer(hidden).hidden_states  # (B, L, d)
                blocks.append(res[..., : stop - start])
        finally:
            modeling_reformer.torch = real_torch
        return torch.cat(blocks, dim=-1)  # (B, L, dv)
