"""Backends behind one interface, found through a registry and imported lazily.

Importing :mod:`lshbench` imports none of the backends' heavy dependencies (numba, torch,
transformers): see :mod:`lshbench.backends.registry`.
"""

from __future__ import annotations

from lshbench.backends.base import Backend
from lshbench.backends.registry import (
    BackendInfo,
    BackendSpec,
    BackendUnavailable,
    backend_spec,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendSpec",
    "BackendUnavailable",
    "backend_spec",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]
