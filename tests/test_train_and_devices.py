"""The training step and the device axis (docs/design.md section 9): exact attention's
gradients, the pass/device/dtype axes of the sweep, train rows with gradient errors, and the
CUDA rows skipped with the reason where no GPU exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import backend_params

import lshbench
from lshbench.core.dense import dense_attention, dense_attention_grads
from lshbench.results.cells import Task, task_id
from lshbench.results.columns import TRACEMALLOC_BLIND
from lshbench.sweep.plan import not_planned, plan_tasks
from lshbench.sweep.spec import build_spec

TORCH_PEERS = backend_params("torch-lsh", "hf", "torch-sdpa")


def _no_cuda() -> bool:
    from lshbench.measurement.devices import cuda_unavailable_reason

    return cuda_unavailable_reason() is not None


# --- exact attention's gradients ----------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_dense_gradients_equal_autograd(causal) -> None:
    torch = pytest.importorskip("torch")
    from lshbench.backends.torch_lsh import dense_attention_torch

    rng = np.random.default_rng(3)
    qk, v, g = (rng.standard_normal((2, 37, k)) for k in (5, 3, 3))
    a = torch.tensor(qk, requires_grad=True)
    b = torch.tensor(v, requires_grad=True)
    out = dense_attention_torch(a, b, causal)
    np.testing.assert_allclose(out.detach().numpy(), dense_attention(qk, v, causal), atol=1e-12)
    want_qk, want_v = torch.autograd.grad((out * torch.tensor(g)).sum(), (a, b))
    got_qk, got_v = dense_attention_grads(qk, v, g, causal, block_rows=6)  # blocks straddle
    np.testing.assert_allclose(got_qk, want_qk.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_v, want_v.numpy(), rtol=0, atol=1e-12)


def test_dense_gradient_of_v_is_the_attention_transposed() -> None:
    """d sum(out * g) / d v = P^T g: with g = e_i (one query, one column) it is row i of P."""
    from lshbench.core.dense import dense_probability_blocks

    rng = np.random.default_rng(4)
    qk, v = rng.standard_normal((1, 12, 4)), rng.standard_normal((1, 12, 1))
    g = np.zeros((1, 12, 1))
    g[0, 5, 0] = 1.0
    _, d_v = dense_attention_grads(qk, v, g, causal=True)
    probs = next(dense_probability_blocks(qk, True))[2]  # (1, 12, 12)
    np.testing.assert_allclose(d_v[0, :, 0], probs[0, 5], rtol=0, atol=1e-15)
    assert d_v[0, 6:, 0].max() == 0.0  # causal: no key after query 5


# --- the torch peers agree on gradients ---------------------------------------------------


def test_hf_and_torch_lsh_have_the_same_gradients() -> None:
    """Hugging Face's layer and ours are two implementations of the same function of qk and
    v (buckets held fixed): their gradients agree in float64."""
    torch = pytest.importorskip("torch")
    infos = lshbench.list_backends()
    if not (infos["hf"].available and infos["torch-lsh"].available):
        pytest.skip("hf or torch-lsh not available here")
    rng = np.random.default_rng(5)
    cfg = lshbench.LSHConfig(n_hashes=3, n_buckets=(2, 4), chunk_len=8, causal=True)
    R = lshbench.random_rotations(6, cfg, seed=1, dtype=np.float64)
    qk, v = rng.standard_normal((2, 64, 6)), rng.standard_normal((2, 64, 6))
    g = torch.tensor(rng.standard_normal((2, 64, 6)))
    grads = []
    for name in ("hf", "torch-lsh"):
        a = torch.tensor(qk, requires_grad=True)
        b = torch.tensor(v, requires_grad=True)
        out = lshbench.get_backend(name).forward_torch(a, b, cfg, R)
        grads.append(torch.autograd.grad((out * g).sum(), (a, b)))
    for x, y in zip(*grads, strict=True):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=0, atol=1e-9)


def test_forward_torch_of_a_backend_without_backward_says_so() -> None:
    with pytest.raises(NotImplementedError, match="numpy"):
        lshbench.get_backend("numpy").forward_torch(None, None, lshbench.LSHConfig(), None)
    assert not lshbench.backend_spec("numba").backward
    assert all(lshbench.backend_spec(n).backward for n in ("torch-lsh", "hf", "torch-sdpa"))


# --- the sweep's axes ---------------------------------------------------------------------


def test_pass_and_device_axes_default_to_forward_on_the_cpu() -> None:
    spec = build_spec("quick", seqlen="128", backend="numpy")
    assert spec.passes == ("forward",) and spec.device == ("cpu",)
    assert spec.as_dict()["pass"] == ["forward"] and spec.as_dict()["device"] == ["cpu"]
    tasks, _ = plan_tasks(spec)
    assert {(t.pass_, t.device) for t in tasks} == {("forward", "cpu")}
    assert {(t.as_dict()["pass"], t.as_dict()["device"]) for t in tasks} == {("forward", "cpu")}
    # rows measured before the axes existed keep their ids
    old = {k: v for k, v in tasks[0].as_dict().items() if k not in ("pass", "device")}
    assert task_id(old) == tasks[0].id
    assert Task.from_dict(old) == tasks[0]
    assert Task.from_dict({**old, "pass": None, "device": None}) == tasks[0]
    train = tasks[0].replace(pass_="train")
    assert train.id != tasks[0].id and task_id(train.as_dict()) == train.id
    assert Task.from_dict(train.as_dict()) == train and train.cell_key != tasks[0].cell_key


def test_rows_before_version_3_read_as_the_forward_pass_on_the_cpu() -> None:
    from lshbench.results.upgrade import SCHEMA_VERSION, upgrade_row

    assert SCHEMA_VERSION >= 3
    old = {"backend": "numpy", "n_hashes": 2, "qk": "shared", "rel_err": 0.1}
    for version in (0, 1, 2):
        row = upgrade_row(old, version)
        assert row["pass"] == "forward" and row["device"] == "cpu", version
        assert row["grad_err_qk"] is None and row["grad_err_v"] is None
    train = {**old, "pass": "train", "device": "cuda", "grad_err_qk": 0.01}
    assert upgrade_row(train, 0)["pass"] == "train"  # an export of a newer table stays
    assert upgrade_row(train, 3) == {
        **train,
        "method": "lsh",
        "weighting": "multiplicity",
        "rotation_seed": 0,
        "local_share": None,  # added in version 4: empty in a version-3 row
    }


@pytest.mark.parametrize(
    "options,field",
    [
        ({"pass": "backward"}, "pass=backward"),
        ({"device": "tpu"}, "device=tpu"),
        ({"dtype": "bfloat16"}, "dtype=bfloat16"),  # half precision needs --device cuda
        ({"dtype": "float16", "device": "cpu"}, "dtype=float16"),
    ],
)
def test_bad_pass_device_or_dtype_is_one_line(options, field) -> None:
    with pytest.raises(lshbench.ConfigError) as info:
        build_spec("quick", **options)
    msg = str(info.value)
    assert msg.startswith(field) and "\n" not in msg, msg


def test_backends_without_backward_or_cuda_are_not_planned_there() -> None:
    spec = build_spec(
        "quick", seqlen="128", backend="numpy,numba,dense,torch-lsh,hf,torch-sdpa",
        method="lsh", weighting="multiplicity", input="gaussian", n_hashes="2", device="cpu,cuda",
        dtype="float32,bfloat16", **{"pass": "forward,train"},
    )  # fmt: skip
    tasks, invalid = plan_tasks(spec)
    assert not invalid
    by = {(t.backend, t.pass_, t.device, t.dtype) for t in tasks}
    assert ("numpy", "forward", "cpu", "float32") in by
    assert not {b for b in by if b[0] in ("numpy", "numba", "dense") and b[1] == "train"}
    assert not {b for b in by if b[0] in ("numpy", "numba", "dense") and b[2] == "cuda"}
    assert not {b for b in by if b[3] == "bfloat16" and b[2] == "cpu"}
    for name in ("torch-lsh", "hf", "torch-sdpa"):
        assert (name, "train", "cuda", "bfloat16") in by
        assert (name, "train", "cpu", "float32") in by
    notes = not_planned(spec)
    assert "numba has no backward pass: not planned for --pass train" in notes
    assert "dense does not run on CUDA: not planned for --device cuda" in notes
    assert "hf bfloat16 runs on --device cuda only" in notes


@pytest.mark.parametrize("backend", TORCH_PEERS)
def test_train_step_on_the_cpu_returns_gradients(backend) -> None:
    from lshbench.measurement.torch_passes import make_step, train_g

    rng = np.random.default_rng(6)
    cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16)
    qk, v = rng.standard_normal((1, 64, 8)), rng.standard_normal((1, 64, 8))
    R = lshbench.random_rotations(8, cfg, dtype=np.float64)
    g = train_g(v.shape, 0)
    be = lshbench.get_backend(backend)
    step, result = make_step(be, qk, v, cfg, R, device="cpu", dtype="float64", g=g)
    res = result(step())
    again = result(step())  # gradients are fresh each call, never accumulated
    np.testing.assert_array_equal(res.d_qk, again.d_qk)
    np.testing.assert_allclose(res.out, be.attend(qk, v, cfg, R), rtol=0, atol=1e-12)
    assert res.d_qk.shape == qk.shape and res.d_v.shape == v.shape
    fwd, fwd_result = make_step(be, qk, v, cfg, R, device="cpu", dtype="float64", g=None)
    assert fwd_result(fwd()).d_qk is None


@pytest.mark.skipif(
    not lshbench.list_backends()["torch-lsh"].available, reason="torch not installed"
)
def test_sweep_train_rows_and_skipped_cuda_rows(tmp_path: Path) -> None:
    """A train sweep writes time, memory and gradient errors; the torch peers' LSH backends
    give the same gradient errors; cuda rows are skipped with the reason on a machine without
    a GPU; numpy is not planned for train (a note, no row)."""
    out = tmp_path / "r"
    args = [
        sys.executable, "-m", "lshbench", "sweep", "--out", str(out), "--seqlen", "128",
        "--n-hashes", "2", "--chunk-len", "32", "--method", "lsh", "--weighting",
        "multiplicity", "--input", "gaussian", "--d", "16", "--quiet",
        "--backend", "numpy,torch-lsh,hf,torch-sdpa", "--pass", "forward,train",
        "--device", "cpu,cuda",
    ]  # fmt: skip
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "note: numpy has no backward pass: not planned for --pass train" in res.stderr
    frame = lshbench.load_results(out)
    assert set(frame["status"]) <= {"ok", "skipped"}
    train = frame[(frame["pass"] == "train") & (frame["device"] == "cpu")]
    assert set(train["backend"]) == {"torch-lsh", "hf", "torch-sdpa"}
    assert (train["status"] == "ok").all()
    assert train["time_median_s"].gt(0).all() and train["mem_rss_peak_bytes"].notna().all()
    lsh = train.set_index("backend").loc[["torch-lsh", "hf"]]
    assert lsh["grad_err_qk"].notna().all() and lsh["grad_err_v"].notna().all()
    np.testing.assert_allclose(lsh["grad_err_qk"].iloc[0], lsh["grad_err_qk"].iloc[1], atol=1e-6)
    assert train.set_index("backend").loc["torch-sdpa", ["grad_err_qk"]].isna().all()
    forward = frame[(frame["pass"] == "forward") & (frame["device"] == "cpu")]
    assert forward["grad_err_qk"].isna().all() and "numpy" in set(forward["backend"])
    # tracemalloc cannot see torch's allocator: no allocation peak, the resident one instead
    torch_rows = frame[(frame["device"] == "cpu") & (frame["backend"] != "numpy")]
    assert torch_rows["mem_alloc_peak_bytes"].isna().all()
    assert torch_rows["message"].str.contains(TRACEMALLOC_BLIND, regex=False).all()
    assert forward.set_index("backend").loc["numpy", "mem_alloc_peak_bytes"] > 0
    cuda = frame[frame["device"] == "cuda"]
    assert set(cuda["backend"]) == {"torch-lsh", "hf", "torch-sdpa"}
    if _no_cuda():
        assert (cuda["status"] == "skipped").all()
        assert cuda["message"].str.startswith("no CUDA device here").all()
        assert "note: --device cuda rows are skipped: no CUDA device here" in res.stderr
    meta = json.loads((out / "metadata.json").read_text())
    torch_facts = [w.get("torch") for w in meta["workers"].values() if w.get("torch")]
    assert torch_facts and "torch" in torch_facts[0]


def test_gpu_facts_are_empty_without_a_gpu() -> None:
    from types import SimpleNamespace

    from lshbench.measurement.devices import gpu_facts

    fake = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False), __version__="x")
    assert gpu_facts(fake) == {}


def test_a_worker_given_cuda_cells_without_a_gpu_skips_them_with_the_reason() -> None:
    """Where the worker runs matters (a Dask worker may be elsewhere): it checks again (the
    worker is shown no GPU, so this runs on a machine with one too)."""
    spec = build_spec(
        "quick", backend="torch-sdpa", seqlen="64", input="gaussian", device="cuda", d="8"
    )
    tasks, _ = plan_tasks(spec)
    entry = lshbench.backend_spec("torch-sdpa")
    payload = {
        "tasks": [t.as_dict() for t in tasks],
        "repeats": 5,
        "backends": {"torch-sdpa": entry.as_dict()},
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "lshbench.measurement.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    proc.stdin.write(json.dumps(payload) + "\n")
    proc.stdin.flush()  # stdin stays open: a worker whose stdin closes stops at once
    events = []
    while not events or events[-1]["event"] != "done":
        events.append(json.loads(proc.stdout.readline()))
    proc.stdin.close()
    proc.wait(timeout=60)
    rows = [e["row"] for e in events if e["event"] == "row"]
    assert len(rows) == len(tasks) >= 1
    assert all(r["status"] == "skipped" and r["device"] == "cuda" for r in rows)
    assert all(r["message"].startswith("no CUDA device here") for r in rows)
    assert "Traceback" not in proc.stderr.read()


class _FakeCuda:
    """Stands in for ``torch.cuda``: events that read a fake clock, a fake allocator."""

    def __init__(self) -> None:
        self.clock_ms = 0.0
        self.calls: list[str] = []
        self.allocated = 1000
        self.peak = 1000

    def synchronize(self) -> None:
        self.calls.append("sync")

    def reset_peak_memory_stats(self) -> None:
        self.calls.append("reset")
        self.peak = self.allocated

    def memory_allocated(self) -> int:
        return self.allocated

    def max_memory_allocated(self) -> int:
        return self.peak

    def Event(self, enable_timing: bool = False):  # noqa: N802 (torch's name)
        cuda = self

        class Event:
            def record(self) -> None:
                self.at = cuda.clock_ms
                cuda.calls.append("record")

            def elapsed_time(self, other) -> float:
                return other.at - self.at

        return Event()


def test_cuda_timing_and_memory_protocol(monkeypatch) -> None:
    """Without a GPU, the CUDA timer and memory probe run against a stand-in: each sample is
    synchronize, event, the calls, event, synchronize, in seconds per call; memory is the
    peak above the allocation before the call, the peak reset first."""
    from types import SimpleNamespace

    from lshbench.measurement import torch_passes

    cuda = _FakeCuda()
    monkeypatch.setattr(torch_passes, "_torch", lambda: SimpleNamespace(cuda=cuda))

    def call() -> None:
        cuda.clock_ms += 4.0  # each call takes 4 ms of device time
        cuda.calls.append("call")

    samples = torch_passes.time_cuda({"a": call}, repeats=3, number={"a": 5})
    assert samples == {"a": [0.004, 0.004, 0.004]}
    assert cuda.calls[:9] == ["sync", "record", *["call"] * 5, "record", "sync"]

    def allocate() -> None:
        cuda.peak = cuda.allocated + 300

    cuda.calls.clear()
    assert torch_passes.cuda_memory(allocate) == 300
    assert cuda.calls == ["sync", "reset", "sync"]
