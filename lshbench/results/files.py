"""Result files other than the SQLite store: the legacy log and the exports.

* ``results.jsonl``: the append-only log of lshbench before the SQLite store (one JSON object
  per line). It is read (a torn or unparseable line is dropped) and imported into the store
  by :class:`lshbench.results.store.ResultStore`; it is never written again.
* ``results.parquet`` and ``results.csv``: the exports people open. They are rewritten
  only from a store, through a temporary file and ``os.replace`` (:func:`atomic_write`), so
  they are always complete; a directory holding only them is read, never written.

Every reader returns raw rows (plain dicts); :func:`lshbench.results.schema.normalize_row`
decides which are valid. pandas is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lshbench.results.schema import column_kind

__all__ = [
    "CSV_NAME",
    "EXPORT_NAMES",
    "LOG_NAME",
    "PARQUET_NAME",
    "atomic_write",
    "read_csv_rows",
    "read_export_rows",
    "read_log_rows",
    "read_parquet_rows",
]

LOG_NAME = "results.jsonl"
PARQUET_NAME = "results.parquet"
CSV_NAME = "results.csv"
#: the exports, in the order :func:`read_export_rows` prefers them
EXPORT_NAMES = (PARQUET_NAME, CSV_NAME)


def read_log_rows(path: Path, dropped: list[str]) -> list[Any]:
    """Rows of a legacy ``results.jsonl``; a torn last line or an unparseable line is noted
    in ``dropped`` and skipped."""
    rows: list[Any] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                dropped.append(f"line {number}: torn (no newline; the write was interrupted)")
                break
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                dropped.append(f"line {number}: not JSON ({exc})")
    return rows


def read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a Parquet export (values as pandas gives them; normalized later)."""
    import pandas as pd

    return pd.read_parquet(path).to_dict("records")


def _csv_value(column: str, text: str) -> Any:
    """A CSV cell as the value its column holds; text that does not parse stays text (and
    then makes its row invalid)."""
    if text == "":
        return None
    kind = column_kind(column)
    try:
        if kind == "int":
            number = float(text)
            return int(number) if number.is_integer() else number
        if kind == "float":
            return float(text)
        if kind == "list":
            return json.loads(text)
    except (ValueError, OverflowError):
        return text
    if kind == "bool":
        return {"true": True, "false": False}.get(text.lower(), text)
    if kind is None:
        with contextlib.suppress(ValueError):
            number = float(text)
            if math.isfinite(number):
                return int(number) if number.is_integer() and "." not in text else number
    return text


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV export, each cell parsed by its column's type."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [
        {col: _csv_value(col, text) for col, text in record.items()}
        for record in frame.to_dict("records")
    ]


def read_export_rows(directory: Path) -> tuple[str, list[dict[str, Any]]] | None:
    """``(name, rows)`` of the preferred export in ``directory`` (Parquet, then CSV), or None
    when there is none."""
    for name, reader in ((PARQUET_NAME, read_parquet_rows), (CSV_NAME, read_csv_rows)):
        if (directory / name).is_file():
            return name, reader(directory / name)
    return None


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, fsync, then ``os.replace``: the
    file at ``path`` is always either the old one or the complete new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
