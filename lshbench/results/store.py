"""The results store of a sweep directory (docs/design.md section 7): SQLite, then exports.

``DIR/results.sqlite`` is the source of truth: every row is committed in its own SQLite
transaction (WAL mode, ``synchronous=FULL``), so a row is either fully there or absent after
a kill, a full disk or a power cut; several processes may write the same directory at once
(SQLite's locking, with a busy timeout). Tables:

* ``rows(seq, cell_id, machine_id, code_id, run_id, status, row)``: every row ever
  recorded, in order; ``row`` is the row as JSON. A row's key is ``(cell_id, machine_id,
  code_id)``: a later row of the same key (``--force``) replaces an earlier one in the
  tables, rows of other machines or code versions stay as theirs.
* ``runs(seq, run_id, machine_id, code_id, start_time, end_time, entry)``: one entry per run
  (:meth:`ResultStore.begin_run`); only the run that began an entry updates it.
* ``store_info(key, value)``: schema version and what was imported from a legacy log.

``DIR/results.parquet``, ``DIR/results.csv`` and ``DIR/metadata.json`` are exports, always
complete (temporary file, then ``os.replace``); a directory that holds only exports is read,
never written (opening a store there is a ConfigError). A legacy ``results.jsonl`` log is
imported into the store once, in one transaction, and left in place.

Rows are validated on the way in (:func:`lshbench.results.schema.check_storable`: a
ConfigError naming the field) and on the way out (invalid rows are dropped, never counted as
done, with one warning line per source on the ``lshbench.results`` logger).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lshbench.core.config import fail
from lshbench.results.files import (
    CSV_NAME,
    LOG_NAME,
    PARQUET_NAME,
    atomic_write,
    read_export_rows,
    read_log_rows,
)
from lshbench.results.load import (
    BUSY_TIMEOUT_S,
    RESULT_FILES,
    STORE_NAME,
    StoreError,
    export_has_rows,
    json_rows,
    latest_rows,
    load_results,
    report_dropped,
    store_version,
)
from lshbench.results.runs import RunLog
from lshbench.results.schema import (
    COLUMNS,
    EXTRA_COLUMNS,
    STATUSES,
    Row,
    RowKey,
    check_storable,
    make_row,
    row_key,
    rows_to_frame,
    valid_rows,
)
from lshbench.results.upgrade import SCHEMA_VERSION, upgrade_rows
from lshbench.util import one_line

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "CSV_NAME",
    "EXTRA_COLUMNS",
    "LOG_NAME",
    "METADATA_NAME",
    "PARQUET_NAME",
    "RESULT_FILES",
    "STATUSES",
    "STORE_NAME",
    "ResultStore",
    "StoreError",
    "latest_rows",
    "load_results",
    "make_row",
    "rows_to_frame",
]

METADATA_NAME = "metadata.json"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rows (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, cell_id TEXT NOT NULL,
        machine_id TEXT NOT NULL, code_id TEXT NOT NULL, run_id TEXT, status TEXT NOT NULL,
        row TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS rows_by_key ON rows (cell_id, machine_id, code_id, seq)",
    """CREATE TABLE IF NOT EXISTS runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, machine_id TEXT,
        code_id TEXT, start_time TEXT, end_time TEXT, entry TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def _enter_wal_mode(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Put the database in WAL mode, waiting up to ``timeout_s`` for other openers.

    Switching a fresh file's journal mode takes an exclusive lock, and SQLite answers
    "database is locked" at once, without its busy timeout, when another process is doing
    the same switch (deadlock avoidance). Retry with backoff until the timeout; the mode is
    stored in the file, so once one process has switched it the others' pragma is a no-op.
    """
    deadline = time.monotonic() + timeout_s
    pause_s = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() + pause_s > deadline:
                raise
        time.sleep(pause_s)
        pause_s = min(2 * pause_s, 0.1)


class ResultStore:
    """The SQLite results store of one directory, used as a context manager.

    ``dir``: the directory. ``rows``: latest row per ``cell_id`` over every machine and code
    version, as read at open plus this store's appends (kept for callers of lshbench <= 0.1;
    resume must use :meth:`previous`). ``append(row)`` / ``extend(rows)`` commit rows;
    ``previous(task_id, machine_id, code_id)`` is the row resume may reuse; ``begin_run`` /
    ``update_run`` / ``end_run`` keep the per-run metadata; ``export()`` writes
    results.parquet, results.csv and metadata.json.
    """

    def __init__(
        self, directory: str | os.PathLike[str], busy_timeout_s: float = BUSY_TIMEOUT_S
    ) -> None:
        self.dir = Path(directory)
        self.db_path = self.dir / STORE_NAME
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._rows: dict[str, Row] = {}
        self._runs: RunLog | None = None
        self._reported: set[str] = set()  # warning lines already given
        self._version = SCHEMA_VERSION  # of the rows stored before this open (read at open)

    # ----------------------------------------------------------------------- open / close

    def __enter__(self) -> ResultStore:
        self._check_writable_target()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.db_path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            fail("out", str(self.dir), f"cannot open a results store there ({one_line(exc)})")
        self._conn = conn
        try:
            _enter_wal_mode(conn, self.busy_timeout_s)
            conn.execute("PRAGMA synchronous=FULL")
            with self._write("create the store"):
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO store_info VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                for stale in self.dir.glob(".*.tmp"):  # exports hold the lock while writing
                    stale.unlink(missing_ok=True)
            self._version = store_version(conn, str(self.db_path))
            self._runs = RunLog(conn, self._write)
            self._import_legacy()
            rows = self.all_rows()
            if not rows and (name := export_has_rows(self.dir)):
                self._refuse(name)
        except BaseException as exc:
            self.__exit__()
            if isinstance(exc, sqlite3.Error | StoreError):
                fail("out", str(self.dir), f"cannot open its results store ({one_line(exc)})")
            raise
        self._rows = {str(row["cell_id"]): row for row in rows}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            with self._lock, contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _refuse(self, export: str) -> None:
        fail(
            "out",
            str(self.dir),
            f"holds exported results ({export}) but no results store; they are read, never "
            "overwritten: sweep into a new --out",
        )

    def _check_writable_target(self) -> None:
        """Refuse, before creating anything, a directory holding exports and no store."""
        if not self.dir.is_dir() or self.db_path.exists():
            return
        log = self.dir / LOG_NAME
        if log.is_file() and valid_rows(upgrade_rows(read_log_rows(log, []), 0), []):
            return  # a legacy log: imported at open
        if name := export_has_rows(self.dir):
            self._refuse(name)

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the database's write lock, waited for
        up to the busy timeout); committed on success, rolled back on any error, and an
        SQLite error becomes a one-line :class:`StoreError`."""
        if self._conn is None:
            raise RuntimeError("ResultStore used outside its `with` block")
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | OSError) and not isinstance(exc, StoreError):
                    raise StoreError(
                        f"results store {self.dir}: could not {what} ({one_line(exc)}); every "
                        "row recorded before is kept"
                    ) from exc
                raise

    def _import_legacy(self) -> None:
        """Import a legacy ``results.jsonl`` (and its metadata.json runs) once."""
        log = self.dir / LOG_NAME
        if not log.is_file():
            return
        dropped: list[str] = []
        with self._write(f"import {LOG_NAME}") as conn:
            if conn.execute("SELECT 1 FROM store_info WHERE key='legacy_import'").fetchone():
                return
            rows = valid_rows(upgrade_rows(read_log_rows(log, dropped), 0), dropped)
            keys = {row_key(r) for r in rows}
            try:  # rows only an export holds (copied in beside the log): kept too
                export = read_export_rows(self.dir)
            except Exception:
                export = None
            extra = []
            if export is not None:
                upgraded = upgrade_rows(export[1], 0)  # exports record no version
                extra = [r for r in valid_rows(upgraded, []) if row_key(r) not in keys]
            self._insert(conn, extra + rows)
            runs = self._runs.import_legacy(self.dir / METADATA_NAME) if self._runs else 0
            info = {"rows": len(rows), "export_rows": len(extra), "runs": runs,
                    "dropped": len(dropped)}  # fmt: skip
            conn.execute("INSERT INTO store_info VALUES ('legacy_import', ?)", (json.dumps(info),))
        report_dropped(str(log), dropped, self._reported)

    # ----------------------------------------------------------------------- rows

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
        conn.executemany(
            "INSERT INTO rows (cell_id, machine_id, code_id, run_id, status, row) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    *row_key(r),
                    r.get("run_id"),
                    r["status"],
                    json.dumps(r, separators=(",", ":"), allow_nan=False),
                )
                for r in rows
            ],
        )

    @property
    def rows(self) -> dict[str, Row]:
        """Latest row per ``cell_id`` (any machine or code) read at open plus this store's
        appends. Kept for older callers; resume must use :meth:`previous`."""
        return self._rows

    def _stamp(self, row: Mapping[str, Any]) -> Row:
        """The row, validated, with the current run's ids where it has none."""
        clean = check_storable(row)
        run = self._runs.current if self._runs else None
        if run is not None:
            for key in ("run_id", "machine_id", "code_id"):
                if clean.get(key) is None:
                    clean[key] = run[key]
        return clean

    def append(self, row: Mapping[str, Any]) -> None:
        """Commit one finished row (one transaction: fully there or absent).

        A row without ``run_id``, ``machine_id`` or ``code_id`` gets the current run's
        (:meth:`begin_run`); a row measured elsewhere keeps its own. ConfigError (naming the
        field) when a value cannot be stored; :class:`StoreError` when the disk is full or
        the database stays locked: nothing of the row is written, earlier rows are kept.
        """
        self.extend([row])

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Commit several rows in one transaction: all of them or none."""
        clean = [self._stamp(r) for r in rows]
        if not clean:
            return
        with self._write(f"record row {clean[0]['cell_id']}") as conn:
            self._insert(conn, clean)
        for row in clean:
            self._rows[str(row["cell_id"])] = row

    def all_rows(self) -> list[Row]:
        """Every valid row ever recorded, in order (invalid ones dropped with a warning)."""
        with self._lock:
            if self._conn is None:
                raise RuntimeError("ResultStore used outside its `with` block")
            records = self._conn.execute("SELECT row FROM rows ORDER BY seq").fetchall()
        dropped: list[str] = []
        rows = valid_rows(upgrade_rows(json_rows(records, dropped), self._version), dropped)
        report_dropped(str(self.db_path), dropped, self._reported)
        return rows

    def latest(self) -> dict[RowKey, Row]:
        """The latest valid row of every ``(cell_id, machine_id, code_id)``, now."""
        return latest_rows(self.all_rows())

    def previous(self, task_id: str, machine_id: str, code_id: str) -> Row | None:
        """The latest valid row of this task (its id: the rows' ``cell_id``) measured by this
        machine with this code, or None: the only row a resumed run may reuse. Legacy rows (no
        ids) never match."""
        for name, value in (("machine_id", machine_id), ("code_id", code_id)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}={value!r}: must be a non-empty string")
        with self._lock:
            if self._conn is None:
                raise RuntimeError("ResultStore used outside its `with` block")
            records = self._conn.execute(
                "SELECT row FROM rows WHERE cell_id=? AND machine_id=? AND code_id=? "
                "ORDER BY seq DESC",
                (task_id, machine_id, code_id),
            ).fetchall()
        for row in valid_rows(upgrade_rows(json_rows(records, []), self._version), []):
            return row
        return None

    # ----------------------------------------------------------------------- runs

    def begin_run(self, entry: dict[str, Any]) -> str:
        """Record a new run (``run_id``, ``machine_id``, ``code_id`` required; ``machine``,
        ``start_time`` and the rest as given) and write metadata.json; returns the run_id.
        An existing run_id is a ConfigError: a run's entry is never rewritten."""
        if self._runs is None:
            raise RuntimeError("ResultStore used outside its `with` block")
        run_id = self._runs.begin(entry)
        self.write_metadata()
        return run_id

    def update_run(self, run_id: str, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into a run this store began (its ids and machine stay)."""
        if self._runs is None:
            raise RuntimeError("ResultStore used outside its `with` block")
        self._runs.update(run_id, updates)

    def end_run(self, run_id: str, updates: dict[str, Any] | None = None) -> None:
        """:meth:`update_run` plus ``end_time`` (now, unless given); writes metadata.json."""
        if self._runs is None:
            raise RuntimeError("ResultStore used outside its `with` block")
        self._runs.end(run_id, updates or {})
        self.write_metadata()

    def runs(self) -> list[dict[str, Any]]:
        """Every run entry, oldest first."""
        if self._runs is None:
            raise RuntimeError("ResultStore used outside its `with` block")
        return self._runs.entries()

    # ----------------------------------------------------------------------- exports

    def frame(self) -> pd.DataFrame:
        """The table now: latest valid row per key, as :func:`load_results` gives it."""
        return rows_to_frame(self.latest().values())

    def export(self) -> pd.DataFrame:
        """Rewrite results.parquet, results.csv (and metadata.json when runs are recorded)
        from the store, under its write lock (exports of concurrent writers never interleave
        and the last one holds every row); returns the table."""
        with self._write("export the results"):
            rows = self.all_rows()
            frame = rows_to_frame(latest_rows(rows).values())
            atomic_write(self.dir / PARQUET_NAME, lambda p: frame.to_parquet(p, index=False))
            csv = frame.copy()
            csv["time_samples_s"] = csv["time_samples_s"].map(
                lambda x: json.dumps(x) if isinstance(x, list) else ""
            )
            atomic_write(self.dir / CSV_NAME, lambda p: csv.to_csv(p, index=False))
            self._write_metadata_locked()
        self._rows = {str(row["cell_id"]): row for row in rows}
        return frame

    def _write_metadata_locked(self) -> None:
        meta = self._runs.metadata() if self._runs else None
        if meta is not None:
            self._write_json_file(METADATA_NAME, meta)

    def write_metadata(self) -> None:
        """Write metadata.json from the runs table (nothing when no run is recorded)."""
        with self._write(f"write {METADATA_NAME}"):
            self._write_metadata_locked()

    def _write_json_file(self, name: str, data: dict[str, Any]) -> None:
        def write(p: str) -> None:
            with open(p, "w") as fh:
                json.dump(data, fh, indent=2, default=str)
                fh.write("\n")

        atomic_write(self.dir / name, write)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``DIR/name`` atomically (under the store's write lock)."""
        with self._write(f"write {name}"):
            self._write_json_file(name, data)
