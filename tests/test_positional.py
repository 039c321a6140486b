"""The ``positional`` input: a chosen share of attention mass near each query's position.

Shares and entropies are measured on ALL rows with the dense backend's masks and key
normalization (:func:`lshbench.measurement.positional.local_share`,
:func:`lshbench.measurement.sharpness.mean_row_entropy`), not on the calibration's sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import assert_sweep_refused

import lshbench
from lshbench import ConfigError
from lshbench.core.attention import normalize_keys
from lshbench.measurement.inputs import make_inputs
from lshbench.measurement.metrics import attention_metrics
from lshbench.measurement.positional import local_share, position_vectors
from lshbench.measurement.sharpness import mean_row_entropy
from lshbench.report.columns import input_label
from lshbench.results.cells import Task, task_id
from lshbench.sweep.plan import input_cells
from lshbench.sweep.spec import build_spec


@pytest.mark.parametrize("entropy", [1.0, 2.0, 4.0])
def test_measured_local_share_tracks_the_knob_at_the_target_entropy(entropy: float) -> None:
    L = 512
    measured = []
    for share in (0.2, 0.5, 0.8):
        qk, _ = make_inputs(
            "positional", 1, L, 32, seed=3, dtype=np.float64, target_entropy=entropy,
            local_share=share,
        )  # fmt: skip
        got = local_share(qk)
        measured.append(got)
        assert got == pytest.approx(share, abs=0.02), (entropy, share, got)
        assert mean_row_entropy(qk) == pytest.approx(entropy, rel=0.02), (entropy, share)
    assert measured == sorted(measured)


def test_share_zero_is_peaked_and_share_one_is_nearly_all_local() -> None:
    peaked = make_inputs("peaked", 2, 256, 16, seed=5, target_entropy=1.5)
    zero = make_inputs("positional", 2, 256, 16, seed=5, target_entropy=1.5, local_share=0.0)
    for a, b in zip(peaked, zero, strict=True):
        np.testing.assert_array_equal(a, b)
    one, _ = make_inputs("positional", 1, 512, 32, seed=5, target_entropy=1.0, local_share=1.0)
    assert local_share(one) > 0.98
    # without position the share is what any 64 of 511 keys would hold, about 1/8
    assert local_share(zero[0]) < 0.25


def test_causal_share_counts_the_keys_before_the_query() -> None:
    qk, _ = make_inputs(
        "positional", 1, 512, 32, seed=1, target_entropy=2.0, local_share=0.6, causal=True,
        dtype=np.float64,
    )  # fmt: skip
    assert local_share(qk, causal=True) == pytest.approx(0.6, abs=0.03)
    assert mean_row_entropy(qk, causal=True) == pytest.approx(2.0, rel=0.03)


def test_position_vectors_are_near_alike_only_at_nearby_positions() -> None:
    p = position_vectors(np.random.default_rng(0), 1024, 64)  # window 64: s = 64 / 6
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-12)
    sims = normalize_keys(p) @ p.T  # (L, L)
    gap = np.abs(np.subtract.outer(np.arange(1024), np.arange(1024)))  # (L, L)
    assert sims[gap == 1].mean() > 0.95
    assert sims[gap == 32].mean() < 0.3  # the window's edge
    assert abs(sims[gap > 128].mean()) < 0.05  # far apart: random directions


@pytest.mark.parametrize("seed", [0, 1])
def test_local_beats_random_at_share_08_and_not_at_share_0(seed: int) -> None:
    L = 1024
    config = {"n_hashes": 1, "n_buckets": 32, "chunk_len": 32}
    tv = {}
    for share in (0.0, 0.8):
        qk, v = make_inputs(
            "positional", 2, L, 32, seed=seed, dtype=np.float64, target_entropy=2.0,
            local_share=share,
        )  # fmt: skip
        for method in ("random", "local"):
            cfg = lshbench.LSHConfig(**config, method=method)
            R = lshbench.random_rotations(32, cfg, seed=1, dtype=np.float64)
            out = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
            metrics = attention_metrics(qk, v, out, cfg, R)
            assert metrics["keys_slots"] == 64  # the same slots for both
            tv[share, method] = metrics["attn_tv"]
    assert tv[0.8, "local"] < tv[0.8, "random"] - 0.3, tv
    # no position in the input: a window holds what any 64 keys hold
    assert tv[0.0, "local"] > tv[0.0, "random"] - 0.03, tv


def test_a_positional_sweep_records_the_share_and_the_report_label_shows_it(tmp_path) -> None:
    df = lshbench.run_sweep(
        tmp_path / "run", backend="numpy", seqlen=[512], chunk_len=[32], n_hashes=[1],
        method="random,local", weighting="count-once", input="positional", local_share="0,0.8",
        target_entropy=[2.0],
        d=[32], dtype="float64",
    )  # fmt: skip
    assert (df["status"] == "ok").all(), df[["status", "message"]]
    rows = df[df["backend"] == "numpy"].set_index(["local_share", "method"])["attn_tv"]
    assert rows[0.8, "local"] < rows[0.8, "random"] - 0.2
    assert rows[0.0, "local"] > rows[0.0, "random"] - 0.1
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    assert sorted(table["local_share"].dropna().unique()) == [0.0, 0.8]
    label = input_label("positional", 2.0, 0.0, 0.8)
    assert label == "positional (local share 0.8, entropy 2 nats, rho 0)"
    assert input_label("peaked", 2.0, 0.0, 0.8) == "peaked (entropy 2 nats, rho 0)"


def test_the_share_axis_multiplies_only_positional_and_keeps_old_ids() -> None:
    spec = build_spec("quick", input="peaked,positional", local_share="0.2,0.9")
    cells = input_cells(spec)
    assert {c[3] for c in cells if c[0] == "positional"} == {0.2, 0.9}
    assert {c[3] for c in cells if c[0] == "peaked"} == {None}
    task = Task(backend="numpy", seqlen=64, batch=1, d=8, dv=8, input="peaked", causal=False,
                dtype="float32", threads=1, seed=0, target_entropy=1.0)  # fmt: skip
    without = {k: v for k, v in task.as_dict().items() if k != "local_share"}
    assert task.id == task_id(without)  # a row written before the axis keeps its id
    assert task.replace(input="positional", local_share=0.5).id != task.id


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "gaussian", "local_share": 0.5}, "local_share=0.5"),
        ({"kind": "positional", "local_share": 1.5}, "local_share=1.5"),
        ({"kind": "positional", "local_share": True}, "local_share=True"),
        ({"kind": "positional", "local_window": 7}, "local_window=7"),
    ],
)
def test_bad_share_or_window_is_one_config_error(kwargs: dict, field: str) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(ConfigError) as info:
        make_inputs(kind, 1, 64, 8, **kwargs)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--local-share", "0.5", "--input", "peaked"], "local_share=0.5"),  # none takes it
        (["--local-share", "2", "--input", "positional"], "local_share=2"),
    ],
)
def test_bad_share_options_are_one_line_exit_2(tmp_path, args: list[str], field: str) -> None:
    assert_sweep_refused(tmp_path, args, field)
