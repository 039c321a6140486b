"""SIGKILL the sweep at random moments: the store is never corrupt and a re-run completes
the grid with no duplicate and no missing row."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

import lshbench
from lshbench.results.cells import task_id
from lshbench.sweep.plan import plan_tasks
from lshbench.sweep.spec import build_spec

ARGS = ["--seqlen", "128,256,512", "--chunk-len", "32", "--n-hashes", "1,2,4",
        "--backend", "numpy,dense", "--threads", "1", "--input", "gaussian", "--quiet"]  # fmt: skip
N_KILLS = 3


def sweep_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "lshbench", "sweep", "--out", str(out), *ARGS]


def children(pid: int) -> list[int]:
    """Child pids of a process (Linux /proc), [] where unavailable."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except OSError:
        return False
    return state != "Z"


def count_lines(log: Path) -> int:
    return log.read_bytes().count(b"\n") if log.exists() else 0


def check_store(out: Path) -> set[str]:
    """Every complete log line is a row, ids are unique, exports (if any) read back."""
    log = out / "results.jsonl"
    ids: list[str] = []
    if log.exists():
        data = log.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            ids.append(json.loads(line)["cell_id"])
    assert len(ids) == len(set(ids)), "a row was logged twice"
    if ids:
        assert set(lshbench.load_results(out)["cell_id"]) == set(ids)
    if (out / "results.parquet").exists():
        assert set(pd.read_parquet(out / "results.parquet")["cell_id"]) <= set(ids)
        pd.read_csv(out / "results.csv")
    return set(ids)


def test_sigkill_never_corrupts_and_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    spec = build_spec("quick", seqlen=[128, 256, 512], chunk_len=[32], n_hashes=[1, 2, 4],
                      backend="numpy,dense", threads=1, input="gaussian")  # fmt: skip
    expected = {task_id(t) for t in plan_tasks(spec)[0]}
    rng = random.Random()
    moments = []
    for k in range(N_KILLS):
        # kill once the log holds a random number of rows (so every kill lands mid-sweep),
        # after a random extra delay
        now = count_lines(out / "results.jsonl")
        target = min(now + rng.randint(0, 3), len(expected) - 4)
        delay = rng.uniform(0.0, 0.5)
        proc = subprocess.Popen(sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while count_lines(out / "results.jsonl") < target and proc.poll() is None:
            assert time.monotonic() < deadline, "sweep made no progress"
            time.sleep(0.02)
        time.sleep(delay)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        moments.append((k, target, round(delay, 2), proc.returncode))
        assert proc.returncode == -signal.SIGKILL, f"the sweep ended before the kill: {moments}"
        done = check_store(out)
        assert done <= expected, moments
        for pid in workers:  # an orphaned worker notices and exits
            stop = time.monotonic() + 15
            while alive(pid) and time.monotonic() < stop:
                time.sleep(0.05)
            assert not alive(pid), f"worker {pid} outlived its sweep ({moments})"
    assert len(check_store(out)) < len(expected), f"no kill landed mid-sweep: {moments}"

    res = subprocess.run(sweep_cmd(out), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"lshbench report {out}" in res.stdout
    assert "results.parquet" in res.stdout
    assert check_store(out) == expected, moments
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["cell_id"]) == expected and table["cell_id"].is_unique
    assert (table["status"] == "ok").all()
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()
    assert os.path.getsize(out / "results.csv") > 0
