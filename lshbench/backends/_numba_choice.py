"""Per-machine choice of the ``numba`` backend's chunk-product kernel, and the wait-policy
check (imported only by :mod:`lshbench.backends.numba_lsh`).

The choice is remembered in a JSON file next to the compiled kernels
(:func:`kernel_cache_path`), one entry per :func:`machine_key` (CPU model, threads,
versions, BLAS build, the kernels' source), so a later process reuses it without timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lshbench.backends import _numba_kernels as kernels

__all__ = [
    "cpu_model",
    "kernel_cache_path",
    "machine_key",
    "read_choices",
    "warn_if_spinning_pools",
    "write_choice",
]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kernel_cache_path() -> Path:
    """The JSON file remembering the kernel choice: in Numba's cache directory
    (``NUMBA_CACHE_DIR``) if set, else next to the compiled kernels (``__pycache__``)."""
    from numba.core.config import CACHE_DIR

    base = Path(CACHE_DIR) if CACHE_DIR else Path(kernels.__file__).parent / "__pycache__"
    return base / "lshbench_numba_kernel.json"


def machine_key() -> str:
    """What the kernel choice depends on: CPU model, threads, numba/numpy/llvmlite versions,
    the BLAS build, and the kernels' source (a short hash)."""
    import llvmlite
    import numba

    source = Path(kernels.__file__).read_bytes()
    blas = ""
    try:
        from threadpoolctl import threadpool_info

        blas = ",".join(
            sorted(
                f"{i.get('internal_api')}-{i.get('version')}"
                for i in threadpool_info()
                if i.get("user_api") == "blas"
            )
        )
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    return (
        f"{cpu_model()}|threads={numba.get_num_threads()}|numba={numba.__version__}|"
        f"llvmlite={llvmlite.__version__}|numpy={np.__version__}|blas={blas}|"
        f"kernels={hashlib.sha1(source).hexdigest()[:12]}"
    )


def read_choices(path: Path) -> dict[str, Any]:
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def write_choice(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key`` (atomic replace; a read-only location is not an error)."""
    choices = read_choices(path)
    choices[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(choices, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


_WAIT_WARNED = False


def warn_if_spinning_pools() -> bool:
    """Warn once per process (one line, with the fix) when idle BLAS/OpenMP threads may spin
    against the numba kernels: ``OMP_WAIT_POLICY`` not PASSIVE while a BLAS runs more than
    one thread. Returns whether it warned now."""
    global _WAIT_WARNED
    if _WAIT_WARNED or os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        return False
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return False
    threads = max(
        [i.get("num_threads", 1) for i in threadpool_info() if i.get("user_api") == "blas"],
        default=1,
    )
    _WAIT_WARNED = True
    if threads <= 1:
        return False
    warnings.warn(
        f"lshbench numba: OMP_WAIT_POLICY is {os.environ.get('OMP_WAIT_POLICY', 'unset')} and "
        f"BLAS runs {threads} threads, so idle pools spin against the numba kernels (up to "
        "~1.7x slower next to np.matmul); set OMP_WAIT_POLICY=PASSIVE "
        "OPENBLAS_THREAD_TIMEOUT=4 before starting Python",
        RuntimeWarning,
        stacklevel=4,
    )
    return True
