"""Importing lshbench stays light; the basic CLI commands work."""

from __future__ import annotations

import subprocess
import sys

import lshbench

HEAVY = ("numba", "torch", "transformers", "dask", "distributed", "matplotlib", "pandas")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_import_does_not_import_heavy_modules() -> None:
    res = run_python(
        "import sys, lshbench\n"
        "lshbench.list_backends()\n"
        "lshbench.get_backend('numpy'); lshbench.get_backend('dense')\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def test_version() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "--version"], capture_output=True, text=True
    )
    assert res.returncode == 0
    assert lshbench.__version__ in res.stdout


def test_backends_command_lists_every_registered_backend() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "backends"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    infos = lshbench.list_backends()
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(infos)
    for info, line in zip(infos.values(), lines, strict=False):
        assert line.startswith(info.name)
        assert ("unavailable" in line) == (not info.available)
    assert {"numpy", "dense"} <= set(infos)
