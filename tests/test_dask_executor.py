"""Sweeps on Dask: same rows as the local executor, oom rows from the per-cell memory
limit, lost workers, resume across executors, and one-line errors from the command line.

One 2-worker LocalCluster serves the whole module (about 3 s to start); every cell still
runs in a spawned worker process, so the grids are tiny.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed", reason="dask[distributed] is not installed (extra 'dask')")

import dask_backends
from helpers import SMALL_GRID

import lshbench
from lshbench.sweep.dask_executor import DaskExecutor

TESTS = str(Path(__file__).parent)
ERRORS = ["attn_tv", "mass_recall", "top1_recall", "out_err_v", "rel_err", "max_abs_err", "cos_sim"]
MEM_LIMIT = 768 * 2**20  # per cell process; dask_backends.BIG_BYTES is 1.5 GiB
TEST_BACKENDS = {
    "test-alloc-big": "AllocBigBackend",
    "test-kill-worker": "KillWorkerBackend",
    "test-killed": "KilledBackend",
}


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kill") / "killed"


@pytest.fixture(scope="module")
def dask_exec(marker: Path):
    """A started DaskExecutor on a 2-worker LocalCluster whose workers (and so their cell
    processes) see tests/ on PYTHONPATH and the kill marker's path."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", dask_backends.MARKER_ENV)}
    os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, saved["PYTHONPATH"] or ""])
    os.environ[dask_backends.MARKER_ENV] = str(marker)
    for name, cls in TEST_BACKENDS.items():
        lshbench.register_backend(name, f"dask_backends:{cls}", uses_hashing=False)
    executor = DaskExecutor(workers=2, mem_limit_bytes=MEM_LIMIT, timeout_s=120)
    try:
        with executor:
            yield executor
    finally:
        for name in TEST_BACKENDS:
            lshbench.unregister_backend(name)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_ids(out: Path) -> Counter[str]:
    """How often each cell_id was recorded in the directory's store."""
    with closing(sqlite3.connect(out / "results.sqlite")) as db:
        return Counter(cell_id for (cell_id,) in db.execute("SELECT cell_id FROM rows"))


def worker_pids(executor: DaskExecutor) -> dict[str, int]:
    return executor._client.run(os.getpid)


def test_dask_rows_match_local_and_resume_across_executors(
    tmp_path: Path, dask_exec: DaskExecutor
) -> None:
    local = lshbench.run_sweep(tmp_path / "local", backend="numpy,dense", **SMALL_GRID)
    dask = lshbench.run_sweep(
        tmp_path / "dask", backend="numpy,dense", executor=dask_exec, **SMALL_GRID
    )
    assert len(local) == 6 and (local["status"] == "ok").all(), local[["status", "message"]]
    assert (dask["status"] == "ok").all(), dask[["status", "message"]]
    assert list(dask["cell_id"]) == list(local["cell_id"])  # same cells, grid order
    # same inputs, rotations and single-threaded code: the same error metrics (to 1e-6
    # absolute: an exact row's errors are float32 rounding, about 1e-7, whose last bits follow
    # the memory alignment that vectorized sums see in each process)
    np.testing.assert_allclose(
        dask[ERRORS].to_numpy(float), local[ERRORS].to_numpy(float), rtol=1e-6, atol=1e-6
    )
    assert (local["executor"] == "local").all() and (local["concurrency"] == 1).all()
    assert (dask["executor"] == "dask").all() and (dask["concurrency"] == 2).all()
    assert (dask["host"] == socket.gethostname()).all()  # filled by the cell process
    assert (dask["calib_gflops"] > 0).all() and (dask["n_samples"] == 5).all()
    meta = json.loads((tmp_path / "dask" / "metadata.json").read_text())
    assert meta["executor"] == "dask"
    assert meta["workers"]["1"]["thread_vars"]["OMP_NUM_THREADS"] == "1"
    assert meta["workers"]["1"]["mem_limit_bytes"] == MEM_LIMIT

    # resume across executors: a local run of L=64, then a Dask run of the whole grid
    mixed = tmp_path / "mixed"
    first = lshbench.run_sweep(mixed, backend="numpy,dense", **{**SMALL_GRID, "seqlen": [64]})
    both = lshbench.run_sweep(mixed, backend="numpy,dense", executor=dask_exec, **SMALL_GRID)
    assert list(both["cell_id"]) == list(local["cell_id"]) and (both["status"] == "ok").all()
    assert log_ids(mixed) == Counter(both["cell_id"])  # nothing ran twice
    by_l = both.set_index("cell_id")
    assert (by_l.loc[first["cell_id"], "executor"] == "local").all()
    assert set(by_l["executor"]) == {"local", "dask"}
    np.testing.assert_allclose(
        both[ERRORS].to_numpy(float), local[ERRORS].to_numpy(float), rtol=1e-6, atol=1e-6
    )


def test_cell_over_the_memory_limit_is_an_oom_row_and_the_worker_lives(
    tmp_path: Path, dask_exec: DaskExecutor
) -> None:
    before = worker_pids(dask_exec)
    df = lshbench.run_sweep(
        tmp_path / "mem",
        backend="numpy,dense,test-alloc-big",
        executor=dask_exec,
        **{**SMALL_GRID, "seqlen": [64], "n_hashes": [1]},
    )
    status = dict(zip(df["backend"], df["status"], strict=True))
    assert status == {"dense": "ok", "numpy": "ok", "test-alloc-big": "oom"}, df["message"]
    message = df.loc[df["backend"] == "test-alloc-big", "message"].item()
    assert "MemoryError" in message and "cell memory limit 768 MiB" in message
    assert worker_pids(dask_exec) == before  # no Dask worker died or restarted


def test_cell_process_killed_from_outside_is_an_error_row_not_oom(
    tmp_path: Path, dask_exec: DaskExecutor
) -> None:
    """A cell process killed by SIGKILL without the OOM killer acting: an
    error row saying so, on Dask as locally; the Dask worker lives."""
    before = worker_pids(dask_exec)
    df = lshbench.run_sweep(
        tmp_path / "sigkill",
        backend="dense,test-killed",
        executor=dask_exec,
        **{**SMALL_GRID, "seqlen": [64]},
    )
    status = dict(zip(df["backend"], df["status"], strict=True))
    assert status == {"dense": "ok", "test-killed": "error"}, df["message"]
    assert "killed by signal SIGKILL" in df.loc[df["backend"] == "test-killed", "message"].item()
    assert worker_pids(dask_exec) == before


def test_worker_killed_mid_cell_is_retried(
    tmp_path: Path, dask_exec: DaskExecutor, marker: Path
) -> None:
    marker.unlink(missing_ok=True)
    out = tmp_path / "killed"
    df = lshbench.run_sweep(
        out, backend="numpy,dense,test-kill-worker", executor=dask_exec, **SMALL_GRID
    )
    assert marker.exists(), "the test backend never killed its worker"
    killed_pid = int(marker.read_text())
    assert killed_pid not in worker_pids(dask_exec).values()  # the nanny restarted it
    assert len(df) == 8 and (df["status"] == "ok").all(), df[["backend", "status", "message"]]
    assert set(log_ids(out).values()) == {1}  # each row written once: no lost, no duplicate


def test_worker_lost_past_allowed_failures_is_recorded_and_rerun_completes(
    tmp_path: Path, dask_exec: DaskExecutor, marker: Path
) -> None:
    marker.unlink(missing_ok=True)

    def set_allowed_failures(n: int) -> int:
        def set_it(dask_scheduler, n=n):  # runs in the scheduler
            old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
            return old

        return dask_exec._client.run_on_scheduler(set_it)

    out = tmp_path / "failed"
    options = {"backend": "numpy,dense,test-kill-worker", "executor": dask_exec, **SMALL_GRID}
    old = set_allowed_failures(0)
    try:
        first = lshbench.run_sweep(out, **options)
    finally:
        set_allowed_failures(old)
    assert marker.exists()
    lost = first["seqlen"] == dask_backends.KILL_SEQLEN
    assert (first.loc[lost, "status"] == "error").all(), first[["status", "message"]]
    assert first.loc[lost, "message"].str.contains("Dask workers died").all()
    assert (first.loc[lost, "host"] == socket.gethostname()).all()  # not the worker's IP
    assert (first.loc[~lost, "status"] == "ok").all()  # the other cell's rows are kept
    kept = first.loc[~lost].set_index("cell_id")["finished_at"]

    again = lshbench.run_sweep(out, retry_failed=True, **options)
    assert list(again["cell_id"]) == list(first["cell_id"])
    assert (again["status"] == "ok").all(), again[["status", "message"]]
    assert (again.set_index("cell_id").loc[kept.index, "finished_at"] == kept).all()
    assert all(n == (2 if i not in kept.index else 1) for i, n in log_ids(out).items())


def test_cell_above_every_thread_budget_is_skipped(tmp_path: Path, dask_exec: DaskExecutor) -> None:
    budget = max(dask_exec._budgets.values())
    df = lshbench.run_sweep(
        tmp_path / "threads",
        backend="dense",
        executor=dask_exec,
        **{**SMALL_GRID, "seqlen": [64], "threads": budget + 1},
    )
    assert len(df) == 1 and df["status"].item() == "skipped", df["message"]
    assert f"threads={budget + 1} exceeds every Dask worker's thread budget" in df["message"].item()
    assert df["executor"].item() == "dask"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lshbench", "sweep", "--seqlen", "64", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "never"
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    res = run_cli("--executor", "dask", "--scheduler", address, "--out", str(out))
    elapsed = time.monotonic() - start
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert f"scheduler={address}" in lines[0] and "cannot reach" in lines[0]
    # the 5 s connect timeout plus interpreter start: a bound on a hang, not a benchmark
    assert elapsed < 30, elapsed
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--scheduler", "tcp://127.0.0.1:8786"], "scheduler=tcp://127.0.0.1:8786"),
        (["--workers", "2"], "workers=2"),
        (["--executor", "dask", "--workers", "0"], "workers=0"),
        (["--executor", "dask", "--workers", "2", "--scheduler", "tcp://h:1"], "workers=2"),
        (["--executor", "ray"], "executor=ray"),
        (["--executor", "dask", "--mem-limit", "lots"], "mem_limit=lots"),
    ],
)
def test_bad_executor_options_exit_2_with_one_line(
    tmp_path: Path, args: list[str], field: str
) -> None:
    out = tmp_path / "never"
    res = run_cli("--out", str(out), *args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and field in lines[0], res.stderr
    assert not out.exists()


def test_importing_the_executor_does_not_import_dask() -> None:
    code = (
        "import sys, lshbench.sweep.run, lshbench.sweep.executors, lshbench.cli; "
        "import lshbench.measurement.calibration; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_normalize_times_rescales_by_host_calibration() -> None:
    from lshbench.measurement.calibration import normalize_times

    frame = pd.DataFrame({"time_median_s": [1.0, 2.0, 3.0], "calib_gflops": [100.0, 50.0, None]})
    norm = normalize_times(frame, reference_gflops=100.0)
    # the slow host (half the GEMM rate) took twice as long: same normalized time
    assert norm[0] == pytest.approx(1.0) and norm[1] == pytest.approx(1.0)
    assert np.isnan(norm[2])
    assert normalize_times(frame).iloc[:2].tolist() == pytest.approx([4 / 3, 4 / 3])
