"""Fault injection on the results store: a full disk mid-append, a
writer killed mid-append, and several processes writing one directory at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import lshbench
from lshbench.results.store import ResultStore, StoreError, make_row

REPO = Path(__file__).resolve().parent.parent


def task(L: int, seed: int = 0) -> dict:
    return {"backend": "numpy", "seqlen": L, "batch": 2, "d": 4, "dv": 4, "input": "gaussian",
            "causal": False, "dtype": "float32", "threads": 1, "seed": seed, "n_hashes": 2,
            "n_buckets": 8, "chunk_len": 4, "chunks_before": 1, "chunks_after": 0}  # fmt: skip


def ok(L: int, seed: int = 0, message: str = "") -> dict:
    return make_row(task(L, seed), "ok", message, time_median_s=0.5, time_samples_s=[0.5])


def integrity(directory: Path) -> str:
    conn = sqlite3.connect(directory / "results.sqlite")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


# ------------------------------------------------------------- a full disk mid-append


def test_a_full_disk_mid_sweep_keeps_every_committed_row(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        for L in range(1, 4):
            store.append(ok(L))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 3}")  # the disk fills up
        appended = 3
        with pytest.raises(StoreError) as info:
            for L in range(100, 200):  # rows of about a page each
                store.append(ok(L, message="x" * 3000))
                appended += 1
        text = str(info.value)
        assert "database or disk is full" in text and "kept" in text and "\n" not in text
        assert str(tmp_path) in text
        assert 3 <= appended < 103
        failed = ok(100 + appended - 3, message="x" * 3000)["cell_id"]
        assert len(store.all_rows()) == appended  # no torn row, the failed one absent
        store._conn.execute("PRAGMA max_page_count = 1000000")  # space freed
        store.append(ok(1000))
        store.export()
    loaded = lshbench.load_results(tmp_path)
    assert len(loaded) == appended + 1 and failed not in set(loaded["cell_id"])
    assert (loaded["status"] == "ok").all() and integrity(tmp_path) == "ok"


class FailingCommit:
    """A connection whose next COMMIT fails as on a full disk (after the INSERT ran)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.armed = True

    def execute(self, sql: str, *args):
        if sql == "COMMIT" and self.armed:
            self.armed = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


def test_a_failed_commit_leaves_no_part_of_the_row(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(ok(1))
        real = store._conn
        store._conn = FailingCommit(real)
        with pytest.raises(StoreError, match="database or disk is full"):
            store.extend([ok(2), ok(3)])  # one transaction: both or neither
        store._conn = real
        assert [r["seqlen"] for r in store.all_rows()] == [1]
        assert set(store.rows) == {ok(1)["cell_id"]}
        store.append(ok(4))
    assert lshbench.load_results(tmp_path)["seqlen"].tolist() == [1, 4]


WRITER = """
import sys
from lshbench.results.store import ResultStore, make_row
task = {"backend": "numpy", "batch": 2, "d": 4, "dv": 4, "input": "gaussian",
        "causal": False, "dtype": "float32", "threads": 1, "seed": 0, "n_hashes": 2,
        "n_buckets": 8, "chunk_len": 4, "chunks_before": 1, "chunks_after": 0}
with ResultStore(sys.argv[1]) as store:
    L = 1
    while True:
        store.append(make_row(dict(task, seqlen=L), "ok", "y" * 2000, time_median_s=0.5))
        print(L, flush=True)
        L += 1
"""


def test_a_writer_killed_mid_append_leaves_whole_rows(tmp_path: Path) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        committed = 0
        for line in proc.stdout:
            committed = int(line)
            if committed >= 40:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert committed >= 40
    loaded = lshbench.load_results(tmp_path)
    assert len(loaded) >= committed and (loaded["message"].str.len() == 2000).all()
    assert sorted(loaded["seqlen"]) == list(range(1, len(loaded) + 1))
    assert integrity(tmp_path) == "ok"
    with ResultStore(tmp_path) as store:  # and the directory goes on
        store.append(ok(10**6))
    assert len(lshbench.load_results(tmp_path)) == len(loaded) + 1


# ------------------------------------------------- killed writers, concurrent writers

N_WRITERS = 4
N_ROWS = 25


def concurrent_writer(directory: str, worker: int, barrier) -> None:
    """Body of one spawned process: a run of its own, rows and exports into ``directory``."""
    barrier.wait()  # every process opens the (fresh) store at once
    with ResultStore(directory, busy_timeout_s=120) as store:
        run_id = f"run{worker}"
        store.begin_run({"run_id": run_id, "machine_id": f"m{worker}", "code_id": "c"})
        for i in range(N_ROWS):
            store.append(ok(10 + i, seed=worker))
            if i % 8 == 0:
                store.export()
        store.end_run(run_id)


def test_processes_writing_one_directory_at_once_lose_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    legacy = [ok(1), ok(2), ok(3)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in legacy))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_WRITERS)
    procs = [
        ctx.Process(target=concurrent_writer, args=(str(tmp_path), w, barrier))
        for w in range(N_WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        if p.is_alive():  # stuck: fail below, leave nothing running
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * N_WRITERS
    with ResultStore(tmp_path) as store:
        rows = store.all_rows()
        runs = store.runs()
        store.export()
    expected = {r["cell_id"] for r in legacy} | {
        ok(10 + i, seed=w)["cell_id"] for w in range(N_WRITERS) for i in range(N_ROWS)
    }
    ids = [r["cell_id"] for r in rows]
    assert len(ids) == len(expected) and set(ids) == expected  # each exactly once
    assert sorted(r["run_id"] for r in runs) == [f"run{w}" for w in range(N_WRITERS)]
    assert all(r["end_time"] for r in runs)
    assert len(lshbench.load_results(tmp_path)) == len(expected)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert len(meta["runs"]) == N_WRITERS and integrity(tmp_path) == "ok"
    assert not list(tmp_path.glob(".*.tmp"))


class LockedConnection:
    """Answers "database is locked" to its first ``busy_answers`` statements, as SQLite
    does (without waiting its busy timeout) when processes switch a fresh file to WAL."""

    def __init__(self, busy_answers: int) -> None:
        self.busy_answers = busy_answers
        self.calls = 0

    def execute(self, sql: str) -> sqlite3.Cursor:
        self.calls += 1
        if self.calls <= self.busy_answers:
            raise sqlite3.OperationalError("database is locked")
        return sqlite3.connect(":memory:").execute("SELECT 'wal'")


def test_switching_to_wal_retries_a_busy_answer_until_the_timeout() -> None:
    from lshbench.results.store import _enter_wal_mode

    conn = LockedConnection(busy_answers=3)
    _enter_wal_mode(conn, timeout_s=5)  # type: ignore[arg-type]
    assert conn.calls == 4
    always_busy = LockedConnection(busy_answers=10**6)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _enter_wal_mode(always_busy, timeout_s=0.05)  # type: ignore[arg-type]
    assert always_busy.calls >= 2
