"""lshbench: benchmark and scaling-study harness for Reformer-style LSH self-attention.

Public API (docs/design.md section 3)::

    cfg = lshbench.LSHConfig(n_hashes=4, n_buckets=32, chunk_len=64)
    R = lshbench.random_rotations(d=64, config=cfg, seed=0)   # (d, n_hashes, rot_size // 2)
    b = lshbench.hash_buckets(qk, R, cfg)                     # (n_hashes, L)
    out = lshbench.get_backend("numpy").attend(qk, v, cfg, R) # (L, dv)

Importing this package imports neither numba nor torch.
"""

from __future__ import annotations

from lshbench.backends import (
    Backend,
    BackendInfo,
    BackendSpec,
    BackendUnavailable,
    backend_spec,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from lshbench.core.config import ConfigError, LSHConfig
from lshbench.core.hashing import hash_buckets, random_rotations
from lshbench.core.sorting import window_positions

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendSpec",
    "BackendUnavailable",
    "ConfigError",
    "LSHConfig",
    "__version__",
    "backend_spec",
    "get_backend",
    "hash_buckets",
    "list_backends",
    "load_results",
    "random_rotations",
    "register_backend",
    "run_sweep",
    "unregister_backend",
    "window_positions",
]

# Lazy: the sweep API needs pandas, which `import lshbench` must not import.
_LAZY = {"run_sweep": "lshbench.sweep", "load_results": "lshbench.results"}


def __getattr__(name: str) -> object:  # PEP 562: lazy module attributes
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lshbench' has no attribute {name!r}")
