"""The column table (lshbench.results.columns) and the one upgrade path of older tables
(lshbench.results.upgrade): what derives from the table agrees with it, docs/columns.md is
the table, and old results directories load and report through the upgrade."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import lshbench
from lshbench import ConfigError
from lshbench.report import columns as report_columns
from lshbench.results import schema
from lshbench.results.columns import COLUMN_TABLE, columns_markdown
from lshbench.results.store import ResultStore
from lshbench.results.upgrade import SCHEMA_VERSION, upgrade_row

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "tests" / "data" / "legacy_quick"
DTYPES = {"int": "Int64", "float": "float64", "bool": "boolean", "str": "string"}


def test_every_column_is_declared_once_with_a_unit_slot_and_a_meaning() -> None:
    names = [c.name for c in COLUMN_TABLE]
    assert len(names) == len(set(names))
    assert all(c.meaning and "\n" not in c.meaning for c in COLUMN_TABLE)
    assert all(0 <= c.since <= SCHEMA_VERSION for c in COLUMN_TABLE)
    assert schema.COLUMNS + schema.EXTRA_COLUMNS == tuple(names)


def test_the_exports_dtypes_follow_the_table() -> None:
    frame = schema.rows_to_frame([])
    assert list(frame.columns) == [c.name for c in COLUMN_TABLE]
    for c in COLUMN_TABLE:
        if c.kind in DTYPES:
            assert str(frame[c.name].dtype) == DTYPES[c.kind], c.name


def test_the_report_reads_only_columns_of_the_table() -> None:
    known = {c.name for c in COLUMN_TABLE}
    for group in ("REQUIRED_COLUMNS", "ACCURACY_COLUMNS", "OPTIONAL_NUMERIC", "OPTIONAL_TEXT"):
        assert set(getattr(report_columns, group)) <= known, group
    assert "attn_tv" in report_columns.OPTIONAL_NUMERIC  # added later: a table may lack it
    assert "machine_id" in report_columns.OPTIONAL_TEXT


def test_docs_column_list_is_the_table() -> None:
    text = (REPO / "docs" / "columns.md").read_text(encoding="utf-8")
    start = "<!-- columns: generated from lshbench.results.columns.COLUMN_TABLE -->\n"
    body = text.split(start, 1)[1].split("<!-- columns: end -->", 1)[0]
    assert body == columns_markdown(), "docs/columns.md is stale: regenerate its table"


def test_upgrade_of_a_first_table_row() -> None:
    old = {"backend": "numpy", "n_hashes": 2, "seqlen": 64, "top1_agree": 0.5, "rel_err": 0.1}
    row = upgrade_row(old, 0)
    assert "top1_agree" not in row
    assert row["method"] == "lsh" and row["weighting"] == "multiplicity"
    assert row["attn_tv"] is None and row["machine_id"] is None  # added in version 1
    assert row["rel_err"] == 0.1
    dense = upgrade_row({"backend": "dense", "n_hashes": None}, 0)
    assert dense["method"] is None  # no hashing, no variant
    assert upgrade_row(row, SCHEMA_VERSION) == row  # a current row stays as it is


def test_upgrade_of_a_row_before_the_key_counts() -> None:
    """Rows of version 2 get the key counts empty; a version-3 row keeps its own."""
    row = upgrade_row({"backend": "numpy", "n_hashes": 2, "qk": "shared", "attn_tv": 0.2}, 2)
    assert row["keys_slots"] is None and row["keys_distinct"] is None
    assert row["qk"] == "shared" and row["attn_tv"] == 0.2
    new = upgrade_row({"backend": "dense", "keys_slots": 64, "keys_distinct": 64.0}, 3)
    assert (new["keys_slots"], new["keys_distinct"]) == (64, 64.0)


def test_legacy_directory_loads_and_reports_through_the_upgrade(tmp_path: Path) -> None:
    out = tmp_path / "legacy"
    shutil.copytree(LEGACY, out)
    table = lshbench.load_results(out)
    assert table.attrs["source"] == "results.jsonl" and len(table) > 0
    assert "top1_agree" not in table.columns
    hashing = table[table["n_hashes"].notna()]
    assert set(hashing["method"]) == {"lsh"} and set(hashing["weighting"]) == {"multiplicity"}
    assert table["attn_tv"].isna().all()  # the first tables had no attn_tv
    from lshbench.report.document import render_report

    text = render_report([str(out)], tmp_path / "report").markdown.read_text(encoding="utf-8")
    assert "older lshbench" in text  # says what the table lacks


def test_a_store_of_a_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(schema.make_row(_task(), "ok", time_median_s=1.0))
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    with conn:
        conn.execute("UPDATE store_info SET value='99' WHERE key='schema_version'")
    conn.close()
    for action in (
        lambda: lshbench.load_results(tmp_path),
        lambda: ResultStore(tmp_path).__enter__(),
    ):
        with pytest.raises(ConfigError) as err:
            action()
        assert "schema_version=99" in str(err.value) and "newer lshbench" in str(err.value)
        assert "\n" not in str(err.value)


def _task() -> dict:
    return {
        "backend": "dense", "seqlen": 16, "batch": 1, "d": 4, "dv": 4, "input": "gaussian",
        "target_entropy": None, "value_corr": None, "causal": False, "dtype": "float32",
        "threads": 1, "seed": 0, "n_hashes": None, "n_buckets": None, "chunk_len": None,
        "chunks_before": None, "chunks_after": None, "method": None, "weighting": None,
    }  # fmt: skip


def test_the_store_reads_its_version(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(schema.make_row(_task(), "ok", time_median_s=1.0))
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    version = conn.execute("SELECT value FROM store_info WHERE key='schema_version'").fetchone()
    conn.close()
    assert version == (str(SCHEMA_VERSION),)
    assert isinstance(lshbench.load_results(tmp_path), pd.DataFrame)


def test_rows_of_the_first_tables_keep_their_task_ids() -> None:
    """The cell_id of every row of the legacy directory is the id of the Task its fields
    make (the axes added since are left out of the digest), so resume matches them."""
    import json

    from lshbench.results.cells import Task

    lines = (LEGACY / "results.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    assert len(rows) > 100
    assert all(Task.from_dict(row).id == row["cell_id"] for row in rows)
    changed = Task.from_dict({**rows[1], "seed": rows[1]["seed"] + 1})
    assert changed.id != rows[1]["cell_id"]
