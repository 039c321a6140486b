"""SIGKILL the sweep at random moments: the store is never corrupt and a re-run completes
the grid with no duplicate and no missing row."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

import lshbench
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


def stored_ids(out: Path) -> list[str]:
    """cell_id of every row the store holds, in order ([] before the store exists)."""
    db = out / "results.sqlite"
    if not db.exists():
        return []
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        rows = conn.execute("SELECT row FROM rows ORDER BY seq").fetchall()
    return [json.loads(text)["cell_id"] for (text,) in rows]


def count_rows(out: Path) -> int:
    try:
        return len(stored_ids(out))
    except sqlite3.OperationalError:  # created this instant, tables not yet there
        return 0


def check_store(out: Path) -> set[str]:
    """The store opens, every row in it is whole (JSON with its cell_id), ids are unique,
    exports (if any) read back."""
    ids = stored_ids(out)
    assert len(ids) == len(set(ids)), "a row was stored twice"
    if ids:
        assert set(lshbench.load_results(out)["cell_id"]) == set(ids)
    if (out / "results.parquet").exists():
        assert set(pd.read_parquet(out / "results.parquet")["cell_id"]) <= set(ids)
        pd.read_csv(out / "results.csv")
    return set(ids)


def expected_ids() -> set[str]:
    """cell_id of every row of the grid of ARGS."""
    spec = build_spec("quick", seqlen=[128, 256, 512], chunk_len=[32], n_hashes=[1, 2, 4],
                      backend="numpy,dense", threads=1, input="gaussian")  # fmt: skip
    return {t.id for t in plan_tasks(spec)[0]}


def test_sigkill_never_corrupts_and_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    expected = expected_ids()
    rng = random.Random()
    moments = []
    for k in range(N_KILLS):
        # kill once the store holds a random number of rows (so every kill lands mid-sweep),
        # after a random extra delay
        now = count_rows(out)
        target = min(now + rng.randint(0, 3), len(expected) - 4)
        delay = rng.uniform(0.0, 0.5)
        proc = subprocess.Popen(sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while count_rows(out) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "sweep made no progress"
            time.sleep(0.02)
        time.sleep(delay)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        moments.append((k, target, round(delay, 2), proc.returncode))
        if proc.returncode != -signal.SIGKILL:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise AssertionError(f"the sweep ended before the kill: {moments}\n{err}")
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
    assert not list(out.glob(".*.tmp"))
    assert os.path.getsize(out / "results.csv") > 0


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_stop_signals_close_the_run_and_level_the_exports(tmp_path: Path, sig: int) -> None:
    """Ctrl-C, a job scheduler's SIGTERM and a closed terminal's SIGHUP end a sweep the same
    way: one line saying so, exit 128 + signal, the store and both exports holding the same
    rows, the run closed (end_time) and no worker left behind."""
    out = tmp_path / sig.name
    # the sweep's parent may ignore SIGINT (a background job): give the child the default
    proc = subprocess.Popen(
        sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    target = random.randint(1, 4)
    deadline = time.monotonic() + 60
    while count_rows(out) < target and proc.poll() is None:
        assert time.monotonic() < deadline, "sweep made no progress"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.3))
    workers = children(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode(errors="replace")
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert f"stopped by {sig.name}" in lines[-1] and "Traceback" not in err, err
    ids = check_store(out)
    assert 0 < len(ids) < len(expected_ids()), err  # stopped mid-sweep
    for table in (pd.read_parquet(out / "results.parquet"), pd.read_csv(out / "results.csv")):
        assert set(table["cell_id"]) == ids and len(table) == len(ids)
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta["runs"]) == 1 and meta["runs"][0]["end_time"], meta["runs"]
    for pid in workers:
        assert not alive(pid), f"worker {pid} outlived its sweep"
