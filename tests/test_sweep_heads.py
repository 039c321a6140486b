"""Sweeps over per-head captured attention: ``--input file:X.npz`` with ``q``, ``k``, ``v``
and ``layer`` / ``head`` arrays runs separate queries and keys, one cell per head.

Each row's metrics must be those of the same head's arrays given to the backends directly
(separate QK, the worker's rotation rule), and carry that head's layer and head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lshbench
from lshbench.backends import get_backend
from lshbench.core.config import LSHConfig
from lshbench.core.hashing import random_rotations
from lshbench.measurement.input_files import load_input_file, save_input_file
from lshbench.measurement.metrics import attention_metrics
from lshbench.results.cells import rotation_seed
from lshbench.sweep.plan import plan_tasks
from lshbench.sweep.spec import build_spec

FAST = {"repeats": 5, "quiet": True}


def heads_file(path: Path, L: int = 96, d: int = 8) -> None:
    """Three heads (layers 0, 0, 2) with different score scales."""
    rng = np.random.default_rng(11)
    q = rng.normal(size=(3, L, d)) * np.array([0.5, 1.0, 2.0])[:, None, None]
    k, v = rng.normal(size=(3, L, d)), rng.normal(size=(3, L, d))
    save_input_file(
        path, q, v, {"causal": False}, k=k, layer=np.array([0, 0, 2]), head=np.array([0, 3, 1])
    )


def test_one_row_per_head_with_the_heads_own_metrics(tmp_path: Path) -> None:
    path = tmp_path / "heads.npz"
    heads_file(path)
    frame = lshbench.run_sweep(
        tmp_path / "out", input=f"file:{path}", seqlen=[64], chunk_len=[16], n_hashes=[2],
        n_buckets=[4], backend="numpy,dense", dtype="float64", seed=[1],
        method="lsh,local", weighting="multiplicity,count-once", **FAST,
    )  # fmt: skip
    assert (frame["status"] == "ok").all(), frame["message"].tolist()
    assert len(frame) == 3 * (1 + 4)  # per head: dense + 2 methods x 2 weightings
    assert set(frame["qk"]) == {"separate"} and set(frame["batch"]) == {1}
    assert sorted(set(zip(frame["layer"], frame["head"], strict=True))) == [(0, 0), (0, 3), (2, 1)]
    f = load_input_file(path)
    for n, (layer, head) in enumerate([(0, 0), (0, 3), (2, 1)]):
        q, k, v = f.qk[n, :64], f.k[n, :64], f.v[n, :64]  # cropped to --seqlen
        rows = frame[(frame["layer"] == layer) & (frame["head"] == head)]
        for _, row in rows[rows["backend"] == "numpy"].iterrows():
            config = LSHConfig(
                n_hashes=2, n_buckets=4, chunk_len=16, method=row["method"],
                weighting=row["weighting"], qk="separate",
            )  # fmt: skip
            rot = random_rotations(8, config, rotation_seed(1), np.dtype(np.float64))
            out = get_backend("numpy").attend(q, v, config, rot, k=k)
            want = attention_metrics(q, v, out, config, rot, k=k)
            for metric in ("attn_tv", "mass_recall", "top1_recall", "attn_entropy", "rel_err"):
                assert row[metric] == pytest.approx(want[metric], rel=1e-9, abs=1e-12), metric
        dense = rows[rows["backend"] == "dense"].iloc[0]
        assert dense["attn_tv"] == 0 and dense["rel_err"] < 1e-12
    # the heads differ: the sharper head (q scaled by 2) has the lower entropy
    entropy = frame.groupby("head")["attn_entropy"].first()
    assert entropy[1] < entropy[3] < entropy[0]


def test_shared_only_backends_and_causal_cells_are_not_planned(tmp_path: Path) -> None:
    path = tmp_path / "heads.npz"
    heads_file(path)
    lshbench.register_backend(
        "shared-only", "lshbench.backends.numpy_lsh:NumpyBackend", variants=True
    )
    try:
        spec = build_spec(
            "quick", input=f"file:{path}", seqlen=[64], chunk_len=[16], n_hashes=[1],
            backend="shared-only,numpy", causal=[False, True], method="lsh",
            weighting="multiplicity",
        )  # fmt: skip
        tasks, invalid = plan_tasks(spec)
    finally:
        lshbench.unregister_backend("shared-only")
    assert {t.backend for t in tasks} == {"numpy"} and len(tasks) == 3
    assert all(not t.causal and t.qk == "separate" for t in tasks)
    reasons = {reason.split(":")[0] for _, reason in invalid}
    assert reasons == {"backend=shared-only", "causal=True"}


def test_shared_files_keep_one_cell_for_all_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    save_input_file(tmp_path / "s.npz", rng.normal(size=(2, 64, 8)), rng.normal(size=(2, 64, 8)))
    spec = build_spec("quick", input=f"file:{tmp_path / 's.npz'}", backend="dense")
    tasks, _ = plan_tasks(spec)
    cells = [(t.batch, t.qk, t.layer, t.head) for t in tasks]
    assert cells == [(2, "shared", None, None)]


def test_a_causal_per_head_capture_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 32, 4)) for _ in range(3))
    path = tmp_path / "gpt.npz"
    save_input_file(
        path, q, v, {"causal": True}, k=k, layer=np.array([0, 0]), head=np.array([0, 1])
    )
    with pytest.raises(lshbench.ConfigError, match="holds causal attention"):
        build_spec("quick", input=f"file:{path}", backend="numpy")
