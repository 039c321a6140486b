"""Loader for the golden cases in ``tests/data/hf_reformer_lsh_cases.npz``.

Provenance: 24 reference cases computed by Hugging Face transformers 5.24.0
``LSHSelfAttention`` (torch 2.13 CPU) with the shared query/key vectors, values and random
rotations injected and the Q/K/V projections bypassed; an independent plain-NumPy
restatement agrees with every case to 3e-11 (see ``tests/data/README.md``). ``qk`` and
``rotations`` are multiples of 1/16 in [-2, 2], so ``qk @ R`` is exact in float32 and bucket
ids must match exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

import lshbench
from lshbench.core.attention import valid_keys

GOLDEN_PATH = Path(__file__).parent / "data" / "hf_reformer_lsh_cases.npz"


@dataclass(frozen=True)
class GoldenCase:
    index: int
    note: str
    config: lshbench.LSHConfig
    qk: np.ndarray  # float32 (L, d)
    v: np.ndarray  # float32 (L, dv)
    rotations: np.ndarray  # float32 (d, H, rot_size // 2)
    buckets: np.ndarray  # int64 (H, L)
    out: np.ndarray  # float64 (L, dv)

    @property
    def self_only_rows(self) -> np.ndarray:
        """Positions whose windows, in every round, hold no valid key but the query itself.

        Their float32 outputs carry logits near -1e5 (docs/design.md section 2, float32
        note), so they are compared in float64 only.
        """
        L = self.qk.shape[0]
        keys = lshbench.window_positions(self.buckets[None], self.config)[0]  # (H, L, W)
        query = np.broadcast_to(np.arange(L)[None, :], keys.shape[:2])  # (H, L)
        has_other = valid_keys(query, keys, self.config.causal).any(axis=(0, 2))  # (L,)
        return np.flatnonzero(~has_other)

    def __repr__(self) -> str:
        return f"GoldenCase({self.index}: {self.note}, {self.config})"


@cache
def golden_cases() -> tuple[GoldenCase, ...]:
    z = np.load(GOLDEN_PATH)
    keys = sorted({k.split("/")[0] for k in z.files}, key=int)
    cases = []
    for k in keys:
        cfg = json.loads(str(z[f"{k}/config"]))
        note = cfg.pop("note", "")
        if isinstance(cfg["n_buckets"], list):
            cfg["n_buckets"] = tuple(cfg["n_buckets"])
        arrays = {n: z[f"{k}/{n}"] for n in ("qk", "v", "rotations", "buckets", "out")}
        cases.append(GoldenCase(int(k), note, lshbench.LSHConfig(**cfg), **arrays))
    return tuple(cases)
