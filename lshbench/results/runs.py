"""Run entries of a results store: one per sweep run, never rewritten by another run.

Each entry is a JSON object with at least ``run_id``, ``machine_id``, ``code_id`` and
``start_time``/``end_time``; the sweep adds the machine facts (``machine``), versions, the
command line and so on. Only the :class:`RunLog` that began an entry may update it, and an
entry's ids, machine facts and start time never change, so a later run on another machine
cannot rewrite what an earlier run ran on (docs/design.md section 7, provenance).

``metadata.json`` is exported from these entries (:meth:`RunLog.metadata`): the latest
run's entry at the top level (as lshbench <= 0.1 wrote it), ``machines`` (machine_id ->
facts of every run) and ``runs`` (every entry, oldest first).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from lshbench.core.config import fail
from lshbench.util import utc_now

__all__ = ["FIXED_KEYS", "RunLog"]

#: keys of a run entry fixed when it begins
FIXED_KEYS = ("run_id", "machine_id", "code_id", "machine", "start_time")

WriteTransaction = Callable[[str], AbstractContextManager[sqlite3.Connection]]


def _dumps(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"), default=str)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class RunLog:
    """The ``runs`` table of one open store (``write(what)`` opens a write transaction)."""

    def __init__(self, conn: sqlite3.Connection, write: WriteTransaction) -> None:
        self._conn = conn
        self._write = write
        self._mine: dict[str, dict[str, Any]] = {}  # runs begun here, by run_id
        self._current: str | None = None

    @property
    def current(self) -> dict[str, Any] | None:
        """The entry of the run begun last by this store, or None."""
        return self._mine[self._current] if self._current is not None else None

    def begin(self, entry: dict[str, Any]) -> str:
        """Insert a new entry; ConfigError when an id is missing or the run_id exists."""
        for key in ("run_id", "machine_id", "code_id"):
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                fail(key, value, "a run entry needs a non-empty string")
        run_id = entry["run_id"]
        full = {"start_time": utc_now(), "end_time": None, **entry}
        with self._write(f"record run {run_id}") as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone():
                fail("run_id", run_id, "already recorded in this store; a run's entry is "
                     "never rewritten")  # fmt: skip
            self._insert(conn, full)
        self._mine[run_id] = full
        self._current = run_id
        return run_id

    @staticmethod
    def _insert(conn: sqlite3.Connection, entry: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO runs (run_id, machine_id, code_id, start_time, end_time, entry) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry["run_id"], entry.get("machine_id"), entry.get("code_id"),
             _text(entry.get("start_time")), _text(entry.get("end_time")), _dumps(entry)),
        )  # fmt: skip

    def update(self, run_id: str, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into a run begun here; its :data:`FIXED_KEYS` may not change."""
        entry = self._mine.get(run_id)
        if entry is None:
            fail("run_id", run_id, "was not begun by this store; an earlier run's entry is "
                 "never rewritten")  # fmt: skip
        for key in FIXED_KEYS:
            if key in updates and updates[key] != entry.get(key):
                fail(key, updates[key], f"fixed when run {run_id} began")
        merged = {**entry, **updates}
        with self._write(f"update run {run_id}") as conn:
            conn.execute(
                "UPDATE runs SET end_time=?, entry=? WHERE run_id=?",
                (merged.get("end_time"), _dumps(merged), run_id),
            )
        self._mine[run_id] = merged

    def end(self, run_id: str, updates: dict[str, Any]) -> None:
        """:meth:`update` with ``end_time`` (now, unless given)."""
        self.update(run_id, {"end_time": utc_now(), **updates})

    def entries(self) -> list[dict[str, Any]]:
        """Every run entry, oldest first (an unreadable one is skipped)."""
        out = []
        for (text,) in self._conn.execute("SELECT entry FROM runs ORDER BY seq").fetchall():
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def metadata(self) -> dict[str, Any] | None:
        """metadata.json's content, or None when no run is recorded."""
        entries = self.entries()
        if not entries:
            return None
        machines = {
            e["machine_id"]: e.get("machine")
            for e in entries
            if isinstance(e.get("machine_id"), str)
        }
        return {**entries[-1], "machines": machines, "runs": entries}

    def import_legacy(self, path: Path) -> int:
        """Copy the runs of a legacy metadata.json (its ``runs`` list; the top-level
        ``workers`` go to the last one) into the table, inside the caller's transaction;
        returns how many. Legacy entries have no machine_id: no row of theirs is reused."""
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            return 0
        if not isinstance(meta, dict):
            return 0
        runs = [r for r in meta.get("runs", []) if isinstance(r, dict)]
        if not runs and meta.get("run_id"):
            runs = [{k: v for k, v in meta.items() if k != "runs"}]
        if runs and isinstance(meta.get("workers"), dict):
            runs[-1] = {"workers": meta["workers"], **runs[-1]}
        count = 0
        for i, entry in enumerate(runs):
            run_id = entry.get("run_id")
            entry = {**entry, "run_id": run_id if isinstance(run_id, str) else f"legacy-{i}"}
            seen = "SELECT 1 FROM runs WHERE run_id=?"
            if self._conn.execute(seen, (entry["run_id"],)).fetchone():
                continue
            for key in ("machine_id", "code_id"):
                if not isinstance(entry.get(key), str):
                    entry[key] = None
            self._insert(self._conn, entry)
            count += 1
        return count
