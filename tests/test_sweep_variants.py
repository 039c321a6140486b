"""The accuracy half of a sweep: the variant axes (--method, --weighting), the input
axes (--target-entropy, --value-corr), the accuracy columns and how they are planned.

One small sweep of every method and weighting on the numpy backend runs once per module
(a few seconds); the rest plans grids without running them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import assert_sweep_refused

import lshbench
from lshbench.measurement import worker
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.metrics import attention_metrics
from lshbench.results.cells import TASK_KEYS, Task, rotation_seed, task_id
from lshbench.results.store import COLUMNS
from lshbench.sweep.plan import input_cells, plan_tasks
from lshbench.sweep.spec import build_spec

ACCURACY = [
    "attn_tv", "mass_recall", "top1_recall", "keys_slots", "keys_distinct", "attn_entropy",
    "out_err_v", "task_acc",
]  # fmt: skip
GRID = {
    "seqlen": [256],
    "chunk_len": [32],
    "n_hashes": [1, 2],
    "n_buckets": ["rule", 4],
    "method": "lsh,random,local",
    "weighting": "multiplicity,count-once",
    "threads": 1,
    "input": "clustered",
    "dtype": "float64",
}


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("variants") / "run"
    return out, lshbench.run_sweep(out, backend="numpy,dense", **GRID)


def test_every_variant_is_a_row_with_sensible_accuracy(variants) -> None:
    _, df = variants
    assert (df["status"] == "ok").all(), df[["status", "message"]]
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    lsh = df[df["backend"] == "numpy"]
    # lsh and random: 2 bucket counts x 2 n_hashes x 2 weightings; local has no buckets:
    # one row per n_hashes and weighting, whatever --n-buckets lists
    counts = lsh.groupby("method").size().to_dict()
    assert counts == {"lsh": 8, "random": 8, "local": 4}
    assert lsh.loc[lsh["method"] == "local", "n_buckets"].isna().all()
    assert lsh.loc[lsh["method"] != "local", "n_buckets"].notna().all()
    assert set(zip(lsh["method"], lsh["weighting"], strict=True)) == {
        (m, w) for m in ("lsh", "random", "local") for w in ("multiplicity", "count-once")
    }
    assert ((lsh["attn_tv"] >= 0) & (lsh["attn_tv"] <= 1)).all()
    assert ((lsh["mass_recall"] >= 0) & (lsh["mass_recall"] <= 1 + 1e-12)).all()
    assert lsh["top1_recall"].between(0, 1).all() and (lsh["out_err_v"] >= 0).all()
    once = lsh[lsh["weighting"] == "count-once"]
    np.testing.assert_allclose(once["attn_tv"], 1 - once["mass_recall"], rtol=0, atol=1e-9)
    # multiplicity weighting with H = 2 is not count-once: some rows differ
    multi = lsh[(lsh["weighting"] == "multiplicity") & (lsh["n_hashes"] == 2)]
    assert (multi["attn_tv"] - (1 - multi["mass_recall"])).abs().max() > 1e-6
    dense = df[df["backend"] == "dense"].iloc[0]
    assert dense["attn_tv"] == 0 and dense["mass_recall"] == 1 and dense["top1_recall"] == 1
    assert dense["out_err_v"] < 1e-12 and pd.isna(dense["method"])
    assert dense["keys_slots"] == dense["keys_distinct"] == 256  # every key, once
    # a local window never repeats a key; LSH and random buckets repeat some across rounds
    assert (lsh["keys_distinct"] <= lsh["keys_slots"]).all()
    local = lsh[lsh["method"] == "local"]
    assert (local["keys_distinct"] == local["keys_slots"]).all()
    two = lsh[(lsh["method"] != "local") & (lsh["n_hashes"] == 2)]
    assert (two["keys_distinct"] < two["keys_slots"]).all()
    # attn_entropy is the input's: one value for the whole cell
    assert df["attn_entropy"].nunique() == 1 and df["attn_entropy"].iloc[0] > 0
    assert df["task_acc"].isna().all()  # clustered is not a task
    assert df[["target_entropy", "value_corr"]].isna().all().all()  # clustered takes neither


def test_the_worker_measures_what_the_public_metrics_give(variants) -> None:
    """Rows match :func:`attention_metrics` on the cell's input, config and rotations."""
    _, df = variants
    qk, v = make_inputs("clustered", 1, 256, 64, 64, 0, np.float64)
    for method in ("random", "local"):
        row = df[(df["method"] == method) & (df["n_hashes"] == 2)].iloc[0]
        task = Task.from_dict(
            {k: (None if pd.isna(row[k]) else row[k].item() if hasattr(row[k], "item") else row[k])
             for k in TASK_KEYS}
        )  # fmt: skip
        cfg = task.config()
        R = lshbench.random_rotations(64, cfg, rotation_seed(0), np.float64)
        out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
        expected = attention_metrics(qk, v, out, cfg, R)
        for name in ACCURACY[:-1]:
            assert row[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


def test_the_new_columns_are_in_the_exports(variants) -> None:
    out, _ = variants
    new = ["method", "weighting", "target_entropy", "value_corr", *ACCURACY]
    for table in (pd.read_parquet(out / "results.parquet"), pd.read_csv(out / "results.csv")):
        assert set(new) <= set(table.columns)
        assert "top1_agree" not in table.columns
        assert set(table["method"].dropna()) == {"lsh", "random", "local"}
    csv = pd.read_csv(out / "results.csv")
    assert set(csv["weighting"].dropna()) == {"multiplicity", "count-once"}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--method", "foo"], "method=foo"),
        (["--weighting", "lsh"], "weighting=lsh"),
        (["--target-entropy", "-1", "--input", "duplicate"], "target_entropy=-1"),
        (["--target-entropy", "2", "--input", "gaussian"], "target_entropy=2"),  # none takes it
        (["--value-corr", "1.5"], "value_corr=1.5"),
    ],
)
def test_bad_variant_options_are_one_line_exit_2(tmp_path: Path, args: list[str], field) -> None:
    assert_sweep_refused(tmp_path, args, field)


def test_variant_axes_from_a_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "grid.toml"
    config.write_text('method = ["local", "lsh"]\nweighting = "count-once"\n')
    spec = build_spec("quick", config)
    assert spec.method == ("local", "lsh") and spec.weighting == ("count-once",)
    default = build_spec("paper")
    assert default.method == ("lsh",) and default.weighting == ("multiplicity",)


def test_a_backend_without_variants_gets_section_2_only(monkeypatch) -> None:
    """Registry fact ``variants``: hf gets only method lsh / weighting multiplicity tasks;
    a grid that would give it none is refused."""
    assert lshbench.backend_spec("numpy").variants and lshbench.backend_spec("numba").variants
    for name in ("hf", "dense", "torch-sdpa"):
        assert not lshbench.backend_spec(name).variants
    monkeypatch.setattr(lshbench.backends.registry, "_missing", lambda requires: [])
    spec = build_spec(
        "quick",
        backend="numpy,hf",
        seqlen=[256],
        chunk_len=[64],
        n_hashes=[2],
        method="lsh,random",
        weighting="multiplicity,count-once",
        input="gaussian,clustered",
    )
    tasks, _ = plan_tasks(spec)
    hf = [(t.method, t.weighting) for t in tasks if t.backend == "hf"]
    numpy = [(t.method, t.weighting) for t in tasks if t.backend == "numpy"]
    assert hf == [("lsh", "multiplicity")] * 2  # gaussian and clustered
    assert len(numpy) == 4 * 2
    with pytest.raises(lshbench.ConfigError, match="backend=hf: computes only method lsh"):
        plan_tasks(dataclasses.replace(spec, method=("random",)))


def test_hf_rejects_a_variant_when_called_directly() -> None:
    if not lshbench.list_backends()["hf"].available:
        pytest.skip(lshbench.list_backends()["hf"].reason)
    qk, v = make_inputs("gaussian", 1, 128, 64, 64, 0, np.float32)
    for field, value in (("method", "random"), ("weighting", "count-once")):
        cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=4, chunk_len=32, **{field: value})
        R = lshbench.random_rotations(64, cfg, 0)
        with pytest.raises(lshbench.ConfigError, match=f"^{field}={value}: the hf backend"):
            lshbench.get_backend("hf").attend(qk, v, cfg, R)


def test_input_axes_multiply_only_the_inputs_that_take_them() -> None:
    spec = dataclasses.replace(
        build_spec("quick"),
        input=("gaussian", "peaked", "duplicate"),
        target_entropy=(1.0, 3.0),
        value_corr=(0.0, 0.5),
    )
    cells = input_cells(spec)
    assert [c for c in cells if c[0] == "gaussian"] == [("gaussian", None, None, None)]
    assert [c for c in cells if c[0] == "duplicate"] == [
        ("duplicate", 1.0, None, None),
        ("duplicate", 3.0, None, None),
    ]
    assert sorted(c[1:] for c in cells if c[0] == "peaked") == [
        (1.0, 0.0, None), (1.0, 0.5, None), (3.0, 0.0, None), (3.0, 0.5, None)
    ]  # fmt: skip
    # not given: duplicate as the paper's (not rescaled); peaked at its generator's defaults
    defaults = input_cells(dataclasses.replace(spec, target_entropy=None, value_corr=None))
    assert ("duplicate", None, None, None) in defaults
    assert next(c for c in defaults if c[0] == "peaked")[2] == 0.0


def test_input_axes_and_variants_are_part_of_the_id_and_section_2_ids_are_unchanged() -> None:
    task = {"backend": "numpy", "seqlen": 1024, "batch": 1, "d": 64, "dv": 64,
            "input": "duplicate", "causal": False, "dtype": "float32", "threads": 1, "seed": 0,
            "n_hashes": 2, "n_buckets": 64, "chunk_len": 32, "chunks_before": 1,
            "chunks_after": 0}  # fmt: skip
    # a task of a table written before these axes existed keeps its id
    same = {**task, "method": "lsh", "weighting": "multiplicity"}
    assert task_id(same) == task_id({**same, "target_entropy": None, "value_corr": None})
    assert task_id(same) == task_id(task)
    assert Task.from_dict(same).id == task_id(task)  # the record's id is the same digest
    ids = {
        task_id({**same, **change})
        for change in (
            {},
            {"method": "random"},
            {"weighting": "count-once"},
            {"target_entropy": 1.0},
            {"target_entropy": 2.0},
            {"value_corr": 0.0},
        )
    }
    assert len(ids) == 6


def test_the_worker_passes_input_axes_only_when_given_and_the_cells_causal() -> None:
    cell = Task(backend="dense", seqlen=64, batch=1, d=8, dv=8, input="gaussian", causal=True,
                dtype="float32", threads=1, seed=2)  # fmt: skip
    assert worker._input_knobs(cell) == {"causal": True}
    cell = cell.replace(target_entropy=1.5, input="duplicate")
    assert worker._input_knobs(cell) == {"target_entropy": 1.5, "causal": True}
    qk, v, k = worker._make_cell_inputs(cell, np.float32)
    assert k is None  # generated inputs share queries and keys
    want_qk, want_v = make_inputs(
        "duplicate", 1, 64, 8, 8, 2, np.float32, target_entropy=1.5, causal=True
    )
    np.testing.assert_array_equal(qk, want_qk)
    np.testing.assert_array_equal(v, want_v)


def test_task_accuracy_only_for_the_duplicate_input() -> None:
    from lshbench.measurement.tasks import duplicate_copy_index, task_accuracy

    _, v = make_inputs("duplicate", 1, 64, 8, 8, 0, np.float64)
    cell = Task(backend="dense", seqlen=64, batch=1, d=8, dv=8, input="gaussian", causal=False,
                dtype="float64", threads=1, seed=0)  # fmt: skip
    assert worker._task_accuracy(cell, v, v) is None
    got = worker._task_accuracy(cell.replace(input="duplicate"), v, v)
    assert got == task_accuracy(v, v, duplicate_copy_index(64)) == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_entropy", 10**400),
        ("target_entropy", "nan"),
        ("target_entropy", True),
        ("target_entropy", 0),
        ("value_corr", -0.1),
        ("value_corr", "inf"),
        ("method", ["lsh", 3]),
    ],
    ids=["huge", "nan", "bool", "zero", "negative", "inf", "not-a-name"],
)
def test_bad_axis_values_from_python_are_one_config_error(field: str, value: Any) -> None:
    with pytest.raises(lshbench.ConfigError) as info:
        build_spec("quick", input="duplicate", **{field: value})
    assert str(info.value).startswith(f"{field}=") and "\n" not in str(info.value)
