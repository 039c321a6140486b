"""Running sweeps: rows and files, resume, failures as rows, honest memory columns.

Every cell runs in a spawned worker (about a second of imports each), so the grids are tiny.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sweep_backends
from helpers import SMALL_GRID

import lshbench
from lshbench.measurement.cost_model import attention_flops
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.metrics import dense_reference, output_errors
from lshbench.results.cells import TASK_KEYS, Task, rotation_seed
from lshbench.results.store import COLUMNS
from lshbench.sweep.plan import plan_tasks, predicted_bytes
from lshbench.sweep.spec import build_spec

TESTS = str(Path(__file__).parent)


@pytest.fixture
def test_backends(monkeypatch: pytest.MonkeyPatch):
    """Register tests/sweep_backends.py's classes, importable in the spawned workers."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    names = {
        "test-sleep": "SleepBackend",
        "test-raise": "RaiseBackend",
        "test-killed": "KilledBackend",
        "test-alloc-numpy": "AllocNumpyBackend",
        "test-alloc-numba": "AllocNumbaBackend",
        "test-nan": "NaNBackend",
        "test-inf": "InfBackend",
        "test-neginf": "NegInfBackend",
        "test-fatal": "FatalBackend",
    }
    for name, cls in names.items():
        lshbench.register_backend(name, f"sweep_backends:{cls}", uses_hashing=False)
    yield
    for name in names:
        lshbench.unregister_backend(name)


def stored(out: Path) -> list[dict]:
    """Every row the directory's store ever recorded, in order (superseded ones included)."""
    with closing(sqlite3.connect(out / "results.sqlite")) as db:
        return [json.loads(text) for (text,) in db.execute("SELECT row FROM rows ORDER BY seq")]


def test_small_sweep_rows_files_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    df = lshbench.run_sweep(out, backend="numpy,dense", **SMALL_GRID)
    assert len(df) == 2 + 4 and (df["status"] == "ok").all(), df[["status", "message"]]
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    for name in ("results.parquet", "results.csv", "results.sqlite", "metadata.json"):
        assert (out / name).exists(), name
    assert not (out / "results.jsonl").exists()
    assert set(COLUMNS) <= set(pd.read_parquet(out / "results.parquet").columns)
    assert set(COLUMNS) <= set(pd.read_csv(out / "results.csv").columns)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["versions"]["numpy"] == np.__version__ and meta["cpu"]["count"] >= 1
    assert meta["end_time"] and meta["command_line"] and "1" in meta["workers"]
    assert meta["workers"]["1"]["thread_vars"]["OPENBLAS_NUM_THREADS"] == "1"
    assert meta["machine"]["cpu_model"] == meta["machines"][meta["machine_id"]]["cpu_model"]
    # every row: this run, and the machine and code the run entry names (stamped by the
    # worker process that measured it)
    assert (df["run_id"] == meta["run_id"]).all()
    assert (df["machine_id"] == meta["machine_id"]).all()
    assert (df["code_id"] == meta["code_id"]).all()
    # the exact floor's SGEMM rate, measured at the run's thread count
    assert set(meta["sgemm"]) == {"1"}
    rate = meta["sgemm"]["1"]
    assert rate["gflops"] > 0 and rate["n"] == 512 and rate["repeats"] == 5  # L <= 128
    assert rate["gflops"] == pytest.approx(2 * rate["n"] ** 3 / rate["gemm_s"] / 1e9)

    for _, row in df.iterrows():
        assert row["n_samples"] == 5 and len(row["time_samples_s"]) == 5
        assert row["time_min_s"] <= row["time_median_s"]
        assert row["mem_alloc_peak_bytes"] > 0 and row["mem_model_bytes"] > 0
        assert row["gflops"] == pytest.approx(row["flops"] / row["time_median_s"] / 1e9)
        assert row["tokens_per_s"] == pytest.approx(row["seqlen"] / row["time_median_s"])
        assert row["host"] and row["executor"] == "local" and row["concurrency"] == 1
    dense = df[df["backend"] == "dense"]
    assert (dense["rel_err"] < 1e-5).all() and (dense["mass_recall"] == 1).all()
    assert dense["n_hashes"].isna().all()

    # the worker measured the inputs and rotations the cell names: recompute one row here
    row = df[(df["backend"] == "numpy") & (df["seqlen"] == 128) & (df["n_hashes"] == 2)].iloc[0]
    task = Task.from_dict(
        {k: (None if pd.isna(row[k]) else row[k].item() if hasattr(row[k], "item") else row[k])
         for k in TASK_KEYS}
    )  # fmt: skip
    assert task.id == row["cell_id"]  # the row's cell_id is its task's id
    cfg = task.config()
    qk, v = make_inputs("gaussian", 1, 128, 64, 64, 0, np.float32)
    R = lshbench.random_rotations(64, cfg, rotation_seed(0), np.float32)
    out_np = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    expected = output_errors(out_np, dense_reference(qk, v, False))
    assert row["rel_err"] == pytest.approx(expected.rel_err, rel=1e-12)
    assert row["flops"] == attention_flops(True, 1, 128, 64, 64, cfg)

    # resume: nothing runs again, nothing is appended; the table is the same rows
    again = lshbench.run_sweep(out, backend="numpy,dense", **SMALL_GRID)
    assert len(stored(out)) == 6
    assert "sgemm" not in json.loads((out / "metadata.json").read_text())  # nothing ran
    assert list(again["cell_id"]) == list(df["cell_id"])
    assert (again["run_id"] == meta["run_id"]).all()  # reused: the run that measured them

    # --force redoes the rows (appended), the table still has one row per cell
    forced = lshbench.run_sweep(out, backend="dense", force=True, **SMALL_GRID)
    assert len(stored(out)) == 6 + 2 and len(forced) == 2
    loaded = lshbench.load_results(out)
    assert len(loaded) == 6 and loaded["cell_id"].is_unique
    assert set(loaded["run_id"]) == {meta["run_id"], forced["run_id"][0]}
    assert len(json.loads((out / "metadata.json").read_text())["runs"]) == 3


def test_failures_become_rows_and_the_sweep_goes_on(tmp_path: Path, test_backends) -> None:
    grid = {
        "seqlen": [512],
        "chunk_len": [32],
        "n_hashes": [1, 8],
        "threads": 1,
        "input": "gaussian",
    }
    backends = "dense,test-raise,test-sleep,test-killed,numpy"
    spec = build_spec("quick", backend=backends, **grid)
    tasks, _ = plan_tasks(spec)
    need = {
        (t.backend, t.n_hashes): predicted_bytes(t, lshbench.backend_spec(t.backend))[0]
        for t in tasks
    }
    over = need[("numpy", 8)]
    budget = max(n for key, n in need.items() if key != ("numpy", 8)) + 1
    assert budget <= over
    start = time.perf_counter()
    df = lshbench.run_sweep(
        tmp_path / "fail", backend=backends, timeout=6, mem_budget=budget, **grid
    )
    elapsed = time.perf_counter() - start
    got = {
        (r.backend, None if pd.isna(r.n_hashes) else int(r.n_hashes)): r for r in df.itertuples()
    }
    assert got[("dense", None)].status == "ok"
    assert got[("numpy", 1)].status == "ok"
    assert got[("test-raise", None)].status == "error"
    assert "boom from the test backend" in got[("test-raise", None)].message
    assert got[("test-sleep", None)].status == "timeout"
    assert "--timeout=6" in got[("test-sleep", None)].message
    # killed from outside (here: by itself), not by the kernel's OOM killer: an error row
    assert got[("test-killed", None)].status == "error"
    assert "killed by signal SIGKILL" in got[("test-killed", None)].message
    assert got[("numpy", 8)].status == "oom_predicted"
    assert "--mem-budget" in got[("numpy", 8)].message
    assert elapsed < 60  # the sleeping backend (120 s) was cut off


def test_a_row_whose_output_is_not_finite_is_never_ok(tmp_path: Path, test_backends) -> None:
    """NaN, +Inf or -Inf anywhere in a backend's output (the input is finite) makes its row
    an error that says so; the other rows of the cell are measured as usual."""
    backends = "dense,test-nan,test-inf,test-neginf"
    grid = {"seqlen": [64, 96], "chunk_len": [32], "n_hashes": [1], "threads": 1,
            "input": "gaussian"}  # fmt: skip
    df = lshbench.run_sweep(tmp_path / "nonfinite", backend=backends, **grid)
    assert len(df) == 8
    for row in df.itertuples():
        if row.backend == "dense":
            assert row.status == "ok"
            continue
        assert row.status == "error", (row.backend, row.message)
        assert "1 of " in row.message and "NaN or Inf" in row.message, row.message
        assert "Traceback" not in row.message and pd.isna(row.rel_err)


def test_a_dead_workers_message_holds_no_traceback(tmp_path: Path, test_backends) -> None:
    df = lshbench.run_sweep(tmp_path / "fatal", backend="dense,test-fatal", **{
        **SMALL_GRID, "seqlen": [64], "n_hashes": [1]})  # fmt: skip
    row = df[df["backend"] == "test-fatal"].iloc[0]
    assert row["status"] == "error", row["message"]
    assert row["message"].startswith("worker died with exit status "), row["message"]
    assert "Fatal: fatal from the test backend" in row["message"], row["message"]
    assert "Traceback" not in row["message"] and 'File "' not in row["message"]


def test_memory_columns_are_honest(tmp_path: Path, test_backends) -> None:
    """A backend allocating a known 200 MiB (NumPy, and Numba's NRT inside @njit) is
    reported within 10% by both the allocated and the resident peak."""
    pytest.importorskip("numba")
    df = lshbench.run_sweep(
        tmp_path / "mem",
        backend="test-alloc-numpy,test-alloc-numba",
        seqlen=[64],
        threads=1,
        input="gaussian",
    )
    assert (df["status"] == "ok").all(), df[["backend", "message"]]
    size = sweep_backends.ALLOC_BYTES
    for row in df.itertuples():
        assert row.mem_alloc_peak_bytes == pytest.approx(size, rel=0.10), row.backend
        if "resident peak unavailable" not in row.message:
            assert row.mem_rss_peak_bytes == pytest.approx(size, rel=0.10), row.backend


def test_worker_exits_when_its_executor_dies(test_backends) -> None:
    """An orphaned worker (its stdin closes) stops at once instead of finishing its cell."""
    spec = build_spec("quick", backend="test-sleep", seqlen=[64], threads=1, input="gaussian")
    tasks, _ = plan_tasks(spec)
    entry = lshbench.backend_spec("test-sleep")
    payload = {
        "tasks": [t.as_dict() for t in tasks],
        "repeats": 5,
        "backends": {"test-sleep": entry.as_dict()},
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "lshbench.measurement.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc.stdin.write((json.dumps(payload) + "\n").encode())
    proc.stdin.flush()
    while b"first call" not in proc.stdout.readline():  # the backend is now sleeping
        pass
    start = time.perf_counter()
    proc.stdin.close()
    assert proc.wait(timeout=30) != 0
    assert time.perf_counter() - start < 10


def test_write_errors_during_the_sweep_are_one_line_and_keep_written_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (ENOSPC) while rows are appended: the sweep stops with one line naming the
    directory and the OS error; the rows written before it stay in the store."""
    import errno

    from lshbench.results.store import ResultStore
    from lshbench.sweep.run import ResultsWriteError

    out = tmp_path / "full"
    append = ResultStore.append
    written: list[str] = []

    def append_until_full(self, row):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.db_path))
        append(self, row)
        written.append(row["cell_id"])

    monkeypatch.setattr(ResultStore, "append", append_until_full)
    with pytest.raises(ResultsWriteError) as info:
        lshbench.run_sweep(out, backend="numpy,dense", **SMALL_GRID)
    message = str(info.value)
    assert "\n" not in message and str(out) in message and "No space left" in message
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert list(lshbench.load_results(out)["cell_id"]) == written
    # the same command afterwards completes the grid, keeping the rows written before
    df = lshbench.run_sweep(out, backend="numpy,dense", **SMALL_GRID)
    assert len(df) == 6 and (df["status"] == "ok").all()
    assert [r["cell_id"] for r in stored(out)][:2] == written and len(stored(out)) == 6


def sweep_with_failing_store(out: Path, patch: str) -> str:
    """Run ``lshbench sweep`` (one dense cell into ``out``) in a fresh interpreter after
    ``patch`` (Python source) broke the results store; check it exits 1 with one
    ``Error:`` line naming ``out`` and no traceback, and return that line."""
    code = (
        f"{patch}\n"
        "from lshbench.cli import main\n"
        f"sys.argv = ['lshbench', 'sweep', '--out', {str(out)!r}, '--seqlen', '64',\n"
        "            '--backend', 'dense', '--threads', '1', '--input', 'gaussian', '--quiet']\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    error = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and str(out) in error[0], res.stderr
    return error[0]


def test_write_error_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    """The CLI prints the ResultsWriteError as one line, exit status 1, no traceback."""
    error = sweep_with_failing_store(
        tmp_path / "full",
        "import errno, os, sys\n"
        "from lshbench.results.store import ResultStore\n"
        "def full(self, row):\n"
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.db_path))\n"
        "ResultStore.append = full",
    )
    assert "No space left" in error


def test_store_error_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    """An SQLite failure inside the store (a full disk as SQLite reports it) ends the sweep
    with one line naming the directory, exit status 1, no traceback; nothing half written."""
    out = tmp_path / "full"
    error = sweep_with_failing_store(
        out,
        "import sqlite3, sys\n"
        "from lshbench.results.store import ResultStore\n"
        "def full(conn, rows):\n"
        "    raise sqlite3.OperationalError('database or disk is full')\n"
        "ResultStore._insert = staticmethod(full)",
    )
    assert "database or disk is full" in error and "resume" in error
    assert stored(out) == []


def test_sigkill_is_oom_only_when_the_oom_killer_acted(
    tmp_path: Path, test_backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed by SIGKILL while an OOM-kill counter rose is an oom row; with no
    counter readable it is an error row that says the cause is unknown."""
    import itertools

    from lshbench.sweep import local_executor, oom_kills

    ticks = itertools.count()

    def rising(*args):
        return {"vmstat": next(ticks)}  # every read sees one more OOM kill

    monkeypatch.setattr(local_executor, "oom_kill_counts", rising)
    monkeypatch.setattr(oom_kills, "oom_kill_counts", rising)
    grid = {"seqlen": [64], "threads": 1, "input": "gaussian"}
    df = lshbench.run_sweep(tmp_path / "oom", backend="test-killed", **grid)
    assert df["status"].item() == "oom", df["message"].item()
    assert "OOM killer" in df["message"].item()

    monkeypatch.setattr(local_executor, "oom_kill_counts", lambda *args: {})
    df = lshbench.run_sweep(tmp_path / "unknown", backend="test-killed", **grid)
    assert df["status"].item() == "error"
    assert "killed by signal SIGKILL" in df["message"].item()
    assert "no OOM-kill counter" in df["message"].item()


def test_oom_kill_counters_of_cgroup_v1_and_v2(tmp_path: Path) -> None:
    from lshbench.sweep.oom_kills import oom_kill_counts, oom_killed_since

    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "vmstat").write_text("nr_free_pages 5\noom_kill 7\n")
    (proc / "self" / "cgroup").write_text("4:memory:/job/7\n0::/user.slice/job\n")
    (cg / "memory" / "job" / "7").mkdir(parents=True)
    (cg / "memory" / "job" / "7" / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    )
    (cg / "user.slice" / "job").mkdir(parents=True)
    (cg / "user.slice" / "job" / "memory.events").write_text("low 0\noom 1\noom_kill 1\n")
    before = oom_kill_counts(proc, cg)
    assert before == {"vmstat": 7, "cgroup2": 1, "cgroup1": 2}
    assert not oom_killed_since(before, oom_kill_counts(proc, cg))
    (cg / "user.slice" / "job" / "memory.events").write_text("low 0\noom 2\noom_kill 2\n")
    assert oom_killed_since(before, oom_kill_counts(proc, cg))
    assert oom_kill_counts(tmp_path / "none", tmp_path / "none") == {}
    assert not oom_killed_since({}, {"vmstat": 3})
