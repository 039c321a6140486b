"""The results store: append-only log, torn-line repair, exports, one writer at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import lshbench
from lshbench import ConfigError
from lshbench.results.store import COLUMNS, EXTRA_COLUMNS, ResultStore, make_row


def task(L: int, backend: str = "numpy", nb=8) -> dict:
    return {"backend": backend, "seqlen": L, "batch": 2, "d": 4, "dv": 4, "input": "gaussian",
            "causal": False, "dtype": "float32", "threads": 1, "seed": 0, "n_hashes": 2,
            "n_buckets": nb, "chunk_len": 4, "chunks_before": 1, "chunks_after": 0}  # fmt: skip


def test_rows_export_and_reload(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(make_row(task(16), "ok", time_median_s=0.5, time_samples_s=[0.4, 0.5]))
        store.append(make_row(task(32, nb=[2, 4]), "error", "RuntimeError: boom"))
        frame = store.export()
    assert list(frame.columns) == list(COLUMNS + EXTRA_COLUMNS)
    assert frame["n_buckets"].tolist() == [8, 8] and frame["n_buckets_spec"].tolist() == [
        "8",
        "2x4",
    ]
    assert frame["tokens"].tolist() == [32, 64]
    parquet = pd.read_parquet(tmp_path / "results.parquet")
    assert parquet["time_samples_s"].iloc[0].tolist() == [0.4, 0.5]
    csv = pd.read_csv(tmp_path / "results.csv")
    assert json.loads(csv["time_samples_s"].iloc[0]) == [0.4, 0.5]
    loaded = lshbench.load_results(tmp_path)
    assert loaded["status"].tolist() == ["ok", "error"]


def test_torn_last_line_is_ignored_then_cut(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(make_row(task(16), "ok"))
    log = tmp_path / "results.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'{"cell_id": "torn", "status": "o')  # killed mid-write
    assert len(lshbench.load_results(tmp_path)) == 1
    with ResultStore(tmp_path) as store:
        assert log.read_bytes() == good
        store.append(make_row(task(32), "ok"))
    assert len(lshbench.load_results(tmp_path)) == 2


def test_later_row_of_a_cell_wins(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(make_row(task(16), "timeout", "slow"))
        store.append(make_row(task(16), "ok"))
    loaded = lshbench.load_results(tmp_path)
    assert loaded["status"].tolist() == ["ok"]


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with ResultStore(tmp_path), pytest.raises(ConfigError, match="another lshbench sweep"):
        ResultStore(tmp_path).__enter__()
    with ResultStore(tmp_path):  # released
        pass


def test_bad_status_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="status"):
        make_row(task(16), "fine")
    with pytest.raises(FileNotFoundError):
        lshbench.load_results(tmp_path / "nothing")
