"""The results store: SQLite rows, exports, legacy logs, directories holding only exports,
invalid rows and values that cannot be stored."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import lshbench
from lshbench import ConfigError
from lshbench.results.store import (
    COLUMNS,
    EXTRA_COLUMNS,
    ResultStore,
    make_row,
    rows_to_frame,
)

REPO = Path(__file__).resolve().parent.parent


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The store's warning lines so far (then forgotten)."""
    lines = [r.getMessage() for r in caplog.records if r.name == "lshbench.results"]
    caplog.clear()
    assert all("\n" not in line for line in lines)
    return lines


def task(L: int, backend: str = "numpy", nb=8, seed: int = 0) -> dict:
    return {"backend": backend, "seqlen": L, "batch": 2, "d": 4, "dv": 4, "input": "gaussian",
            "causal": False, "dtype": "float32", "threads": 1, "seed": seed, "n_hashes": 2,
            "n_buckets": nb, "chunk_len": 4, "chunks_before": 1, "chunks_after": 0}  # fmt: skip


def ok(L: int, **kw) -> dict:
    return make_row(task(L, **kw), "ok", time_median_s=0.5, time_samples_s=[0.4, 0.5])


def test_rows_export_and_reload(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(ok(16))
        store.append(make_row(task(32, nb=[2, 4]), "error", "RuntimeError: boom"))
        frame = store.export()
    assert list(frame.columns) == list(COLUMNS + EXTRA_COLUMNS)
    assert {"machine_id", "code_id", "run_id"} <= set(COLUMNS)
    assert frame["n_buckets"].tolist() == [8, 8]
    assert frame["n_buckets_spec"].tolist() == ["8", "2x4"]
    assert frame["tokens"].tolist() == [32, 64]
    assert (tmp_path / "results.sqlite").is_file() and not (tmp_path / "results.jsonl").exists()
    parquet = pd.read_parquet(tmp_path / "results.parquet")
    assert parquet["time_samples_s"].iloc[0].tolist() == [0.4, 0.5]
    csv = pd.read_csv(tmp_path / "results.csv")
    assert json.loads(csv["time_samples_s"].iloc[0]) == [0.4, 0.5]
    loaded = lshbench.load_results(tmp_path)
    assert loaded["status"].tolist() == ["ok", "error"]
    assert loaded.attrs["source"] == "results.sqlite"
    pd.testing.assert_frame_equal(loaded, frame)


def test_every_export_reads_back_the_same_table(tmp_path: Path) -> None:
    """The exports alone (a copied directory) give the store's table back."""
    with ResultStore(tmp_path / "run") as store:
        store.append(ok(16))
        store.append(make_row(task(32, nb=[2, 4]), "timeout", "slow", unstable=True))
        frame = store.export()
    for name in ("results.parquet", "results.csv"):
        copy = tmp_path / name.replace(".", "_")
        copy.mkdir()
        shutil.copy(tmp_path / "run" / name, copy / name)
        loaded = lshbench.load_results(copy)
        assert loaded.attrs["source"] == name
        if name.endswith(".csv"):  # CSV writes "" and missing alike
            loaded["message"] = loaded["message"].fillna("")
        pd.testing.assert_frame_equal(loaded, frame)


def test_later_row_of_a_key_wins_and_every_row_is_kept(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(make_row(task(16), "timeout", "slow"))
        store.append(ok(16))
        assert [r["status"] for r in store.all_rows()] == ["timeout", "ok"]
    assert lshbench.load_results(tmp_path)["status"].tolist() == ["ok"]


def test_several_stores_may_write_one_directory_in_turn(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        first.append(ok(16))
        second.append(ok(32))
        assert len(first.all_rows()) == 2
    assert len(lshbench.load_results(tmp_path)) == 2


def test_bad_status_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="status"):
        make_row(task(16), "fine")
    with pytest.raises(FileNotFoundError):
        lshbench.load_results(tmp_path / "nothing")


# ----------------------------------------------------------------- invalid rows dropped


def exported_dir(tmp_path: Path, name: str = "exports") -> Path:
    """A directory holding only the exports of a two-row sweep."""
    with ResultStore(tmp_path / "source") as store:
        store.append(ok(16))
        store.append(ok(32))
        store.export()
    out = tmp_path / name
    out.mkdir()
    for file in ("results.parquet", "results.csv"):
        shutil.copy(tmp_path / "source" / file, out / file)
    return out


def test_a_directory_of_exports_is_read_never_overwritten(tmp_path: Path) -> None:
    out = exported_dir(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(lshbench.load_results(out)) == 2
    with pytest.raises(ConfigError, match=r"holds exported results .*new --out") as info:
        ResultStore(out).__enter__()
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing created
    assert len(lshbench.load_results(out)) == 2


def test_an_empty_log_beside_a_good_export_hides_nothing(tmp_path: Path) -> None:
    out = exported_dir(tmp_path)
    (out / "results.jsonl").write_text("")
    assert len(lshbench.load_results(out)) == 2
    with pytest.raises(ConfigError, match="holds exported results"):
        ResultStore(out).__enter__()
    assert len(pd.read_parquet(out / "results.parquet")) == 2


def test_an_empty_store_beside_a_good_export_is_refused(tmp_path: Path) -> None:
    out = exported_dir(tmp_path)
    with ResultStore(tmp_path / "empty"):
        pass
    shutil.copy(tmp_path / "empty" / "results.sqlite", out / "results.sqlite")
    assert len(lshbench.load_results(out)) == 2
    with pytest.raises(ConfigError, match="holds exported results"):
        ResultStore(out).__enter__()


def test_an_unusable_directory_is_one_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot open"):
        ResultStore(tmp_path / "file" / "out").__enter__()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot open its results store"):
        ResultStore(tmp_path / "bad").__enter__()


# --------------------------------------------------------------------------- legacy log


def test_a_legacy_log_is_imported_once_and_kept(tmp_path: Path, caplog) -> None:
    out = tmp_path / "quick"
    # the quick sweep as lshbench 0.1 wrote it (JSON-lines log, another machine's metadata)
    shutil.copytree(REPO / "tests" / "data" / "legacy_quick", out)
    log_bytes = (out / "results.jsonl").read_bytes()
    legacy = lshbench.load_results(out)
    assert legacy.attrs["source"] == "results.jsonl" and len(legacy) > 0
    old_meta = json.loads((out / "metadata.json").read_text())
    with ResultStore(out) as store:
        assert len(store.latest()) == len(legacy)
        assert [r["run_id"] for r in store.runs()] == [r["run_id"] for r in old_meta["runs"]]
    with ResultStore(out) as store:  # a second open imports nothing again
        assert len(store.latest()) == len(legacy)
        store.export()
    migrated = lshbench.load_results(out)
    assert warned(caplog) == []  # every committed row is valid
    assert migrated.attrs["source"] == "results.sqlite"
    pd.testing.assert_frame_equal(migrated, legacy)
    assert (out / "results.jsonl").read_bytes() == log_bytes
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["runs"][0]["cpu"] == old_meta["runs"][0]["cpu"]  # the earlier machine stays


def test_a_torn_legacy_line_is_dropped_with_a_warning(tmp_path: Path, caplog) -> None:
    rows = [ok(16), ok(32)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "results.jsonl").write_text(text + '{"cell_id": "torn", "status": "o')
    assert len(lshbench.load_results(tmp_path)) == 2
    assert ["torn" in line for line in warned(caplog)] == [True]
    with ResultStore(tmp_path) as store:
        store.append(ok(64))
    assert ["torn" in line for line in warned(caplog)] == [True]
    assert len(lshbench.load_results(tmp_path)) == 3
    assert warned(caplog) == []  # the store holds only whole rows


# ---------------------------------------------------------- values that cannot be stored


def corrupt_rows() -> list[dict]:
    """Rows a damaged file might hold; none of them may count as a finished cell."""
    bad_seqlen = dict(ok(16), seqlen="abc")
    no_backend = {k: v for k, v in ok(32).items() if k != "backend"}
    empty_backend = dict(ok(48), backend="")
    zero_time = dict(ok(64), time_median_s=0.0)
    negative_time = dict(ok(80), time_median_s=-1.0)
    list_cell = dict(ok(96), cell_id=["a", "b"])
    bad_status = dict(ok(112), status="fine")
    huge_seed = dict(ok(128), seed=10**20)
    huge_number = dict(ok(144), gflops=10**400)  # no float holds it
    return [bad_seqlen, no_backend, empty_backend, zero_time, negative_time, list_cell,
            bad_status, huge_seed, huge_number]  # fmt: skip


def test_corrupt_rows_of_a_legacy_log_are_not_done(tmp_path: Path, caplog) -> None:
    good = ok(256)
    lines = [json.dumps(r) for r in [*corrupt_rows(), good]] + ["[1, 2]", "not json"]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    loaded = lshbench.load_results(tmp_path)
    assert [line.split(": ", 1)[1][:17] for line in warned(caplog)] == ["11 invalid row(s)"]
    assert loaded["cell_id"].tolist() == [good["cell_id"]]
    assert loaded.attrs["dropped_rows"] == 11
    with ResultStore(tmp_path) as store:
        assert list(store.rows) == [good["cell_id"]]
    assert len(warned(caplog)) == 1


def test_corrupt_rows_in_the_store_are_not_done(tmp_path: Path, caplog) -> None:
    with ResultStore(tmp_path) as store:
        store.append(ok(256))
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    with conn:
        for row in corrupt_rows():
            cid = row.get("cell_id")
            cid = cid if isinstance(cid, str) else "x"
            conn.execute(
                "INSERT INTO rows (cell_id, machine_id, code_id, status, row) "
                "VALUES (?, 'm', 'c', 'ok', ?)",
                (cid, json.dumps(dict(row, machine_id="m", code_id="c"))),
            )
        conn.execute("INSERT INTO rows (cell_id, machine_id, code_id, status, row) "
                     "VALUES ('y', 'm', 'c', 'ok', '{torn')")  # fmt: skip
    conn.close()
    assert len(lshbench.load_results(tmp_path)) == 1
    assert ["10 invalid row(s)" in line for line in warned(caplog)] == [True]
    with ResultStore(tmp_path) as store:
        for row in corrupt_rows():
            if isinstance(row.get("cell_id"), str):
                assert store.previous(row["cell_id"], "m", "c") is None
        assert len(store.rows) == 1
        store.export()  # the export is not bricked by them
        store.export()
    assert len(warned(caplog)) == 1  # once per store, not once per export
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 1


def test_corrupt_cells_of_a_csv_export_are_not_done(tmp_path: Path, caplog) -> None:
    out = exported_dir(tmp_path)
    (out / "results.parquet").unlink()
    frame = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "seqlen"] = "abc"
    frame.to_csv(out / "results.csv", index=False)
    loaded = lshbench.load_results(out)
    assert ["seqlen: must be an integer" in line for line in warned(caplog)] == [True]
    assert loaded["seqlen"].tolist() == [32]


def test_an_export_without_the_columns_rows_need_is_one_error(tmp_path: Path) -> None:
    out = exported_dir(tmp_path)
    table = pd.read_parquet(out / "results.parquet")
    table.drop(columns=["status", "mass_recall", "machine_id"]).to_parquet(out / "results.parquet")
    with pytest.raises(ConfigError, match=r"lacks required columns: status, mass_recall$"):
        lshbench.load_results(out)
    with pytest.raises(ConfigError, match="holds exported results"):
        ResultStore(out).__enter__()  # and it is not overwritten


# ------------------------------------------------------------ directories of exports only


def test_values_that_cannot_be_stored_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^seed=.*64-bit"):
        make_row(task(16, seed=10**20), "ok", time_median_s=0.5)
    with pytest.raises(ConfigError, match="time_median_s"):
        make_row(task(16), "ok", time_median_s=0.0)
    with ResultStore(tmp_path) as store:
        store.append(ok(16))
        with pytest.raises(ConfigError, match="seed"):
            store.append(dict(ok(32), seed=2**63))
        with pytest.raises(ConfigError, match="message"):
            store.append(dict(ok(48), message=object()))
        with pytest.raises(ConfigError, match="seqlen"):
            store.append(dict(ok(64), seqlen="abc"))
        frame = store.export()  # the directory still exports and reads
    assert len(frame) == 1 and len(lshbench.load_results(tmp_path)) == 1


def test_columns_outside_the_schema_never_break_the_export(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(dict(ok(16), extra=1, listed=[1, 2]))
        store.append(dict(ok(32), extra="text", listed=None))
        store.export()
    # a column mixing numbers and text is written as JSON text, the rest as it is
    assert lshbench.load_results(tmp_path)["extra"].tolist() == ["1", '"text"']
    parquet = pd.read_parquet(tmp_path / "results.parquet")
    assert parquet["extra"].tolist() == ["1", '"text"']
    assert parquet["listed"].iloc[0] == "[1, 2]" and pd.isna(parquet["listed"].iloc[1])


def test_an_empty_table_has_every_column() -> None:
    frame = rows_to_frame([])
    assert list(frame.columns) == list(COLUMNS + EXTRA_COLUMNS) and frame.empty


def test_the_flat_results_view_answers_plain_sql(tmp_path: Path) -> None:
    from lshbench.results.columns import COLUMN_TABLE

    with ResultStore(tmp_path) as store:
        store.append(ok(16))
        store.append(make_row(task(32, nb=[2, 4]), "error", "RuntimeError: boom"))
        store.append(make_row(task(16), "timeout", "slow"))  # a later row of the first key
        frame = store.export()
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    try:
        names = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
        assert names == [c.name for c in COLUMN_TABLE]
        got = conn.execute(
            "SELECT seqlen, n_buckets, n_buckets_spec, status, causal FROM results ORDER BY seqlen"
        ).fetchall()
    finally:
        conn.close()
    assert got == [(16, 8, "8", "timeout", 0), (32, 8, "2x4", "error", 0)]
    assert sorted(frame["status"]) == ["error", "timeout"]  # the view's rows are the table's


def test_a_store_without_the_view_gets_it_when_a_writer_opens_it(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(ok(16))
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.execute("DROP VIEW results")
    conn.execute("CREATE VIEW results AS SELECT 1 AS stale")  # an older version's columns
    conn.commit()
    reader = sqlite3.connect(tmp_path / "results.sqlite")  # a reader open meanwhile
    assert reader.execute("SELECT * FROM results").fetchall() == [(1,)]
    with ResultStore(tmp_path) as store:
        store.append(ok(32))
    assert conn.execute("SELECT seqlen, time_median_s FROM results ORDER BY seqlen").fetchall() == [
        (16, 0.5),
        (32, 0.5),
    ]
    assert reader.execute("SELECT seqlen FROM results ORDER BY seqlen").fetchall() == [(16,), (32,)]
    conn.close()
    reader.close()
    (tmp_path / "results.sqlite").chmod(0o444)  # a read-only store is still read
    try:
        assert len(lshbench.load_results(tmp_path)) == 2
    finally:
        (tmp_path / "results.sqlite").chmod(0o644)
