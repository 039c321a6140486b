"""What a sweep ran on: versions, CPU, git commit, command line, times (DESIGN.md section 6).

:func:`host_metadata` is collected by the sweep process; the BLAS pools and the Numba
threading layer are reported by the worker processes (they depend on the thread variables a
worker starts with) and added per ``threads`` value under ``workers``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from lshbench.util import load_average

__all__ = ["host_metadata", "physical_memory", "usable_cpus"]

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


def _cpu() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
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
        "model": model or platform.processor() or None,
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
