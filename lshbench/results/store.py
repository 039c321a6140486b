"""The results store of a sweep directory (DESIGN.md section 6).

``DIR/results.jsonl`` is the source of truth: an append-only log with one JSON object per
finished row, each written in one ``write`` and then flushed and fsynced, so a SIGKILL loses
at most the row being written. A torn last line (killed mid-write) is cut off when the log
is next opened for writing and ignored when read. A later row with the same ``cell_id``
(``--force``) replaces an earlier one.

``DIR/results.parquet`` and ``DIR/results.csv`` are exports of the log with the columns of
:data:`COLUMNS` first (DESIGN's list) and :data:`EXTRA_COLUMNS` after; they are rewritten
through a temporary file and ``os.replace``, so they are always complete. ``DIR/metadata.json``
describes the runs that wrote the directory (:mod:`lshbench.measurement.machine`).

pandas is imported inside the functions that build tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lshbench.results.cells import TASK_KEYS, n_buckets_spec, task_id

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "LOG_NAME",
    "STATUSES",
    "ResultStore",
    "load_results",
    "make_row",
    "rows_to_frame",
]

LOG_NAME = "results.jsonl"
PARQUET_NAME = "results.parquet"
CSV_NAME = "results.csv"
LOCK_NAME = ".lock"

STATUSES = ("ok", "oom", "oom_predicted", "timeout", "error", "skipped")

#: DESIGN.md section 6, in this order
COLUMNS = (
    "run_id", "backend", "seqlen", "batch", "d", "dv", "n_hashes", "n_buckets", "chunk_len",
    "chunks_before", "chunks_after", "causal", "input", "dtype", "threads", "seed", "status",
    "message", "compile_s", "time_median_s", "time_iqr_s", "time_min_s", "n_samples",
    "unstable", "mem_alloc_peak_bytes", "mem_rss_peak_bytes", "mem_model_bytes", "flops",
    "gflops", "tokens_per_s", "rel_err", "max_abs_err", "cos_sim", "mass_recall", "top1_agree",
)  # fmt: skip

#: more columns, after DESIGN's
EXTRA_COLUMNS = (
    "cell_id",  # stable id of the row's parameters (resume key)
    "n_buckets_spec",  # "128" or factors "16x32"; n_buckets is the total count
    "first_call_s",  # the first call alone (compile_s = backend compile + first call)
    "time_mean_s",
    "number",  # calls per timing sample
    "time_samples_s",  # raw per-call seconds of every sample
    "tokens",  # batch * seqlen
    "host",  # where the row was measured
    "sweep_host",  # where the sweep that recorded it ran (resume skips only its own rows)
    "executor",
    "concurrency",  # cells running at once on the executor
    "finished_at",  # UTC ISO time the row was written
)

_INT_COLUMNS = (
    "seqlen", "batch", "d", "dv", "n_hashes", "n_buckets", "chunk_len", "chunks_before",
    "chunks_after", "threads", "seed", "n_samples", "mem_alloc_peak_bytes",
    "mem_rss_peak_bytes", "mem_model_bytes", "flops", "number", "tokens", "concurrency",
)  # fmt: skip
_FLOAT_COLUMNS = (
    "compile_s", "time_median_s", "time_iqr_s", "time_min_s", "gflops", "tokens_per_s",
    "rel_err", "max_abs_err", "cos_sim", "mass_recall", "top1_agree", "first_call_s",
    "time_mean_s",
)  # fmt: skip
_BOOL_COLUMNS = ("causal", "unstable")


def _clean(value: Any) -> Any:
    """JSON-safe value: numpy scalars to Python, non-finite floats to None."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def make_row(task: dict[str, Any], status: str, message: str = "", **values: Any) -> dict[str, Any]:
    """A full results row for ``task``: every column present, missing values None."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r}: must be one of {STATUSES}")
    row: dict[str, Any] = dict.fromkeys(COLUMNS + EXTRA_COLUMNS)
    row.update({k: task.get(k) for k in TASK_KEYS})
    nb = task.get("n_buckets")
    row["n_buckets_spec"] = n_buckets_spec(nb)
    row["n_buckets"] = math.prod(nb) if isinstance(nb, list | tuple) else nb
    row["cell_id"] = task_id(task)
    row["tokens"] = task["batch"] * task["seqlen"]
    row["status"] = status
    row["message"] = message
    for key, value in values.items():
        row[key] = _clean(value)
    return row


def _read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a log, skipping a torn or unreadable line."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # torn write at the end
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "cell_id" in row:
                yield row


def _latest(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last row of every cell_id, in first-seen order."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["cell_id"]] = row
    return latest


def rows_to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`COLUMNS` then :data:`EXTRA_COLUMNS` (then any other)."""
    import pandas as pd

    rows = list(rows)
    frame = pd.DataFrame.from_records(rows)
    known = list(COLUMNS + EXTRA_COLUMNS)
    for col in known:
        if col not in frame:
            frame[col] = None
    frame = frame[known + [c for c in frame.columns if c not in known]]
    for col in _INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in _FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in _BOOL_COLUMNS:
        frame[col] = frame[col].astype("boolean")
    for col in ("run_id", "backend", "input", "dtype", "status", "message", "cell_id"):
        frame[col] = frame[col].astype("string")
    for col in ("n_buckets_spec", "host", "sweep_host", "executor", "finished_at"):
        frame[col] = frame[col].astype("string")
    frame["time_samples_s"] = frame["time_samples_s"].map(
        lambda x: [float(v) for v in x] if isinstance(x, list) else None
    )
    return frame


def load_results(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """The results of a sweep directory as a DataFrame, one row per cell_id (latest wins).

    Reads the log ``results.jsonl`` (complete even after a crash), or ``results.parquet``
    when the directory holds only the export.
    """
    import pandas as pd

    path = Path(directory)
    log = path / LOG_NAME
    if log.exists():
        return rows_to_frame(_latest(_read_log(log)).values())
    if (path / PARQUET_NAME).exists():
        return pd.read_parquet(path / PARQUET_NAME)
    raise FileNotFoundError(f"no {LOG_NAME} or {PARQUET_NAME} in {path}")


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, fsync, then os.replace."""
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


class ResultStore:
    """Append-only row log plus table exports in one directory; one writer at a time.

    Use as a context manager: it takes an exclusive lock on ``DIR/.lock`` (another sweep into
    the same directory fails at once) and repairs a torn last line of the log.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.log_path = self.dir / LOG_NAME
        self._lock_fh: Any = None
        self._rows: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> ResultStore:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.dir / LOCK_NAME, "w")  # held until __exit__
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            from lshbench.core.config import fail

            fail("out", str(self.dir), "another lshbench sweep is writing this directory")
        for stale in self.dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        self._repair_tail()
        self._rows = _latest(_read_log(self.log_path))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fh is not None:
            # unlink before unlocking: a concurrent sweep fails at once (LOCK_NB), never waits
            (self.dir / LOCK_NAME).unlink(missing_ok=True)
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _repair_tail(self) -> None:
        """Cut a torn last line (a row whose write was interrupted) off the log."""
        if not self.log_path.exists():
            return
        with open(self.log_path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
                fh.flush()
                os.fsync(fh.fileno())

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        """The latest row of every cell_id in the log."""
        return self._rows

    def append(self, row: dict[str, Any]) -> None:
        """Append one finished row: one write, flush, fsync."""
        line = (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._rows[row["cell_id"]] = row

    def frame(self) -> pd.DataFrame:
        return rows_to_frame(self._rows.values())

    def export(self) -> pd.DataFrame:
        """Rewrite results.parquet and results.csv from the log; returns the table."""
        frame = self.frame()
        _atomic_write(self.dir / PARQUET_NAME, lambda p: frame.to_parquet(p, index=False))
        csv = frame.copy()
        csv["time_samples_s"] = csv["time_samples_s"].map(
            lambda x: json.dumps(x) if isinstance(x, list) else ""
        )
        _atomic_write(self.dir / CSV_NAME, lambda p: csv.to_csv(p, index=False))
        return frame

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``DIR/name`` atomically (used for metadata.json)."""

        def write(p: str) -> None:
            with open(p, "w") as fh:
                json.dump(data, fh, indent=2, default=str)
                fh.write("\n")

        _atomic_write(self.dir / name, write)
