"""The oracle baseline in a sweep and in the report (docs/design.md section 2b): each
query's k best keys at an LSH configuration's distinct-key and slot counts, a metrics-only
row without time, a lower bound on every method's attn_tv at as many keys.

One small sweep of every method on the numpy backend runs once per module (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_sweep_refused

import lshbench
from lshbench.core.hashing import pipeline_buckets
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.metrics import dense_reference, oracle_metrics, window_metrics
from lshbench.results.cells import ORACLE_BUDGETS, Task, rotation_seed

L = 256
GRID = {
    "seqlen": [L],
    "chunk_len": [32],
    "n_hashes": [1, 2, 4],
    "n_buckets": ["rule"],
    "method": "lsh,random,local,oracle",
    "weighting": "multiplicity,count-once",
    "threads": 1,
    "input": "clustered,gaussian",
    "dtype": "float64",
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("oracle") / "run"
    return out, lshbench.run_sweep(out, backend="numpy,dense", **GRID)


def _same_config(df: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    same = (df["input"] == row["input"]) & (df["n_hashes"] == row["n_hashes"])
    return df[same & (df["chunk_len"] == row["chunk_len"])]


def test_oracle_rows_are_metrics_only(sweep) -> None:
    _, df = sweep
    assert (df["status"] == "ok").all(), df[["status", "message"]]
    oracle = df[df["method"] == "oracle"]
    # one row per input, n_hashes and budget, whatever --weighting lists
    assert len(oracle) == 2 * 3 * len(ORACLE_BUDGETS)
    assert set(oracle["oracle_k"]) == set(ORACLE_BUDGETS)
    assert (oracle["backend"] == "numpy").all() and (oracle["weighting"] == "count-once").all()
    assert df.loc[df["method"] != "oracle", "oracle_k"].isna().all()
    for col in ("time_median_s", "compile_s", "gflops", "tokens_per_s", "out_err_v"):
        assert oracle[col].isna().all(), col
    assert oracle["message"].str.startswith("not a method you can run").all()
    assert (oracle["keys_slots"] == oracle["keys_distinct"]).all()
    assert (oracle["top1_recall"] == 1).all()
    np.testing.assert_allclose(oracle["attn_tv"], 1 - oracle["mass_recall"], atol=1e-12)


def test_oracle_k_is_the_lsh_configurations_key_count(sweep) -> None:
    """k = LSH's mean distinct keys rounded (distinct), or its slots (slots)."""
    _, df = sweep
    for _, row in df[df["method"] == "oracle"].iterrows():
        lsh = _same_config(df, row)
        lsh = lsh[lsh["method"] == "lsh"]
        assert len(lsh) == 2  # both weightings: the same windows, the same counts
        count = lsh["keys_distinct"] if row["oracle_k"] == "distinct" else lsh["keys_slots"]
        assert row["keys_distinct"] == round(float(count.iloc[0]))
        assert count.nunique() == 1


def test_oracle_is_a_lower_bound_in_every_row(sweep) -> None:
    """The k best keys beat LSH at its own distinct-key count, and every method (at most
    that many distinct keys per query) at the slot count, in every row."""
    _, df = sweep
    for _, row in df[df["method"] == "oracle"].iterrows():
        same = _same_config(df, row)
        if row["oracle_k"] == "distinct":
            others = same[same["method"] == "lsh"]
        else:
            others = same[same["method"].isin(["lsh", "random", "local"])]
        assert len(others) >= 2
        assert (others["attn_tv"] >= row["attn_tv"] - 1e-12).all(), (row, others)
        assert (others["mass_recall"] <= row["mass_recall"] + 1e-12).all()


def test_oracle_row_is_what_the_public_metrics_give(sweep) -> None:
    """A row of the sweep equals oracle_metrics on the cell's input, with k from the LSH
    windows of the cell's rotations."""
    _, df = sweep
    row = df[(df["method"] == "oracle") & (df["input"] == "clustered") & (df["n_hashes"] == 2)]
    row = row[row["oracle_k"] == "distinct"].iloc[0]
    qk, v = make_inputs("clustered", 1, L, 64, 64, 0, np.float64)
    task = Task.from_dict({"backend": "numpy", **{k: _plain(row[k]) for k in GRID_KEYS}})
    cfg = task.config()
    assert (cfg.method, cfg.weighting) == ("lsh", "count-once")
    R = lshbench.random_rotations(64, cfg, rotation_seed(0), np.float64)
    ref = dense_reference(qk, v, False)
    win = window_metrics(qk, pipeline_buckets(qk, R, cfg), cfg, ref)
    (want,) = oracle_metrics(qk, [round(win.keys_distinct)], False, ref)
    assert row["attn_tv"] == pytest.approx(want.attn_tv, abs=1e-12)
    assert row["keys_distinct"] == want.keys_distinct


#: a hashing task of the first tables' axes (no oracle_k, no rotation_seed)
SMALL_TASK = {
    "backend": "numpy", "seqlen": 64, "batch": 1, "d": 8, "dv": 8, "input": "gaussian",
    "causal": False, "dtype": "float32", "threads": 1, "seed": 0, "n_hashes": 2,
    "n_buckets": 4, "chunk_len": 8, "chunks_before": 1, "chunks_after": 0,
}  # fmt: skip
GRID_KEYS = (
    "seqlen", "batch", "d", "dv", "input", "causal", "dtype", "threads", "seed", "qk",
    "n_hashes", "n_buckets", "chunk_len", "chunks_before", "chunks_after", "method",
    "weighting", "oracle_k",
)  # fmt: skip


def _plain(value):
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def test_report_bounds_lsh_by_the_oracle_and_never_picks_it(sweep, tmp_path) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.baselines import hashing_table, verdicts
    from lshbench.report.tradeoffs import budget_picks

    out, _ = sweep
    points = ra.series_points(ra.prepare([ra.load_run(out)]))
    picks = budget_picks(points, budgets=(0.05, 0.5, 1.0))
    assert not picks["series"].str.contains("oracle").any()
    table = hashing_table(points)
    assert len(table) and np.isfinite(table["err_oracle"]).all()
    assert (table["err_oracle"] <= table["err_lsh"] + 1e-12).all()
    assert (table["err_oracle_slots"] <= table["err_oracle"] + 1e-12).all()
    share = table["oracle_share"].dropna()
    assert len(share) and (share <= 1 + 1e-9).all()
    clustered = table[table["input"] == "clustered"]
    assert (clustered["oracle_share"] > 0).all()  # hashing finds some of the best keys
    assert (table["dist_local"] == table["keys"]).all()  # a local window repeats no key
    assert (table["dist_lsh"] <= table["keys"]).all()
    assert any("oracle" in sentence for sentence in verdicts(table))
    from lshbench.report.document import render_report

    render_report([out], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "oracle attn_tv (k = distinct)" in text and "distinct keys LSH/random/local" in text


def test_oracle_without_a_hashing_backend_is_refused(tmp_path: Path) -> None:
    args = ["--method", "lsh,oracle", "--backend", "dense", "--seqlen", "128"]
    assert_sweep_refused(tmp_path, args, "method=lsh,oracle")


def test_tasks_without_the_oracle_keep_their_ids() -> None:
    """oracle_k is left out of the id when empty: tables written before it keep theirs."""
    base = SMALL_TASK
    task = Task.from_dict(base)
    assert task.id == Task.from_dict({**base, "oracle_k": None}).id
    oracle = Task.from_dict({**base, "method": "oracle", "oracle_k": "distinct"})
    assert oracle.id != Task.from_dict({**base, "method": "oracle", "oracle_k": "slots"}).id
    assert oracle.is_oracle and oracle.config().method == "lsh"


# --------------------------------------------------------------------------- rotation draws


@pytest.fixture(scope="module")
def draws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("draws") / "run"
    grid = {**GRID, "n_hashes": [1, 2], "weighting": "count-once", "input": "clustered"}
    return out, lshbench.run_sweep(out, backend="numpy,dense", rotation_seeds=3, **grid)


def test_rotation_seeds_give_one_row_per_draw(draws, sweep) -> None:
    _, df = draws
    assert (df["status"] == "ok").all(), df[["status", "message"]]
    df = df[df["n_hashes"].isna() | (df["n_hashes"] == 2)]
    for method in ("lsh", "random"):
        rows = df[df["method"] == method].sort_values("rotation_seed")
        assert rows["rotation_seed"].tolist() == [0, 1, 2]
        assert rows["attn_tv"].nunique() == 3  # independent rotations, different windows
    local = df[df["method"] == "local"]
    assert local["rotation_seed"].tolist() == [0]  # no rotation to draw
    oracle = df[df["method"] == "oracle"]
    assert sorted(oracle.loc[oracle["oracle_k"] == "distinct", "rotation_seed"]) == [0, 1, 2]
    assert oracle.loc[oracle["oracle_k"] == "slots", "rotation_seed"].tolist() == [0]
    assert df.loc[df["backend"] == "dense", "rotation_seed"].isna().all()
    # the first draw is the single-draw sweep's row: same id, same rotations, same numbers
    _, one = sweep
    first = df[df["rotation_seed"] == 0].set_index("cell_id")
    same = one[one["cell_id"].isin(first.index)].set_index("cell_id")
    assert len(same) == len(first) == 5  # lsh, random, local, two oracle rows
    np.testing.assert_allclose(same["attn_tv"], first.loc[same.index, "attn_tv"], atol=1e-12)
    assert set(one["rotation_seed"].dropna()) == {0}


def test_report_gives_the_median_and_range_over_draws(draws) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.baselines import hashing_table

    out, df = draws
    points = ra.series_points(ra.prepare([ra.load_run(out)]))
    points = points[points["n_hashes"].isna() | (points["n_hashes"] == 2)]
    lsh = df[(df["method"] == "lsh") & (df["n_hashes"] == 2)]["attn_tv"]
    (row,) = hashing_table(points).to_dict("records")
    assert row["err_lsh"] == pytest.approx(lsh.median(), abs=1e-12)
    assert (row["err_lsh_lo"], row["err_lsh_hi"]) == (lsh.min(), lsh.max())
    assert row["n_lsh"] == 3 and row["err_local_lo"] == row["err_local_hi"]
    from lshbench.report.tradeoffs import budget_picks

    only = points[points["method"].isin(["lsh", "oracle"])]  # the oracle is never picked
    (pick,) = budget_picks(only, budgets=(1.0,)).to_dict("records")
    assert pick["error"] == pytest.approx(lsh.median(), abs=1e-12)
    assert (pick["error_lo"], pick["error_hi"]) == (lsh.min(), lsh.max())


def test_error_figure_draws_the_spread_over_draws(draws) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.figures_accuracy import figure_error
    from lshbench.report.plotting import Palette

    out, df = draws
    points = ra.series_points(ra.prepare([ra.load_run(out)]))
    plot = figure_error(points, "n_hashes", ("method", "weighting"), "error_hashes",
                        Palette(points), ra.varying_axes(points))  # fmt: skip
    (ax,) = [a for a in plot.figure.axes if a.get_ylabel().startswith("attn_tv")]
    bands = [c.get_paths()[0].vertices for c in ax.collections if c.get_paths()]
    lsh = df[df["method"] == "lsh"]
    want = [(lsh["attn_tv"].min(), lsh["attn_tv"].max())]  # over both n_hashes
    # one band per line with a spread: lsh and random (local and the slots oracle have none)
    assert len(bands) >= 2
    assert any(np.allclose((v[:, 1].min(), v[:, 1].max()), want[0]) for v in bands)


def test_rotation_draw_ids_and_the_upgrade() -> None:
    from lshbench.results.upgrade import upgrade_row

    base = SMALL_TASK
    first = Task.from_dict(base)
    assert first.id == Task.from_dict({**base, "rotation_seed": 0}).id  # ids of old tables
    assert first.id != Task.from_dict({**base, "rotation_seed": 1}).id
    assert rotation_seed(0, 0) == rotation_seed(0) != rotation_seed(0, 1)
    assert upgrade_row({"backend": "numpy", "n_hashes": 2}, 2)["rotation_seed"] == 0
    assert upgrade_row({"backend": "dense", "n_hashes": None}, 2)["rotation_seed"] is None


def test_bad_rotation_seeds_are_refused(tmp_path: Path) -> None:
    assert_sweep_refused(tmp_path, ["--rotation-seeds", "0"], "rotation_seeds=0")
