"""The ``torch-lsh`` backend: the semantics of docs/design.md sections 2 and 2b in torch, its
tensor interface ``attend_torch`` on a device, and its gradients (section 9).

The golden cases and the property tests of tests/test_golden.py and tests/test_properties.py
run it too; here: every variant against the numpy reference, agreement with numba, autograd.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import quantize
from strategies import lsh_problems

import lshbench
from lshbench.core.config import LSHConfig

torch = pytest.importorskip("torch")
from lshbench.backends.torch_lsh import attend_torch  # noqa: E402

SETTINGS = settings(max_examples=30, deadline=None)
METHODS = ["lsh", "random", "local"]
WEIGHTINGS = ["multiplicity", "count-once"]


def trimmed(problem, method: str, weighting: str):
    """(config, qk (B, L, d), v (B, L, dv), rotations) of a problem as a variant, L cut so
    that ``local`` chunks divide it."""
    cfg, qk, v, R = problem
    cfg = dataclasses.replace(cfg, method=method, weighting=weighting)
    qk3, v3 = (qk, v) if qk.ndim == 3 else (qk[None], v[None])
    L = qk3.shape[1]
    if method == "local" and not cfg.is_short(L):
        L = (L // cfg.sort_chunk_len) * cfg.sort_chunk_len
    return cfg, qk3[:, :L], v3[:, :L], R


@SETTINGS
@given(
    problem=lsh_problems(),
    method=st.sampled_from(METHODS),
    weighting=st.sampled_from(WEIGHTINGS),
)
def test_every_variant_equals_numpy(problem, method, weighting) -> None:
    """float64 to 1e-10 on the chunked path and through ``attend`` (short path included);
    float32 to 1e-5 against numpy's float32 on quantized inputs (identical buckets)."""
    cfg, qk, v, R = trimmed(problem, method, weighting)
    be, ref = lshbench.get_backend("torch-lsh"), lshbench.get_backend("numpy")
    want = ref.attend(qk, v, cfg, R)
    np.testing.assert_allclose(be.attend(qk, v, cfg, R), want, rtol=0, atol=1e-10)
    if not cfg.is_short(qk.shape[1]):
        np.testing.assert_allclose(be._attend(qk, v, cfg, R), want, rtol=0, atol=1e-10)
    q32, v32, r32 = (quantize(x).astype(np.float32) for x in (qk, v, R))
    out32 = be.attend(q32, v32, cfg, r32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref.attend(q32, v32, cfg, r32), rtol=0, atol=1e-5)


@pytest.mark.skipif(
    not lshbench.list_backends()["numba"].available, reason="numba backend not available"
)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("causal", [False, True])
def test_agrees_with_numba_float32(method, weighting, causal) -> None:
    rng = np.random.default_rng(7)
    cfg = LSHConfig(4, (4, 8), 16, causal, 1, 1, method=method, weighting=weighting)
    qk = quantize(rng.standard_normal((2, 256, 16))).astype(np.float32)
    v = rng.standard_normal((2, 256, 12)).astype(np.float32)
    R = quantize(lshbench.random_rotations(16, cfg, seed=3))
    got = lshbench.get_backend("torch-lsh").attend(qk, v, cfg, R)
    want = lshbench.get_backend("numba").attend(qk, v, cfg, R)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [None, 2])
def test_attend_torch_is_attend_on_tensors(dtype, batch) -> None:
    """Same values as the numpy interface; shape, dtype and device of the input kept;
    rotations as numpy or torch."""
    rng = np.random.default_rng(1)
    lead = () if batch is None else (batch,)
    cfg = LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16, causal=True)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    qk = rng.standard_normal((*lead, 128, 8)).astype(np_dtype)
    v = rng.standard_normal((*lead, 128, 5)).astype(np_dtype)
    R = lshbench.random_rotations(8, cfg, seed=2)
    want = lshbench.get_backend("torch-lsh").attend(qk, v, cfg, R)
    for rot in (R, torch.from_numpy(R)):
        out = attend_torch(torch.from_numpy(qk), torch.from_numpy(v), cfg, rot)
        assert out.dtype == dtype and out.device.type == "cpu" and tuple(out.shape) == want.shape
        np.testing.assert_array_equal(out.numpy(), want)


def test_bad_tensor_inputs_name_field_value_rule() -> None:
    cfg = LSHConfig(n_hashes=1, n_buckets=4, chunk_len=8)
    R = lshbench.random_rotations(4, cfg)
    qk = torch.zeros((32, 4))
    cases = [
        ((qk.numpy(), qk, cfg, R), "qk="),
        ((qk, qk.double(), cfg, R), "v.dtype="),
        ((qk, torch.zeros((31, 4)), cfg, R), "v.shape="),
        ((qk, torch.zeros((32, 4), device="meta"), cfg, R), "v.device="),
        ((qk.int(), qk.int(), cfg, R), "qk.dtype="),
        ((qk[:30], qk[:30], cfg, R), "chunk_len="),
        ((qk, qk, cfg, R[:2]), "rotations.shape="),
        ((qk, torch.full((32, 4), float("nan")), cfg, R), "v="),
    ]
    for args, field in cases:
        with pytest.raises(lshbench.ConfigError) as info:
            attend_torch(*args)
        msg = str(info.value)
        assert msg.startswith(field) and "\n" not in msg, msg


def test_bfloat16_on_the_cpu_is_close_to_float32() -> None:
    """Half precision runs (meant for accelerators); ``local`` buckets do not depend on the
    rounding, so the outputs differ by rounding alone."""
    rng = np.random.default_rng(5)
    cfg = LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16, method="local")
    qk = torch.from_numpy(rng.standard_normal((1, 128, 8)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((1, 128, 4)).astype(np.float32))
    R = lshbench.random_rotations(8, cfg)
    ref = attend_torch(qk, v, cfg, R)
    for dtype in (torch.bfloat16, torch.float16):
        out = attend_torch(qk.to(dtype), v.to(dtype), cfg, R)
        assert out.dtype == dtype
        assert float((out.float() - ref).abs().max()) < 0.1


@pytest.mark.cuda
def test_cuda_equals_cpu() -> None:
    rng = np.random.default_rng(6)
    cfg = LSHConfig(n_hashes=4, n_buckets=16, chunk_len=32, causal=True)
    qk = torch.from_numpy(quantize(rng.standard_normal((2, 512, 16))))
    v = torch.from_numpy(rng.standard_normal((2, 512, 16)))
    R = quantize(lshbench.random_rotations(16, cfg, dtype=np.float64))
    cpu = attend_torch(qk, v, cfg, R)
    gpu = attend_torch(qk.cuda(), v.cuda(), cfg, R)
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=0, atol=1e-10)


# --- gradients --------------------------------------------------------------------------

GRAD_CONFIGS = [
    LSHConfig(n_hashes=2, n_buckets=4, chunk_len=4),
    LSHConfig(n_hashes=3, n_buckets=(2, 4), chunk_len=4, causal=True, chunks_after=1),
    LSHConfig(n_hashes=2, n_buckets=4, chunk_len=4, weighting="count-once"),
    LSHConfig(n_hashes=2, n_buckets=4, chunk_len=4, causal=True, method="random"),
    LSHConfig(n_hashes=2, n_buckets=4, chunk_len=4, method="local"),
    LSHConfig(n_hashes=2, n_buckets=4, chunk_len=32),  # L <= chunk_len: the exact path
]


def grad_inputs(cfg: LSHConfig, seed: int = 0, L: int = 16):
    rng = np.random.default_rng(seed)
    qk = torch.tensor(rng.standard_normal((2, L, 3)), requires_grad=True)
    v = torch.tensor(rng.standard_normal((2, L, 2)), requires_grad=True)
    R = lshbench.random_rotations(3, cfg, seed=seed, dtype=np.float64)
    return qk, v, R


@pytest.mark.parametrize("cfg", GRAD_CONFIGS, ids=lambda c: f"{c.method}-{c.weighting}")
def test_gradcheck_qk_and_v(cfg) -> None:
    """Finite differences agree with autograd (the buckets stay put under the small steps:
    the check would fail where a step moved a position to another bucket)."""
    qk, v, R = grad_inputs(cfg)
    assert torch.autograd.gradcheck(lambda a, b: attend_torch(a, b, cfg, R), (qk, v))


def effective_attention(qk, v, cfg: LSHConfig, R):
    """out_i = sum_j C_ij exp(s_ij) v_j / sum_j C_ij exp(s_ij), written out from the window
    positions (C -> 1 where C > 0 for count-once), in torch: qk (B, L, d), v (B, L, dv)."""
    from helpers import full_multiplicities

    C = full_multiplicities(qk.detach().numpy(), R, cfg)  # (B, L, L)
    if cfg.weighting == "count-once":
        C = (C > 0).astype(np.int64)
    L, d = qk.shape[1], qk.shape[2]
    keys = qk / torch.sqrt((qk**2).mean(-1, keepdim=True) + 1e-6) / d**0.5  # (B, L, d)
    s = qk @ keys.transpose(1, 2)  # (B, L, d) @ (B, d, L) -> (B, L, L)
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    if cfg.causal:
        s = torch.where(j > i, torch.full_like(s, -1e9), s)
    s = torch.where(j == i, torch.full_like(s, -1e5), s)
    with np.errstate(divide="ignore"):
        logc = torch.from_numpy(np.log(C.astype(np.float64)))  # -inf where j is in no window
    return torch.softmax(s + logc, dim=-1) @ v  # (B, L, L) @ (B, L, dv) -> (B, L, dv)


@pytest.mark.parametrize("cfg", GRAD_CONFIGS, ids=lambda c: f"{c.method}-{c.weighting}")
@pytest.mark.parametrize("L", [16, 64])
def test_gradient_is_that_of_the_effective_attention(cfg, L) -> None:
    if cfg.method == "local" and L % cfg.sort_chunk_len:
        pytest.skip("local chunks must divide L")
    qk, v, R = grad_inputs(cfg, seed=L, L=L)
    g = torch.from_numpy(np.random.default_rng(9).standard_normal((2, L, 2)))
    out = attend_torch(qk, v, cfg, R)
    want = effective_attention(qk, v, cfg, R)
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=0, atol=1e-10)
    got_qk, got_v = torch.autograd.grad((out * g).sum(), (qk, v))
    want_qk, want_v = torch.autograd.grad((want * g).sum(), (qk, v))
    np.testing.assert_allclose(got_qk.numpy(), want_qk.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(got_v.numpy(), want_v.numpy(), rtol=0, atol=1e-8)
    assert float(got_qk.abs().max()) > 1e-3  # the check compares something
