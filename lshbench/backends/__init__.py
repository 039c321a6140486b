"""Backend registry with lazy imports.

Importing :mod:`lshbench` imports none of the backends' heavy dependencies (numba, torch,
transformers): a backend's module is imported by :func:`get_backend` only, and
:func:`list_backends` checks availability with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import NamedTuple

from lshbench.backends.base import Backend
from lshbench.core.config import fail

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendUnavailable",
    "get_backend",
    "list_backends",
    "register_backend",
]


class BackendSpec(NamedTuple):
    target: str  # "package.module:ClassName"
    requires: tuple[str, ...]  # top-level modules that must be importable
    description: str


class BackendInfo(NamedTuple):
    name: str
    available: bool
    reason: str  # why not available ("" when available)
    description: str


_REGISTRY: dict[str, BackendSpec] = {
    "numpy": BackendSpec(
        "lshbench.backends.numpy_lsh:NumpyBackend", (), "vectorized NumPy LSH attention (reference)"
    ),
    "dense": BackendSpec(
        "lshbench.backends.dense:DenseBackend", (), "exact shared-QK attention, query-blocked"
    ),
    "numba": BackendSpec(
        "lshbench.backends.numba_lsh:NumbaBackend",
        ("numba", "scipy"),
        "Numba LSH attention: parallel over chunks, streamed rounds (cache=True)",
    ),
    "hf": BackendSpec(
        "lshbench.backends.hf:HFBackend",
        ("torch", "transformers"),
        "peer: Hugging Face LSHSelfAttention on the same qk, v and rotations",
    ),
    "torch-sdpa": BackendSpec(
        "lshbench.backends.torch_sdpa:TorchSDPABackend",
        ("torch",),
        "peer: torch scaled_dot_product_attention, dense speed/memory (no self mask)",
    ),
}

_INSTANCES: dict[str, Backend] = {}


def register_backend(
    name: str, target: str, requires: tuple[str, ...] = (), description: str = ""
) -> None:
    """Register (or replace) a backend by import path ``"module:ClassName"``.

    The module is imported lazily, on the first :func:`get_backend` call, so a spawned
    worker process can import it too when the module is importable there.
    """
    _REGISTRY[name] = BackendSpec(target, tuple(requires), description)
    _INSTANCES.pop(name, None)


def _missing(requires: tuple[str, ...]) -> list[str]:
    return [mod for mod in requires if importlib.util.find_spec(mod) is None]


def list_backends() -> dict[str, BackendInfo]:
    """Every registered backend, whether it is available here and, if not, why."""
    out = {}
    for name, spec in _REGISTRY.items():
        missing = _missing(spec.requires)
        reason = ""
        if missing:
            reason = f"not installed: {', '.join(missing)} (pip install 'lshbench[peers]')"
        out[name] = BackendInfo(name, not missing, reason, spec.description)
    return out


class BackendUnavailable(RuntimeError):
    """The backend exists but its optional dependencies are not installed."""


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one shared instance per process).

    Raises ConfigError for an unknown name and BackendUnavailable when its optional
    dependencies are missing.
    """
    if name in _INSTANCES:
        return _INSTANCES[name]
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        fail("backend", name, f"unknown backend; choose one of {', '.join(sorted(_REGISTRY))}")
    missing = _missing(spec.requires)
    if missing:
        raise BackendUnavailable(
            f"backend={name!r}: not available here, missing {', '.join(missing)} "
            "(pip install 'lshbench[peers]')"
        )
    module_name, _, class_name = spec.target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    instance = cls()
    _INSTANCES[name] = instance
    return instance
