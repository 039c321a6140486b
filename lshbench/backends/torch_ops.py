"""Torch helpers shared by the torch backends (``torch-lsh``, ``hf``, ``torch-sdpa``):
the key normalization of docs/design.md section 2 on tensors, and moving numpy inputs to a
device (docs/design.md section 9).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lshbench.core.attention import KEY_NORM_EPS

__all__ = ["normalize_keys_torch", "to_device", "torch_device"]


def normalize_keys_torch(x: torch.Tensor) -> torch.Tensor:
    """``x / sqrt(mean(x**2) + 1e-6) / sqrt(d)`` over the last axis, as
    :func:`lshbench.core.attention.normalize_keys`. x: (..., d) -> (..., d), same dtype.

    Rows whose ``x**2`` overflows are scaled by their largest magnitude first.
    """
    d = x.shape[-1]
    rms = torch.sqrt((x * x).mean(dim=-1, keepdim=True) + KEY_NORM_EPS)  # (..., 1)
    if not bool(torch.isfinite(rms).all()):
        s = x.abs().amax(dim=-1, keepdim=True).to(torch.float64)  # (..., 1)
        s = torch.where(s > 0, s, torch.ones_like(s))
        y = x.to(torch.float64) / s  # (..., d), |y| <= 1
        rms = (s * torch.sqrt((y * y).mean(dim=-1, keepdim=True) + KEY_NORM_EPS / (s * s))).to(
            x.dtype
        )
    return x / rms / float(np.sqrt(d))


def torch_device(name: str) -> Any:
    """The torch device called ``name`` (``cpu``, ``cuda``, ``cuda:1``)."""
    return torch.device(name)


def to_device(x: np.ndarray, device: Any, dtype: Any = None) -> Any:
    """numpy array -> tensor on ``device`` (in ``dtype``, default the array's)."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
