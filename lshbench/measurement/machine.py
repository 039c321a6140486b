"""What a sweep ran on: versions, CPU, git commit, command line, times (docs/design.md section 7).

:func:`host_metadata` is collected by the sweep process; the BLAS pools and the Numba
threading layer are reported by the worker processes (they depend on the thread variables a
worker starts with) and added per ``threads`` value under ``workers``.

Provenance (docs/design.md section 7): :func:`machine_id` fingerprints what decides a timing
(:func:`machine_facts`: CPU model, logical CPUs, memory, OS and kernel, architecture, Python,
NumPy, Numba and BLAS versions), never the host name; :func:`code_id` fingerprints the
source of the lshbench package. A row is reused only by a run with the same cell, machine_id
and code_id.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from lshbench.util import load_average

__all__ = [
    "code_id",
    "host_metadata",
    "machine_facts",
    "machine_id",
    "physical_memory",
    "provenance",
    "usable_cpus",
]

PACKAGES = (
    "lshbench",
    "numpy",
    "numba",
    "llvmlite",
    "scipy",
    "pandas",
    "pyarrow",
    "threadpoolctl",
    "click",
    "tqdm",
    "torch",
    "transformers",
)


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def physical_memory() -> int:
    """Bytes of physical memory (16 GiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu() -> dict[str, Any]:
    model = _cpu_model()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "model": model,
        "count": os.cpu_count(),
        "usable": usable,
        "machine": platform.machine(),
        "memory_bytes": mem,
    }


def _git() -> dict[str, Any]:
    """Commit of the lshbench source tree (None outside a git checkout) and dirty flag."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def host_metadata() -> dict[str, Any]:
    """Versions, CPU, platform, git commit, command line and load average of this process."""
    load = load_average()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "versions": _versions(),
        "cpu": _cpu(),
        "git": _git(),
        "command_line": list(sys.argv),
        "python_executable": sys.executable,
        "load_avg_start": load,
    }


# --------------------------------------------------------------------------- provenance

#: packages whose versions decide a timing (with Python and the BLAS libraries)
TIMING_PACKAGES = ("numpy", "numba")


def _package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _blas() -> list[dict[str, Any]] | None:
    """NumPy's BLAS libraries as threadpoolctl sees them (internal_api, version and the
    architecture it picked at run time), sorted; None without threadpoolctl.

    Only the libraries NumPy loaded count (those under its installation), so the answer does
    not depend on what else this process imported (SciPy and torch bring their own); where
    NumPy links a system BLAS, every BLAS library loaded counts.
    """
    try:
        import numpy as np
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    numpy_dir = str(Path(np.__file__).resolve().parent)  # numpy.libs sits beside it
    own = [i for i in libs if str(Path(i.get("filepath", "")).resolve()).startswith(numpy_dir)]
    keys = ("internal_api", "version", "architecture")
    facts = [{k: i.get(k) for k in keys} for i in (own or libs)]
    return sorted(facts, key=lambda f: json.dumps(f, sort_keys=True))


def machine_facts() -> dict[str, Any]:
    """What decides a timing on this machine (the input of :func:`machine_id`).

    CPU model, logical CPUs, physical memory (MiB), OS, kernel release, architecture,
    Python (implementation and version), NumPy and Numba versions and NumPy's BLAS libraries.
    Never the host name: many machines are called the same.
    """
    mem = physical_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_mib": mem // 2**20,
        "os": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _package_version(name) for name in TIMING_PACKAGES},
        "blas": _blas(),
    }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def machine_id(facts: dict[str, Any] | None = None) -> str:
    """16 hex digits fingerprinting :func:`machine_facts` (or ``facts``): equal on the same
    machine and software, different when any fact differs."""
    facts = machine_facts() if facts is None else facts
    return _digest(json.dumps(facts, sort_keys=True, default=str).encode())


def code_id(root: str | os.PathLike[str] | None = None) -> str:
    """16 hex digits fingerprinting the lshbench source: the relative path and the bytes of
    every ``.py`` file under the package (or ``root``), sorted by path."""
    base = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(base.rglob("*.py"), key=lambda p: p.relative_to(base).as_posix()):
        rel = path.relative_to(base).as_posix().encode()
        data = path.read_bytes()
        h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:16]


def provenance() -> dict[str, Any]:
    """``machine_id``, ``code_id`` and ``machine`` (the facts) of this process, for a run
    entry of the results store and for every row it measures."""
    facts = machine_facts()
    return {"machine_id": machine_id(facts), "code_id": code_id(), "machine": facts}
