"""The backend registry: every backend's import path and the facts other layers need.

Facts about a backend (does it hash, does it compute the reference semantics, which
analytic memory model describes it, does tracemalloc see its allocations, does it compute
the variants of docs/design.md section 2b, does it attend to all L keys, does it have a
backward pass, does it run on CUDA) are declared once, here, in its :class:`BackendSpec`,
and read without importing the backend: the sweep plans and the worker reports from them,
nobody tests a backend by name.

Importing this module imports no backend: :func:`get_backend` imports a backend's module
on first use and :func:`list_backends` checks availability with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from lshbench.core.config import fail

if TYPE_CHECKING:
    from lshbench.backends.base import Backend

__all__ = [
    "BackendInfo",
    "BackendSpec",
    "BackendUnavailable",
    "backend_spec",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]

PEERS_HINT = "pip install 'lshbench[peers]'"


class BackendSpec(NamedTuple):
    """One registry entry."""

    name: str
    target: str  # "package.module:ClassName"
    requires: tuple[str, ...] = ()  # top-level modules that must be importable
    description: str = ""
    uses_hashing: bool = True  # False: exact attention, hashing fields and rotations ignored
    #: computes docs/design.md section 2 (error metrics against dense mean something)
    exact: bool = True
    memory_model: str | None = None  # analytic model in lshbench.measurement.cost_model
    tracemalloc_sees: bool = True  # False when its allocator is invisible to tracemalloc
    #: True when it computes every variant of docs/design.md section 2b (LSHConfig.method and
    #: weighting); False: only section 2 (method lsh, weighting multiplicity)
    variants: bool = False
    #: environment variable that forces one of the backend's kernels (its value, unless
    #: empty or "auto", is the kernel its rows then carry in their ``kernel`` column)
    kernel_env: str | None = None
    #: True when it computes separate queries and keys (``LSHConfig.qk == "separate"``,
    #: docs/design.md section 2c; exact backends: ``softmax(q k^T) v``)
    separate_qk: bool = False
    #: True when it computes attention over all L keys (exact attention, whatever its
    #: masks): a candidate for the exact baseline that speed-ups are measured against
    all_keys: bool = False
    #: True when it has a backward pass (``Backend.forward_torch``, differentiable): it runs
    #: ``--pass train`` (docs/design.md section 9)
    backward: bool = False
    #: True when it runs on a CUDA device (``--device cuda``; docs/design.md section 9)
    cuda: bool = False

    def forced_kernel(self) -> str | None:
        """The kernel :attr:`kernel_env` forces in this process's environment, or None."""
        value = os.environ.get(self.kernel_env, "") if self.kernel_env else ""
        value = value.strip().lower()
        return None if value in ("", "auto") else value

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (sent to worker processes, which register it again)."""
        out = self._asdict()
        out["requires"] = list(self.requires)
        return out


class BackendInfo(NamedTuple):
    name: str
    available: bool
    reason: str  # why not available ("" when available)
    description: str


class BackendUnavailable(RuntimeError):
    """The backend exists but its optional dependencies are not installed."""


_SPECS: dict[str, BackendSpec] = {}
_INSTANCES: dict[str, Backend] = {}


def register_backend(
    name: str,
    target: str,
    requires: tuple[str, ...] | list[str] = (),
    description: str = "",
    *,
    uses_hashing: bool = True,
    exact: bool = True,
    memory_model: str | None = None,
    tracemalloc_sees: bool = True,
    variants: bool = False,
    kernel_env: str | None = None,
    separate_qk: bool = False,
    all_keys: bool = False,
    backward: bool = False,
    cuda: bool = False,
) -> BackendSpec:
    """Register (or replace) a backend by import path ``"module:ClassName"``.

    The module is imported lazily, on the first :func:`get_backend` call, so a spawned
    worker process can import it too when the module is importable there.
    """
    spec = BackendSpec(
        name,
        target,
        tuple(requires),
        description,
        bool(uses_hashing),
        bool(exact),
        memory_model,
        bool(tracemalloc_sees),
        bool(variants),
        kernel_env,
        bool(separate_qk),
        bool(all_keys),
        bool(backward),
        bool(cuda),
    )
    _SPECS[name] = spec
    _INSTANCES.pop(name, None)
    return spec


def unregister_backend(name: str) -> None:
    """Forget a backend (and its cached instance); unknown names are ignored."""
    _SPECS.pop(name, None)
    _INSTANCES.pop(name, None)


def backend_spec(name: str) -> BackendSpec:
    """The registry entry of ``name``; ConfigError for an unknown name."""
    spec = _SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        fail("backend", name, f"unknown backend; choose one of {', '.join(sorted(_SPECS))}")
    return spec


def _missing(requires: tuple[str, ...]) -> list[str]:
    return [mod for mod in requires if importlib.util.find_spec(mod) is None]


def list_backends() -> dict[str, BackendInfo]:
    """Every registered backend, whether it is available here and, if not, why."""
    out = {}
    for name, spec in _SPECS.items():
        missing = _missing(spec.requires)
        reason = f"not installed: {', '.join(missing)} ({PEERS_HINT})" if missing else ""
        out[name] = BackendInfo(name, not missing, reason, spec.description)
    return out


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one shared instance per process).

    Raises ConfigError for an unknown name and BackendUnavailable when its optional
    dependencies are missing.
    """
    if name in _INSTANCES:
        return _INSTANCES[name]
    spec = backend_spec(name)
    missing = _missing(spec.requires)
    if missing:
        raise BackendUnavailable(
            f"backend={name!r}: not available here, missing {', '.join(missing)} ({PEERS_HINT})"
        )
    module_name, _, class_name = spec.target.partition(":")
    instance = getattr(importlib.import_module(module_name), class_name)()
    instance.name = name  # the name it was registered under decides its facts
    _INSTANCES[name] = instance
    return instance


register_backend(
    "numpy",
    "lshbench.backends.numpy_lsh:NumpyBackend",
    description="vectorized NumPy LSH attention (reference)",
    memory_model="numpy",
    variants=True,
    separate_qk=True,
)
register_backend(
    "dense",
    "lshbench.backends.dense:DenseBackend",
    ("numba", "scipy"),
    "exact attention: fused blocked Numba kernel, GEMM + online softmax",
    uses_hashing=False,
    memory_model="dense",
    separate_qk=True,
    all_keys=True,
)
register_backend(
    "dense-numpy",
    "lshbench.backends.dense:DenseNumpyBackend",
    description="exact attention in NumPy, query-blocked (reference)",
    uses_hashing=False,
    memory_model="dense-numpy",
    separate_qk=True,
    all_keys=True,
)
register_backend(
    "numba",
    "lshbench.backends.numba_lsh:NumbaBackend",
    ("numba", "scipy"),
    "Numba LSH attention: parallel over chunks, streamed rounds (cache=True)",
    memory_model="numba",
    variants=True,
    kernel_env="LSHBENCH_NUMBA_KERNEL",
    separate_qk=True,
)
register_backend(
    "hf",
    "lshbench.backends.hf:HFBackend",
    ("torch", "transformers"),
    "peer: Hugging Face LSHSelfAttention on the same qk, v and rotations",
    tracemalloc_sees=False,
    backward=True,
    cuda=True,
)
register_backend(
    "torch-lsh",
    "lshbench.backends.torch_lsh:TorchLSHBackend",
    ("torch",),
    "LSH attention in torch: vectorized like numpy, differentiable, any device",
    tracemalloc_sees=False,
    variants=True,
    backward=True,
    cuda=True,
)
register_backend(
    "torch-sdpa",
    "lshbench.backends.torch_sdpa:TorchSDPABackend",
    ("torch",),
    "peer: torch scaled_dot_product_attention, dense speed/memory (no self mask)",
    uses_hashing=False,
    exact=False,
    tracemalloc_sees=False,
    all_keys=True,
    backward=True,
    cuda=True,
)
