"""Sweeps run torch-sdpa beside dense where torch is installed, unless --backend is given;
the dry run, --list-presets and the run's entry say whether it ran and why not."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lshbench.backends import registry
from lshbench.cli import main
from lshbench.sweep.preview import exact_peer_line
from lshbench.sweep.spec import DEFAULT_BACKENDS, PRESETS, build_spec, exact_peers

REAL_MISSING = registry._missing


def torch_installed(monkeypatch: pytest.MonkeyPatch, installed: bool) -> None:
    """Make the registry see torch installed (every requirement met) or not (torch
    missing), whatever this machine has; nothing is imported either way."""

    def missing(requires: tuple[str, ...]) -> list[str]:
        if installed:
            return []
        return ["torch"] if "torch" in requires else REAL_MISSING(requires)

    monkeypatch.setattr(registry, "_missing", missing)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_default_backends_add_torch_sdpa_where_installed(
    monkeypatch: pytest.MonkeyPatch, preset: str
) -> None:
    listed = PRESETS[preset].get("backend") or list(DEFAULT_BACKENDS)
    torch_installed(monkeypatch, True)
    spec = build_spec(preset)
    assert spec.backend == (*listed, "torch-sdpa") and not spec.backend_given
    assert exact_peers(spec) == {"torch-sdpa": "in the run"}
    torch_installed(monkeypatch, False)
    spec = build_spec(preset)
    assert "torch-sdpa" not in spec.backend and "dense" in spec.backend
    assert exact_peers(spec)["torch-sdpa"].startswith("not installed: torch")


def test_a_given_backend_list_is_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    torch_installed(monkeypatch, True)
    spec = build_spec("quick", backend="numba,dense")
    assert spec.backend == ("numba", "dense") and spec.backend_given
    assert exact_peers(spec) == {"torch-sdpa": "left out by --backend"}
    assert build_spec("quick", backend="dense,torch-sdpa").backend == ("dense", "torch-sdpa")


def test_dry_run_line_says_whether_torch_sdpa_runs_and_why_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch_installed(monkeypatch, True)
    line = exact_peer_line(build_spec("quick"))
    assert "fastest): dense, torch-sdpa" in line and "added unless --backend is given" in line
    assert "left out by --backend" in exact_peer_line(build_spec("quick", backend="dense"))
    torch_installed(monkeypatch, False)
    line = exact_peer_line(build_spec("quick"))
    assert "fastest): dense;" in line and "torch-sdpa not in the run (not installed: torch" in line


def test_list_presets_and_help_say_torch_sdpa_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    torch_installed(monkeypatch, False)
    res = CliRunner().invoke(main, ["sweep", "--list-presets"])
    assert res.exit_code == 0, res.output
    assert "numba,dense, and torch-sdpa where installed" in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("torch-sdpa (not installed: torch") and "--backend" in last
    res = CliRunner().invoke(main, ["sweep", "--help"], terminal_width=200)
    assert "plus torch-sdpa where torch is installed" in " ".join(res.output.split())
