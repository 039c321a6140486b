"""Reading a results directory: :func:`load_results` and the helpers the store shares.

The sources, in the order they are preferred (:data:`RESULT_FILES`): the SQLite store
``results.sqlite``, a legacy ``results.jsonl`` log, the exports ``results.parquet`` and
``results.csv``. The first that holds a valid row is read, so an empty or absent log beside
a good export never hides it. Every row is validated
(:func:`lshbench.results.schema.normalize_row`); invalid rows are dropped, never counted as
done, with one warning line per source on the ``lshbench.results`` logger.

pandas is imported inside the functions that build tables.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lshbench.core.config import fail
from lshbench.results.columns import COLUMN_TABLE
from lshbench.results.files import (
    CSV_NAME,
    EXPORT_NAMES,
    LOG_NAME,
    PARQUET_NAME,
    read_csv_rows,
    read_export_rows,
    read_log_rows,
    read_parquet_rows,
)
from lshbench.results.schema import (
    COLUMNS,
    REQUIRED_FIELDS,
    Row,
    RowKey,
    row_key,
    rows_to_frame,
    valid_rows,
)
from lshbench.results.upgrade import check_version, upgrade_rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUSY_TIMEOUT_S",
    "RESULT_FILES",
    "STORE_NAME",
    "StoreError",
    "export_has_rows",
    "json_rows",
    "latest_rows",
    "load_results",
    "report_dropped",
    "store_version",
]

STORE_NAME = "results.sqlite"
#: the files :func:`load_results` reads, in the order it prefers them
RESULT_FILES = (STORE_NAME, LOG_NAME, *EXPORT_NAMES)
#: seconds a store waits for another process's write lock
BUSY_TIMEOUT_S = 60.0


class StoreError(OSError):
    """The store could not record or export (full disk, I/O error, lock held too long).

    One line: the directory, what failed and that every row recorded before is kept."""


LOG = logging.getLogger("lshbench.results")


def report_dropped(source: str, dropped: list[str], seen: set[str] | None = None) -> None:
    """One warning line for the invalid rows of ``source`` (once per ``seen`` set)."""
    if not dropped:
        return
    more = f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""
    text = (f"{source}: {len(dropped)} invalid row(s) ignored, not counted as done: "
            f"{dropped[0]}{more}")  # fmt: skip
    if seen is None or text not in seen:
        LOG.warning("%s", text)
        if seen is not None:
            seen.add(text)


def latest_rows(rows: Iterable[Row]) -> dict[RowKey, Row]:
    """The last row of every key ``(cell_id, machine_id, code_id)``, in first-seen order."""
    latest: dict[RowKey, Row] = {}
    for row in rows:
        latest[row_key(row)] = row
    return latest


def json_rows(records: Iterable[tuple[str]], dropped: list[str]) -> list[Any]:
    """Stored rows (one JSON text per record) decoded; one that is not JSON is noted in
    ``dropped`` and skipped."""
    out = []
    for (text,) in records:
        try:
            out.append(json.loads(text))
        except (TypeError, ValueError) as exc:
            dropped.append(f"stored row not JSON ({exc})")
    return out


def store_version(conn: sqlite3.Connection, source: str) -> int:
    """The schema version a store records (``store_info``); ConfigError when it is not a
    number or newer than this code reads (:func:`lshbench.results.upgrade.check_version`)."""
    try:
        found = conn.execute("SELECT value FROM store_info WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:  # no store_info: created this instant by a writer
        found = None
    if found is None:
        return 0
    try:
        version = int(found[0])
    except (TypeError, ValueError):
        fail("schema_version", found[0], f"{source}: must be an integer")
    return check_version(version, source)


def _read_db_rows(path: Path, dropped: list[str]) -> tuple[int, list[Any]]:
    """The schema version and raw rows of a store. Opened read-write when it may be (never
    created), so closing the last connection removes SQLite's -wal and -shm files; else
    read-only; in a read-only folder, immutable."""
    uri = path.resolve().as_uri()
    for query in ("?mode=rw", "?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"{uri}{query}", uri=True, timeout=BUSY_TIMEOUT_S)
        except sqlite3.OperationalError:
            continue
        try:
            records = conn.execute("SELECT row FROM rows ORDER BY seq").fetchall()
            version = store_version(conn, str(path))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0, []  # created this instant by a writer
            if query.endswith("immutable=1"):
                raise StoreError(f"{path}: cannot read the results store ({exc})") from exc
            continue
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a readable results store ({exc})") from exc
        finally:
            conn.close()
        return version, json_rows(records, dropped)
    raise StoreError(f"{path}: cannot open the results store")


def _log_reader(path: Path, dropped: list[str]) -> tuple[int, list[Any]]:
    return 0, read_log_rows(path, dropped)  # the log predates the store: version 0


#: each source's reader: (schema version, raw rows); exports record no version, so they
#: are read as the oldest (the upgrade leaves newer rows as they are)
_READERS: dict[str, Callable[[Path, list[str]], tuple[int, list[Any]]]] = {
    STORE_NAME: _read_db_rows,
    LOG_NAME: _log_reader,
    PARQUET_NAME: lambda path, dropped: (0, read_parquet_rows(path)),
    CSV_NAME: lambda path, dropped: (0, read_csv_rows(path)),
}


def load_results(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """The results of a sweep directory: one row per ``(cell_id, machine_id, code_id)``.

    Reads the first of :data:`RESULT_FILES` that holds a valid row: the store
    ``results.sqlite``, a legacy ``results.jsonl``, then the exports ``results.parquet`` and
    ``results.csv`` (so an empty log beside a good export never hides it). Invalid rows are
    dropped with one warning line. ``frame.attrs`` holds ``source`` (the file read)
    and ``dropped_rows``. FileNotFoundError when the directory holds none of them.
    """
    path = Path(directory)
    found = [name for name in RESULT_FILES if (path / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no {', '.join(RESULT_FILES)} in {path}")
    total_dropped = 0
    for name in found:
        dropped: list[str] = []
        version, raw = _READERS[name](path / name, dropped)
        if name in EXPORT_NAMES and raw:
            _check_table_columns(path, raw[0])
        rows = valid_rows(upgrade_rows(raw, version), dropped)
        report_dropped(str(path / name), dropped)
        total_dropped += len(dropped)
        if rows:
            frame = rows_to_frame(latest_rows(rows).values())
            frame.attrs.update(source=name, dropped_rows=total_dropped)
            return frame
    frame = rows_to_frame([])
    frame.attrs.update(source=found[0], dropped_rows=total_dropped)
    return frame


def _check_table_columns(directory: Path, columns: Iterable[str]) -> None:
    """ConfigError when an exported table lacks a column every row needs (listing every
    column of :data:`COLUMNS` of the first tables it lacks; the upgrade adds later ones)."""
    have = set(columns)
    if all(c in have for c in REQUIRED_FIELDS):
        return
    missing = [c for c in (*COLUMNS, *REQUIRED_FIELDS) if c not in have]
    added = {c.name for c in COLUMN_TABLE if c.since > 0}
    missing = [c for c in dict.fromkeys(missing) if c not in added]
    fail("DIR", str(directory), f"results table lacks required columns: {', '.join(missing)}")


def export_has_rows(directory: Path) -> str | None:
    """Name of an export in ``directory`` that holds a row, valid or not, or cannot be read;
    else None."""
    try:
        found = read_export_rows(directory)
    except Exception:  # an unreadable export still holds someone's results
        return next(name for name in EXPORT_NAMES if (directory / name).is_file())
    if found is None:
        return None
    name, rows = found
    return name if rows else None
