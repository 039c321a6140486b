"""`lshbench sweep` says what it will do: --help, --list-presets, --dry-run, progress, summary."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import lshbench
from lshbench.cli import main
from lshbench.sweep.run import RAN, ProgressLines
from lshbench.sweep.spec import PRESETS

ROOT = Path(__file__).resolve().parents[1]

#: a small grid: 2 lengths x 2 rounds x 2 chunk lengths (48 does not divide 64: invalid)
GRID = ["--backend", "numpy,dense", "--seqlen", "64,128", "--chunk-len", "32,48",
        "--n-hashes", "1,2", "--input", "gaussian", "--method", "lsh",
        "--weighting", "multiplicity", "--threads", "1", "--rotation-seeds", "1"]  # fmt: skip


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lshbench sweep *args`` in a fresh process (stderr a pipe, not a terminal)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "lshbench", "sweep", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )  # fmt: skip


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def to_measure(stdout: str) -> tuple[int, dict[str, int]]:
    """The dry run's rows to measure, in all and per backend."""
    m = re.search(r"^to measure: (\d+) rows(?: \((.*)\))?$", stdout, re.M)
    assert m, stdout
    per = dict(item.rsplit(" ", 1) for item in m.group(2).split(", ")) if m.group(2) else {}
    return int(m.group(1)), {k: int(v) for k, v in per.items()}


def reused(stdout: str) -> int:
    m = re.search(r"^already in .*reused: (\d+)$", stdout, re.M)
    assert m, stdout
    return int(m.group(1))


def summary(stdout: str) -> tuple[int, int]:
    """(measured, reused) of the sweep's summary line."""
    m = re.search(r"rows \(.*\): (\d+) measured now, (\d+) reused from", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


def test_help_shows_types_choices_and_defaults() -> None:
    res = CliRunner().invoke(main, ["sweep", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "TEXT" not in text
    assert "--preset [quick|paper|full]" in text and "--executor [local|dask]" in text
    quick = ",".join(map(str, PRESETS["quick"]["seqlen"]))
    assert "--seqlen INT,... Sequence lengths L" in text
    assert f"[default: {quick} (preset quick)]" in text
    assert "[default: 5]" in text  # repeats: the same in every preset
    assert "lsh, random, local" in text and "multiplicity, count-once" in text
    assert "float32, float64" in text and "numpy, dense" in text


def test_list_presets_prints_each_presets_axes() -> None:
    res = CliRunner().invoke(main, ["sweep", "--list-presets"])
    assert res.exit_code == 0, res.output
    blocks = re.split(r"^(\w+)(?: \(the default\))?:$", res.output, flags=re.M)[1:]
    found = dict(zip(blocks[::2], blocks[1::2], strict=True))
    assert list(found) == list(PRESETS)
    for name, values in PRESETS.items():
        lines = dict(line.split(None, 1) for line in found[name].strip().splitlines())
        assert lines["seqlen"] == ",".join(map(str, values["seqlen"]))
        assert lines["n_hashes"] == ",".join(map(str, values["n_hashes"]))
        assert lines["timeout"] == f"{values['timeout']:g}"


def test_a_bad_preset_or_executor_is_one_line_naming_the_field(tmp_path: Path) -> None:
    for args, field in (
        (["--preset", "huge"], "preset=huge"),
        (["--executor", "ray"], "executor=ray"),
    ):
        res = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "x"), *args])
        assert res.exit_code == 2 and field in res.output and len(res.output.splitlines()) == 1


def test_dry_run_writes_nothing_and_counts_what_the_sweep_then_measures(tmp_path: Path) -> None:
    args = [*GRID, "--out", "run"]
    dry = cli(tmp_path, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert files_under(tmp_path) == []  # nothing written, not even the directory
    n, per_backend = to_measure(dry.stdout)
    # 2 lengths x (dense + numpy at 2 rounds with chunk 32); chunk 48 is invalid everywhere
    assert (n, per_backend, reused(dry.stdout)) == (6, {"numpy": 4, "dense": 2}, 0)
    assert "recorded without running: 4 skipped" in dry.stdout
    assert re.search(r"^  gaussian L=64: 3 rows, peak \d", dry.stdout, re.M), dry.stdout
    assert "predicted peak memory:" in dry.stdout and "from the cost model for 6 rows" in dry.stdout

    run = cli(tmp_path, *args)
    assert run.returncode == 0, run.stderr
    assert summary(run.stdout) == (n, 0)
    frame = lshbench.load_results(tmp_path / "run")
    assert int(frame["status"].isin(RAN).sum()) == n
    # stderr is not a terminal: progress as plain lines, the last one at 6/6
    progress = [line for line in run.stderr.splitlines() if line.startswith("sweep: ")]
    assert progress and progress[-1].startswith(f"sweep: {n}/{n} rows"), run.stderr

    again = cli(tmp_path, *args, "--dry-run")
    assert (to_measure(again.stdout)[0], reused(again.stdout)) == (0, n)
    forced = cli(tmp_path, *args, "--dry-run", "--force")
    assert to_measure(forced.stdout)[0] == n
    assert f"earlier rows of this machine for {n} rows" in forced.stdout

    wider = [*args, "--seqlen", "64,128,256"]  # resume: only the new length is measured
    before = files_under(tmp_path)
    dry = cli(tmp_path, *wider, "--dry-run")
    assert files_under(tmp_path) == before
    assert (to_measure(dry.stdout), reused(dry.stdout)) == ((3, {"numpy": 2, "dense": 1}), n)
    run = cli(tmp_path, *wider)
    assert run.returncode == 0, run.stderr
    assert summary(run.stdout) == (3, n)


def test_progress_lines_are_plain_and_throttled() -> None:
    stream = io.StringIO()
    bar = ProgressLines(total=10.0, stream=stream, every_s=10.0)
    now = [0.0]
    bar._clock = lambda: now[0]  # a clock the test moves
    bar.start = 0.0
    for i, t in enumerate((1.0, 2.0, 15.0, 16.0), start=1):
        now[0] = t
        bar.update(2.0)
        bar.set_postfix_str(f"{i}/5 rows ok={i}")
    now[0] = 20.0
    bar.update(2.0)
    bar.set_postfix_str("5/5 rows ok=5")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "sweep: 1/5 rows ok=1, 1 s elapsed",
        "sweep: 3/5 rows ok=3, 15 s elapsed, about 14 s left",
        "sweep: 5/5 rows ok=5, 20 s elapsed",
    ]


def test_time_left_leaves_out_the_start_up() -> None:
    """A first row slowed by start-up (calibration, kernels) does not inflate the estimate:
    the rate is measured from the first row on."""
    stream = io.StringIO()
    bar = ProgressLines(total=100.0, stream=stream, every_s=0.0)
    now = [0.0]
    bar._clock = lambda: now[0]
    bar.start = 0.0
    for i, (t, work) in enumerate(((27.0, 1.0), (37.0, 9.0), (47.0, 10.0)), start=1):
        now[0] = t
        bar.update(work)
        bar.set_postfix_str(f"{i}/3 rows")
    lines = stream.getvalue().splitlines()
    # 19 seconds of work in 20 s since the first row: 80 left at 0.95 per second
    assert lines == [
        "sweep: 1/3 rows, 27 s elapsed",
        "sweep: 2/3 rows, 37 s elapsed, about 1m40s left",
        "sweep: 3/3 rows, 47 s elapsed, about 1m24s left",
    ]


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_progress_writes_nothing(quiet: bool) -> None:
    stream = io.StringIO()
    bar = ProgressLines(total=1.0, stream=None if quiet else stream)
    bar.set_postfix_str("1/1 rows ok=1")
    bar.close()
    assert (stream.getvalue() == "") == quiet


def test_dry_run_refuses_what_the_sweep_refuses(tmp_path: Path) -> None:
    """A directory of exports without a store is refused by the dry run as by the sweep."""
    import shutil

    reference = ROOT / "results" / "reference" / "quick"
    out = tmp_path / "exports"
    out.mkdir()
    shutil.copy(reference / "results.csv", out / "results.csv")
    before = files_under(tmp_path)
    res = cli(tmp_path, *GRID, "--out", str(out), "--dry-run")
    assert res.returncode == 2 and "but no results store" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert files_under(tmp_path) == before
