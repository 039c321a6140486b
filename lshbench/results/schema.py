"""The row schema of the results table (docs/design.md section 7): columns, types, validation.

Every row the store writes goes through :func:`check_storable` (a value that cannot be
stored, e.g. a seed beyond int64, is a ConfigError naming the field, before anything is
written), and every row read back, from the store or from a legacy log or export, goes
through :func:`normalize_row` (after :mod:`lshbench.results.upgrade` made an older table's
row one of this schema): a row that breaks the schema (``seqlen: "abc"``, no backend,
an ``ok`` row without a positive time, a list as ``cell_id``) is reported and dropped, never
counted as done.

A row's **key** is ``(cell_id, machine_id, code_id)``: the same task measured by another
machine or another version of the code is another row (docs/design.md section 7, provenance).

pandas is imported inside the functions that build tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from lshbench.core.config import METHODS, QK_MODES, WEIGHTINGS, fail
from lshbench.results.cells import Task, n_buckets_spec
from lshbench.results.columns import COLUMN_TABLE, ColumnKind, names

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "REQUIRED_FIELDS",
    "STATUSES",
    "Row",
    "RowKey",
    "RowValue",
    "check_storable",
    "column_kind",
    "make_row",
    "normalize_row",
    "row_key",
    "rows_to_frame",
    "valid_rows",
]

STATUSES = ("ok", "oom", "oom_predicted", "timeout", "error", "skipped")

#: the design's columns, then this implementation's extras (:data:`COLUMN_TABLE`)
COLUMNS = names(extra=False)
EXTRA_COLUMNS = names(extra=True)

_INT_COLUMNS = names(kind="int")
_FLOAT_COLUMNS = names(kind="float")
_BOOL_COLUMNS = names(kind="bool")
_STRING_COLUMNS = names(kind="str")
_LIST_COLUMNS = names(kind="list")
_KIND = {c.name: c.kind for c in COLUMN_TABLE}
_MINIMUM = {c.name: c.minimum for c in COLUMN_TABLE}
_REQUIRED = {c.name for c in COLUMN_TABLE if c.required}
#: what every row must have (anything else may be missing)
REQUIRED_FIELDS = tuple(c.name for c in COLUMN_TABLE if c.required)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

RowKey = tuple[str, str, str]
#: a column's value in a row, as the store holds it (JSON)
RowValue = str | int | float | bool | list[float] | None
#: one results row: column name -> value (:data:`COLUMN_TABLE`, plus a file input's fields)
Row = dict[str, RowValue]


def column_kind(column: str) -> ColumnKind | None:
    """``"int"``, ``"float"``, ``"bool"``, ``"str"`` or ``"list"`` for a schema column, else
    None (a column outside the schema)."""
    return _KIND.get(column)


def row_key(row: Mapping[str, Any]) -> RowKey:
    """``(cell_id, machine_id, code_id)`` of a row; a missing id (legacy rows) is ``""``."""
    return (str(row["cell_id"]), row.get("machine_id") or "", row.get("code_id") or "")


# --------------------------------------------------------------------------- writing


def _clean(value: Any) -> Any:
    """JSON-safe value: numpy scalars and arrays to Python, non-finite floats to None."""
    if hasattr(value, "tolist") and hasattr(value, "ndim"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def make_row(task: Task | Mapping[str, Any], status: str, message: str = "", **values: Any) -> Row:
    """A full results row for ``task``: every column present, missing values None; the
    task's fields (a file input's path and SHA-256 included), its id as ``cell_id``.

    Raises ConfigError (naming the field) when a value cannot be stored, e.g. a seed beyond
    int64, or the status is not one of :data:`STATUSES`.
    """
    if status not in STATUSES:
        fail("status", status, f"must be one of {', '.join(STATUSES)}")
    if not isinstance(task, Task):
        task = Task.from_dict(task)
    row: Row = dict.fromkeys(COLUMNS + EXTRA_COLUMNS)
    row.update({k: _clean(v) for k, v in task.as_dict().items()})
    nb = task.n_buckets
    row["n_buckets_spec"] = n_buckets_spec(nb)
    row["n_buckets"] = math.prod(nb) if isinstance(nb, tuple) else nb
    row["cell_id"] = task.id
    row["tokens"] = task.batch * task.seqlen
    row["status"] = status
    row["message"] = message
    for key, value in values.items():
        row[key] = _clean(value)
    return check_storable(row)


def check_storable(row: Mapping[str, Any]) -> Row:
    """The row as the store writes it; ConfigError naming the first field that cannot be.

    The checks of :func:`normalize_row` (types, ranges, required fields; NaN becomes None)
    plus: every key is a string and every value is plain JSON.
    """
    if not isinstance(row, dict):
        fail("row", type(row).__name__, "a results row must be a dict")
    for key in row:
        if not isinstance(key, str):
            fail("row key", key, "column names must be strings")
    clean, problem = normalize_row(row)
    if clean is None:
        field, _, rule = problem.partition(": ")
        fail(field, row.get(field), rule)
    for key, value in clean.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            fail(key, value, f"cannot be stored ({exc})")
    return clean


# --------------------------------------------------------------------------- reading


def _plain(value: Any) -> Any:
    """A value read from a frame as plain Python: NA/NaN to None, numpy to Python."""
    if value is None:
        return None
    if hasattr(value, "tolist") and hasattr(value, "ndim"):
        value = value.tolist()
    elif type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is one (integral floats too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    """``value`` as a float when it is a number (not a bool) a float can hold, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _check_ints(row: dict[str, Any]) -> str | None:
    for col in _INT_COLUMNS:
        value = row.get(col)
        required = col in _REQUIRED
        if value is None and not required:
            continue
        number = _as_int(value)
        if number is None:
            return f"{col}: must be an integer"
        if not INT64_MIN <= number <= INT64_MAX:
            return f"{col}: must fit in a signed 64-bit integer"
        minimum = _MINIMUM[col]
        if minimum is not None and number < minimum:
            return f"{col}: must be >= {minimum}"
        row[col] = number
    return None


def _check_floats(row: dict[str, Any]) -> str | None:
    for col in _FLOAT_COLUMNS:
        value = row.get(col)
        if value is None:
            continue
        number = _as_float(value)
        if number is None:
            return f"{col}: must be a number"
        row[col] = number if math.isfinite(number) else None
    if row["status"] == "ok" and not (row.get("time_median_s") or 0.0) > 0.0:
        return "time_median_s: must be a positive number of seconds in an ok row"
    return None


def _check_other(row: dict[str, Any]) -> str | None:
    for col in _STRING_COLUMNS:
        value = row.get(col)
        if value is not None and not isinstance(value, str):
            return f"{col}: must be a string"
    for col in _STRING_COLUMNS:
        if col in _REQUIRED and not row.get(col):
            return f"{col}: must be a non-empty string"
    if row["status"] not in STATUSES:
        return f"status: must be one of {', '.join(STATUSES)}"
    for col, allowed in (("method", METHODS), ("weighting", WEIGHTINGS), ("qk", QK_MODES)):
        if row.get(col) is not None and row[col] not in allowed:
            return f"{col}: must be one of {', '.join(allowed)}"
    for col in _BOOL_COLUMNS:
        value = row.get(col)
        if not isinstance(value, bool) and (value is not None or col == "causal"):
            return f"{col}: must be true or false"
    for col in _LIST_COLUMNS:
        value = row.get(col)
        if value is None:
            continue
        ok = isinstance(value, list) and all(
            (number := _as_float(v)) is not None and math.isfinite(number) for v in value
        )
        if not ok:
            return f"{col}: must be a list of finite numbers"
    return None


def normalize_row(row: Any) -> tuple[Row | None, str]:
    """``(row, "")`` with plain, typed values, or ``(None, "field: rule")`` when invalid.

    Integral floats in integer columns become ints, NaN and NA become None, numpy values
    become Python; strings where numbers belong, a missing or empty ``cell_id``, ``backend``,
    ``status``, ``input`` or ``dtype``, integers beyond int64, a ``method`` or ``weighting``
    that is not one of the core's, and ``ok`` rows without a positive ``time_median_s`` make
    the row invalid. Rows of older tables are upgraded before they come here
    (:func:`lshbench.results.upgrade.upgrade_rows`).
    """
    if not isinstance(row, dict):
        return None, f"row: must be an object, not {type(row).__name__}"
    clean = {str(k): _plain(v) for k, v in row.items()}
    for check in (_check_other, _check_ints, _check_floats):
        problem = check(clean)
        if problem:
            return None, problem
    return clean, ""


def valid_rows(rows: Iterable[Any], dropped: list[str]) -> list[Row]:
    """The valid rows of ``rows``, normalized; one ``"cell_id: field: rule"`` per dropped row
    is appended to ``dropped``."""
    out = []
    for row in rows:
        clean, problem = normalize_row(row)
        if clean is None:
            ident = row.get("cell_id") if isinstance(row, dict) else None
            dropped.append(f"row {ident if isinstance(ident, str) else '?'}: {problem}")
        else:
            out.append(clean)
    return out


# --------------------------------------------------------------------------- tables


def _to_json_text(value: Any) -> Any:
    return None if value is None else json.dumps(value)


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`COLUMNS` then :data:`EXTRA_COLUMNS` (then any other).

    Columns outside the schema whose values mix types (which Parquet cannot hold) are
    written as JSON text, so an export never fails on them.
    """
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
    for col in _STRING_COLUMNS:
        frame[col] = frame[col].astype("string")
    frame["time_samples_s"] = frame["time_samples_s"].map(
        lambda x: [float(v) for v in x] if isinstance(x, list) else None
    )
    for col in frame.columns[len(known) :]:
        kind = pd.api.types.infer_dtype(frame[col], skipna=True)
        if kind in ("mixed", "mixed-integer"):
            frame[col] = frame[col].map(_to_json_text).astype("string")
    return frame
