"""The sweep's inputs: every generator, ``--input file:PATH`` and
``--config-from-input``.

A file's rows must give the metrics of calling the backends on the same arrays directly; a
bad file is one line, exit status 2, with nothing written; a captured model's file sweeps
with the model's configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_exit_2

import lshbench
from lshbench.backends import get_backend
from lshbench.cli import main
from lshbench.core.config import LSHConfig
from lshbench.core.hashing import random_rotations
from lshbench.measurement.input_files import save_input_file
from lshbench.measurement.metrics import attention_metrics
from lshbench.results.cells import rotation_seed
from lshbench.sweep.plan import plan_tasks
from lshbench.sweep.spec import build_spec

FAST = {"repeats": 5, "quiet": True, "method": "lsh", "weighting": "multiplicity"}


def arrays(B: int = 2, L: int = 128, d: int = 16, dv: int = 8, dtype: Any = np.float64) -> tuple:
    rng = np.random.default_rng(7)
    return rng.normal(size=(B, L, d)).astype(dtype), rng.normal(size=(B, L, dv)).astype(dtype)


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["sweep", *args])


# ------------------------------------------------------------------ generated inputs


def test_duplicate_rows_carry_task_acc_and_peaked_rows_their_knobs(tmp_path: Path) -> None:
    frame = lshbench.run_sweep(
        tmp_path / "out", input="duplicate,peaked", seqlen=[256], chunk_len=[32], n_hashes=[2],
        backend="numpy,dense", target_entropy=[2.0], value_corr=[0.5], **FAST,
    )  # fmt: skip
    assert (frame["status"] == "ok").all(), frame["message"].tolist()
    dup = frame[frame["input"] == "duplicate"].set_index("backend")
    assert dup.loc["dense", "task_acc"] == 1.0
    assert 0 < dup.loc["numpy", "task_acc"] <= 1.0
    peaked = frame[frame["input"] == "peaked"]
    assert len(peaked) == 2 and peaked["task_acc"].isna().all()
    assert (peaked["target_entropy"] == 2.0).all() and (peaked["value_corr"] == 0.5).all()
    assert abs(peaked["attn_entropy"].iloc[0] - 2.0) < 0.2


def test_every_generator_is_an_input() -> None:
    spec = build_spec("quick", input="gaussian,clustered,duplicate,peaked", backend="dense")
    assert spec.input == ("gaussian", "clustered", "duplicate", "peaked")


# ------------------------------------------------------------------ file inputs


def test_file_rows_equal_the_backends_called_directly(tmp_path: Path) -> None:
    """The sweep's metrics of a file are those of the same arrays, config and
    rotations (the worker's rotation_seed rule) given to the backends directly."""
    qk, v = arrays()
    path = tmp_path / "mine.npz"
    save_input_file(path, qk, v)
    frame = lshbench.run_sweep(
        tmp_path / "out", input=f"file:{path}", chunk_len=[16], n_hashes=[2],
        n_buckets=[8], backend="numpy,dense", dtype="float64", seed=[3], **FAST,
    )  # fmt: skip
    assert (frame["status"] == "ok").all(), frame["message"].tolist()
    assert set(frame["input"]) == {"file:mine.npz"}
    assert set(frame["seqlen"]) == {128} and set(frame["batch"]) == {2}
    assert set(frame["d"]) == {16} and set(frame["dv"]) == {8}
    config = LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16, chunks_before=1, chunks_after=0)
    rotations = random_rotations(16, config, rotation_seed(3), np.dtype(np.float64))
    for name, exact in (("numpy", False), ("dense", True)):
        out = get_backend(name).attend(qk, v, config, None if exact else rotations)
        want = attention_metrics(qk, v, out, config, rotations, exact=exact)
        row = frame[frame["backend"] == name].iloc[0]
        for metric in ("attn_tv", "mass_recall", "out_err_v", "rel_err"):
            assert row[metric] == pytest.approx(want[metric], rel=1e-9, abs=1e-12), metric
    assert frame["input_sha256"].nunique() == 1 and len(frame["input_sha256"].iloc[0]) == 64
    assert set(frame["input_path"]) == {str(path)}


def test_file_metadata_seqlen_crop_and_changed_file(tmp_path: Path) -> None:
    qk, v = arrays(B=1, L=128, dtype=np.float32)
    path = tmp_path / "crop.npz"
    save_input_file(path, qk, v)
    out = tmp_path / "out"
    frame = lshbench.run_sweep(
        out, input=f"file:{path}", seqlen=[64, 128, 4096], chunk_len=[16], n_hashes=[1],
        backend="dense", **FAST,
    )  # fmt: skip
    assert sorted(frame["seqlen"]) == [64, 128]  # 4096 is above the file's L
    meta = json.loads((out / "metadata.json").read_text())
    text = json.dumps(meta)
    assert "crop.npz" in text and str(path) in text
    first_sha = frame["input_sha256"].iloc[0]
    assert first_sha in text
    again = lshbench.run_sweep(out, input=f"file:{path}", seqlen=[64, 128], backend="dense", **FAST)
    assert set(again["run_id"]) == set(frame["run_id"])  # unchanged file: rows reused
    save_input_file(path, qk * 2, v)  # the same name, other numbers
    changed = lshbench.run_sweep(
        out, input=f"file:{path}", seqlen=[64, 128], backend="dense", **FAST
    )
    assert not set(changed["run_id"]) & set(frame["run_id"])  # measured again
    assert set(changed["input_sha256"]) != {first_sha}
    assert set(changed["input"]) == {"file:crop.npz"}


def test_file_cells_take_the_files_shape(tmp_path: Path) -> None:
    qk, v = arrays(B=3, L=96, d=16, dv=8)
    path = tmp_path / "shape.npz"
    save_input_file(path, qk, v)
    spec = build_spec("quick", input=f"file:{path},gaussian", d=[32], batch=[1], backend="dense")
    tasks, _ = plan_tasks(spec)
    files = {(t.seqlen, t.batch, t.d, t.dv) for t in tasks if t.input != "gaussian"}
    assert files == {(96, 3, 16, 8)}  # the preset's lengths and --d, --batch do not apply
    assert {t.d for t in tasks if t.input == "gaussian"} == {32}


def write_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npz"
    qk, v = arrays(B=1, L=32)
    if kind == "missing":
        return tmp_path / "none.npz"
    if kind == "not_npz":
        path.write_text("hello")
    elif kind == "no_v":
        np.savez(path, qk=qk)
    elif kind == "shapes":
        np.savez(path, qk=qk, v=v[:, :16])
    elif kind == "nan":
        qk[0, 3, 1] = np.nan
        np.savez(path, qk=qk, v=v)
    elif kind == "inf":
        v[0, 0, 0] = np.inf
        np.savez(path, qk=qk, v=v)
    elif kind == "integer":
        np.savez(path, qk=qk.astype(np.int32), v=v.astype(np.int32))
    return path


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("missing", "no such file"),
        ("not_npz", "not an .npz"),
        ("no_v", "no array 'v'"),
        ("shapes", "must share B and L"),
        ("nan", "NaN or Inf"),
        ("inf", "NaN or Inf"),
        ("integer", "int32"),
    ],
)
def test_bad_file_is_one_line_exit_2_nothing_written(tmp_path: Path, kind: str, rule: str) -> None:
    path = write_bad(tmp_path, kind)
    out = tmp_path / "out"
    res = run_cli("--input", f"gaussian,file:{path}", "--backend", "dense", "--out", str(out))
    assert_one_line_exit_2(res, f"file:{path}", rule)
    assert not out.exists()


def test_file_errors_of_the_grid(tmp_path: Path) -> None:
    qk, v = arrays(B=1, L=64)
    path = tmp_path / "a.npz"
    save_input_file(path, qk, v)
    other = tmp_path / "sub"
    other.mkdir()
    save_input_file(other / "a.npz", qk, v)
    out = str(tmp_path / "out")
    res = run_cli("--input", f"file:{path}", "--seqlen", "128,256", "--out", out)
    assert_one_line_exit_2(res, "seqlen=128,256", "no length fits file:a.npz", "64")
    res = run_cli("--input", f"file:{path},file:{other / 'a.npz'}", "--out", out)
    assert_one_line_exit_2(res, "same name")
    res = run_cli("--input", "file:", "--out", out)
    assert_one_line_exit_2(res, "input=file:", "must name a file")
    res = run_cli("--input", "gaussian", "--config-from-input", "--out", out)
    assert_one_line_exit_2(res, "config_from_input", "exactly one --input file:PATH")
    res = run_cli("--input", f"file:{path}", "--config-from-input", "--out", out)
    assert_one_line_exit_2(res, "file:a.npz stores no LSH configuration")
    assert not Path(out).exists()


def test_config_from_input_sets_the_defaults_and_options_win(tmp_path: Path) -> None:
    qk, v = arrays(B=1, L=128)
    path = tmp_path / "c.npz"
    stored = {"n_hashes": 3, "n_buckets": [4, 2], "chunk_len": 16, "chunks_before": 2,
              "chunks_after": 0, "causal": True}  # fmt: skip
    save_input_file(path, qk, v, stored)
    spec = build_spec("paper", input=f"file:{path}", config_from_input=True, backend="dense")
    assert (spec.n_hashes, spec.n_buckets, spec.chunk_len) == ((3,), ((4, 2),), (16,))
    assert (spec.chunks_before, spec.chunks_after, spec.causal) == ((2,), (0,), (True,))
    spec = build_spec("quick", input=f"file:{path}", config_from_input=True, n_hashes=[1, 2])
    assert spec.n_hashes == (1, 2) and spec.chunk_len == (16,)
    toml = tmp_path / "s.toml"
    toml.write_text(f'input = "file:{path}"\nconfig-from-input = true\nchunk_len = [32]\n')
    spec = build_spec(None, toml)
    assert spec.chunk_len == (32,) and spec.n_hashes == (3,) and spec.config_from_input


# ------------------------------------------------------------------ capture -> sweep


def test_captured_model_sweeps_with_its_configuration(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch not installed (pip install -e '.[peers]')")
    pytest.importorskip("transformers", reason="transformers not installed (peers extra)")
    from test_capture import TEXT, save_model

    model = save_model(tmp_path / "model")
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    npz = tmp_path / "cap.npz"
    res = CliRunner().invoke(
        main, ["capture", str(tmp_path / "model"), "--text", str(text), "--out", str(npz),
               "--seqlen", "64"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    res = run_cli(
        "--input", f"file:{npz}", "--config-from-input", "--backend", "numpy,dense",
        "--out", str(out), "--repeats", "5", "--quiet",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    frame = lshbench.load_results(out)
    assert (frame["status"] == "ok").all(), frame["message"].tolist()
    cfg = model.config
    lsh = frame[frame["backend"] == "numpy"].iloc[0]
    assert lsh["n_hashes"] == cfg.num_hashes and lsh["n_buckets"] == cfg.num_buckets
    assert lsh["chunk_len"] == cfg.lsh_attn_chunk_length
    assert lsh["chunks_before"] == cfg.lsh_num_chunks_before
    assert lsh["chunks_after"] == cfg.lsh_num_chunks_after
    assert bool(lsh["causal"]) == bool(cfg.is_decoder)
    assert set(frame["input"]) == {"file:cap.npz"} and set(frame["seqlen"]) == {64}
    assert set(frame["batch"]) == {cfg.num_attention_heads}
