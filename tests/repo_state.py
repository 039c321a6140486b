"""Checks of the repository's state: what git tracks, never what a working tree holds.

A user's clone holds whatever README's main job wrote (``results/<preset>/``,
``reports/<preset>/``, ``.venv/``, ``*.egg-info/``) when the test command runs next, so
these checks read the repository through ``git ls-files`` and ``git check-ignore`` only.
Each takes the root of a checkout, so a test can run them on a clone after simulating the
main job there (:func:`simulate_main_job`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from lshbench.sweep.spec import PRESETS

__all__ = [
    "CHECKS",
    "REFERENCE_PRESETS",
    "REPO",
    "check_reference_runs",
    "check_user_output_ignored",
    "simulate_main_job",
    "tracked",
]

REPO = Path(__file__).resolve().parent.parent
#: the distribution's name (pip install -e . writes <name>.egg-info/ into the clone)
PROJECT = "lshbench"
#: the presets whose sweeps are committed as reference runs
REFERENCE_PRESETS = ("quick", "paper")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60
    )


def tracked(root: Path) -> set[str]:
    """Every path git tracks in the checkout at ``root`` (POSIX, relative to ``root``)."""
    res = _git(root, "ls-files", "-z")
    assert res.returncode == 0, f"not a git checkout: {root} ({res.stderr.strip()})"
    return set(filter(None, res.stdout.split("\0")))


def check_reference_runs(root: Path) -> None:
    """The committed reference runs live under results/reference/<preset>/, and git tracks
    nothing under results/<preset>/, where a user's sweep writes by default."""
    files = tracked(root)
    for preset in REFERENCE_PRESETS:
        for name in ("results.parquet", "results.sqlite", "metadata.json"):
            path = f"results/reference/{preset}/{name}"
            assert path in files and (root / path).is_file(), path
    for preset in PRESETS:
        mine = [f for f in files if f.startswith(f"results/{preset}/")]
        assert not mine, f"tracked under the default sweep output results/{preset}/: {mine}"


def check_user_output_ignored(root: Path) -> None:
    """What the main job writes (a sweep, its report, the venv) is ignored by git, so it
    never shows up as a change to commit; the reference runs are not ignored."""
    paths = [p for preset in PRESETS for p in _main_job_files(preset)]
    res = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    ignored = set(res.stdout.split())
    assert ignored == set(paths), f"not ignored: {sorted(set(paths) - ignored)}"
    for preset in REFERENCE_PRESETS:
        ref = f"results/reference/{preset}/results.parquet"
        res = _git(root, "check-ignore", "--no-index", "-q", ref)
        assert res.returncode == 1, f"{ref} is ignored"


#: every repository-state check: each takes a checkout's root
CHECKS: tuple[Callable[[Path], None], ...] = (check_reference_runs, check_user_output_ignored)


def _main_job_files(preset: str) -> list[str]:
    """Files README's main job (``lshbench sweep --preset P && lshbench report
    results/P``) writes, relative to the clone."""
    return [
        *(f"results/{preset}/{n}" for n in ("results.sqlite", "results.parquet",
                                           "results.csv", "metadata.json")),
        *(f"reports/{preset}/{n}" for n in ("report.md", "index.html", "cost.png")),
        ".venv/pyvenv.cfg",
        f"{PROJECT}.egg-info/PKG-INFO",
    ]  # fmt: skip


def simulate_main_job(root: Path, preset: str) -> None:
    """Leave in the checkout at ``root`` what README's main job leaves: the sweep's tables
    (the committed reference run's, copied), a report and an installed venv."""
    for rel in _main_job_files(preset):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        source = root / "results" / "reference" / preset / path.name
        if rel.startswith("results/") and source.is_file():
            shutil.copyfile(source, path)
        else:
            path.write_text(f"written by the main job: {rel}\n")
