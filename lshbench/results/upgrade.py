"""Older results tables, read through one upgrade path (docs/design.md section 7).

:data:`SCHEMA_VERSION` is the version of the rows this code writes; the store records the
version it was created with (``store_info.schema_version``) and every reader hands its rows
and that version to :func:`upgrade_rows` before they are checked
(:func:`lshbench.results.schema.valid_rows`). The versions:

* **0**: tables written before the SQLite store, the ``results.jsonl`` log and its exports
  (which carry no version, so every export is read as version 0; the upgrade leaves a newer
  row as it is). They lack the columns added in version 1 and may hold ``top1_agree``, a
  metric since dropped.
* **1**: the SQLite store, before separate queries and keys: no ``qk``, ``layer`` or
  ``head`` columns; every row had shared queries and keys.
* **2**: before the key counts, the oracle baseline, rotation draws, the training step and
  devices: no ``keys_slots``, ``keys_distinct``, ``oracle_k``, ``rotation_seed``, ``pass``,
  ``device``, ``grad_err_qk`` or ``grad_err_v`` columns (a hashing row's rotations were the
  first draw, ``rotation_seed = 0``; every row was the forward pass on the CPU).
* **3**: before the ``positional`` input: no ``local_share`` column.
* **4**: every column of :data:`~lshbench.results.columns.COLUMN_TABLE`.

The upgrade of a row: columns dropped from the schema are removed; every column added after
the row's version, and absent, is added empty; a hashing row without ``method`` or
``weighting`` (written before the variants existed) gets section 2's (:data:`SECTION_2`);
a row without ``qk`` (every row before version 2) gets ``"shared"``, a hashing row
without ``rotation_seed`` (every one before version 3) ``0``, the first draw; a row without
``pass`` or ``device`` (every row before version 3) gets ``"forward"`` and ``"cpu"``.
Task ids stay those of the earlier tables through :data:`ADDED_AXES`.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lshbench.core.config import fail
from lshbench.results.columns import COLUMN_TABLE

__all__ = [
    "ADDED_AXES",
    "BEFORE_TRAINING",
    "DROPPED_COLUMNS",
    "SCHEMA_VERSION",
    "SECTION_2",
    "check_version",
    "upgrade_row",
    "upgrade_rows",
]

#: the version of the rows this code writes (see the module docstring)
SCHEMA_VERSION = 4
#: columns older tables may hold that the schema no longer has
DROPPED_COLUMNS = ("top1_agree",)
#: values a hashing row of an earlier table (no ``method``/``weighting``) had: section 2
SECTION_2 = {"method": "lsh", "weighting": "multiplicity"}
#: task axes added after results were first stored, with the values every earlier row had:
#: a task holding one of them leaves the axis out of its id, so earlier rows keep theirs
ADDED_AXES: dict[str, tuple[Any, ...]] = {
    "method": (None, SECTION_2["method"]),
    "weighting": (None, SECTION_2["weighting"]),
    "target_entropy": (None,),
    "value_corr": (None,),
    "local_share": (None,),
    "qk": (None, "shared"),
    "layer": (None,),
    "head": (None,),
    "oracle_k": (None,),
    "rotation_seed": (None, 0),
    "pass": (None, "forward"),
    "device": (None, "cpu"),
}
#: what every row before version 3 was, and the defaults since: the forward pass on the CPU
BEFORE_TRAINING = {"pass": "forward", "device": "cpu"}


def check_version(version: int, source: str) -> int:
    """``version`` when this code can read it; ConfigError (one line) for a table written
    by a newer lshbench."""
    if version > SCHEMA_VERSION:
        fail(
            "schema_version",
            version,
            f"{source} was written by a newer lshbench (this one reads up to "
            f"{SCHEMA_VERSION}): upgrade lshbench to read it",
        )
    return version


def upgrade_row(row: Mapping[str, Any], version: int) -> dict[str, Any]:
    """One raw row of a table of schema ``version`` as a row of :data:`SCHEMA_VERSION`
    (see the module docstring); values are not checked here."""
    out = {k: v for k, v in row.items() if k not in DROPPED_COLUMNS}
    for column in COLUMN_TABLE:
        if column.since > version:
            out.setdefault(column.name, None)
    if out.get("qk") is None:
        out["qk"] = "shared"  # the only kind before version 2, and the default since
    if out.get("n_hashes") is not None and out.get("rotation_seed") is None:
        out["rotation_seed"] = 0  # one draw of the rotations before version 3: the first
    for name, value in BEFORE_TRAINING.items():
        if out.get(name) is None:
            out[name] = value  # the only pass and device before version 3, the defaults since
    if out.get("n_hashes") is not None:
        for name, value in SECTION_2.items():
            if out.get(name) is None:
                out[name] = value
    return out


def upgrade_rows(rows: Iterable[Any], version: int) -> list[Any]:
    """:func:`upgrade_row` of every row that is a mapping (anything else is passed on as it
    is, for the checks to report)."""
    return [upgrade_row(r, version) if isinstance(r, Mapping) else r for r in rows]
