"""Provenance in the sweep: a resumed sweep reuses only rows of the same cell,
machine_id and code_id; rows of another machine or code version stay in the store as theirs
and never count as this run's; the default output directory is not the reference runs'.

Each sweep spawns one worker (a second or two), so the grid is one cell of two rows.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from repo_state import CHECKS, REPO, simulate_main_job

import lshbench
from lshbench.measurement.machine import provenance
from lshbench.results.schema import make_row
from lshbench.sweep.spec import PRESETS, build_spec

GRID = {
    "seqlen": [64],
    "chunk_len": [32],
    "n_hashes": [1],
    "threads": 1,
    "input": "gaussian",
    "method": "lsh",
    "weighting": "multiplicity",
}
BACKENDS = "numpy,dense"


def stored(out: Path) -> list[dict[str, Any]]:
    """Every row the store ever recorded, in order."""
    with closing(sqlite3.connect(out / "results.sqlite")) as db:
        return [json.loads(text) for (text,) in db.execute("SELECT row FROM rows ORDER BY seq")]


def rewrite_ids(out: Path, **ids: str) -> None:
    """Set ``machine_id`` and/or ``code_id`` of every stored row, in the key columns and in
    the row itself: what a directory measured elsewhere (or by older code) looks like."""
    with closing(sqlite3.connect(out / "results.sqlite")) as db, db:
        for seq, text in db.execute("SELECT seq, row FROM rows").fetchall():
            row = {**json.loads(text), **ids}
            sets = ", ".join(f"{k}=?" for k in ids)
            db.execute(
                f"UPDATE rows SET {sets}, row=? WHERE seq=?",
                (*ids.values(), json.dumps(row), seq),
            )


def first_sweep(out: Path) -> pd.DataFrame:
    df = lshbench.run_sweep(out, backend=BACKENDS, **GRID)
    assert len(df) == 2 and (df["status"] == "ok").all(), df[["status", "message"]]
    return df


def assert_remeasured(out: Path, old: pd.DataFrame, key: str, fake: str) -> None:
    """A resumed sweep measured every cell again, under this machine's ids; the old rows
    are still in the store and the exports, under the fake id, and not in the run's table."""
    here = provenance()
    again = lshbench.run_sweep(out, backend=BACKENDS, **GRID)
    assert len(again) == 2 and (again["status"] == "ok").all()
    assert list(again["cell_id"]) == list(old["cell_id"])
    assert (again["machine_id"] == here["machine_id"]).all()
    assert (again["code_id"] == here["code_id"]).all()
    assert not set(again["run_id"]) & set(old["run_id"])  # measured by this run
    assert len(stored(out)) == 4
    for table in (
        lshbench.load_results(out),
        pd.read_parquet(out / "results.parquet"),
        pd.read_csv(out / "results.csv"),
    ):
        assert len(table) == 4
        theirs = table[table[key] == fake]
        assert sorted(theirs["cell_id"]) == sorted(old["cell_id"])
        assert set(theirs["run_id"]) == set(old["run_id"])
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["machine_id"] == here["machine_id"] and len(meta["runs"]) == 2


def test_a_directory_from_another_machine_is_measured_again(tmp_path: Path) -> None:
    """Rows whose machine_id is another machine's (a directory
    copied here) are never reused; every cell is measured here; theirs stay theirs."""
    out = tmp_path / "copied"
    old = first_sweep(out)
    rewrite_ids(out, machine_id="0123456789abcdef")
    assert_remeasured(out, old, "machine_id", "0123456789abcdef")


def test_rows_of_another_code_version_are_measured_again(tmp_path: Path) -> None:
    out = tmp_path / "old-code"
    old = first_sweep(out)
    rewrite_ids(out, code_id="fedcba9876543210")
    assert_remeasured(out, old, "code_id", "fedcba9876543210")


def test_resume_on_the_same_machine_and_code_measures_nothing(tmp_path: Path) -> None:
    out = tmp_path / "same"
    old = first_sweep(out)
    before = stored(out)
    again = lshbench.run_sweep(out, backend=BACKENDS, **GRID)
    assert stored(out) == before  # nothing measured, nothing appended
    pd.testing.assert_frame_equal(again, old)


def test_the_summary_counts_only_this_runs_rows(tmp_path: Path) -> None:
    """The command's summary: this run's rows only, never another machine's."""
    from click.testing import CliRunner

    from lshbench.cli import main

    out = tmp_path / "cli"
    first_sweep(out)
    rewrite_ids(out, machine_id="0123456789abcdef")
    args = ["sweep", "--out", str(out), "--backend", BACKENDS, "--seqlen", "64",
            "--chunk-len", "32", "--n-hashes", "1", "--threads", "1", "--input", "gaussian",
            "--method", "lsh", "--weighting", "multiplicity", "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "2 rows (2 ok)" in res.output
    assert len(lshbench.load_results(out)) == 4


class _RemoteExecutor:
    """An executor whose rows come from another machine (as a Dask worker elsewhere)."""

    name = "remote"
    concurrency = 1

    def run_cells(self, cells: Iterable[Any], on_row: Any, on_env: Any = None) -> None:
        for cell in cells:
            for task in cell.tasks:
                on_row(
                    make_row(
                        task, "ok", machine_id="feedfacefeedface", code_id="0000000000000000",
                        time_median_s=1.0, host="elsewhere",
                    )
                )  # fmt: skip


def test_rows_keep_the_ids_of_the_process_that_measured_them(tmp_path: Path) -> None:
    """The sweep never overwrites a row's machine_id or code_id; such rows are still this
    run's (it recorded them)."""
    out = tmp_path / "remote"
    df = lshbench.run_sweep(out, backend=BACKENDS, executor=_RemoteExecutor(), **GRID)
    assert len(df) == 2 and (df["machine_id"] == "feedfacefeedface").all()
    assert (df["code_id"] == "0000000000000000").all()
    assert {r["machine_id"] for r in stored(out)} == {"feedfacefeedface"}
    meta = json.loads((out / "metadata.json").read_text())
    assert (df["run_id"] == meta["run_id"]).all()
    assert meta["machine_id"] == provenance()["machine_id"]  # the run: where the sweep ran


def test_rows_decided_without_running_carry_this_runs_ids(tmp_path: Path) -> None:
    out = tmp_path / "skipped"
    df = lshbench.run_sweep(
        out, backend=BACKENDS, **{**GRID, "seqlen": [64, 96], "chunk_len": [64]}
    )
    skipped = df[df["status"] == "skipped"]
    assert len(skipped) == 1  # numpy at L=96, chunk 64
    here = provenance()
    assert (skipped["machine_id"] == here["machine_id"]).all()
    assert (skipped["code_id"] == here["code_id"]).all()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_default_out_is_not_a_reference_run(preset: str) -> None:
    """README's first command on a fresh clone measures this machine: the default --out is
    results/<preset>, never where the committed reference runs live."""
    out = build_spec(preset).out
    assert out == Path("results", preset)
    assert Path("results", "reference") not in (out, *out.parents)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_repository_state(check: Callable[[Path], None]) -> None:
    """The reference runs live under results/reference/, read from what git tracks: a
    user's results/quick (README's main job) never fails the suite."""
    check(REPO)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_repository_state_after_the_main_job(tmp_path: Path, preset: str) -> None:
    """README's main job and then its test command in the same clone: with the main job's
    output in a fresh clone, every repository-state check still passes."""
    clone = tmp_path / "clone"
    res = subprocess.run(
        ["git", "clone", "--quiet", str(REPO), str(clone)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    simulate_main_job(clone, preset)
    assert (clone / "results" / preset / "results.parquet").is_file()
    for check in CHECKS:
        check(clone)
