"""Optional peer backends (``pip install 'lshbench[peers]'``): ``hf`` and ``torch-sdpa``.

Skipped, with the reason, where torch or transformers are not installed (CI installs only
the test extra). ``hf`` must pass the golden cases: that proves the harness feeds Hugging
Face the same qk, values and rotations as its own backends.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from golden import golden_cases

import lshbench
from lshbench.core.attention import normalize_keys

INFOS = lshbench.list_backends()


def needs(name: str) -> pytest.MarkDecorator:
    info = INFOS[name]
    return pytest.mark.skipif(
        not info.available, reason=f"backend {name!r} not available here: {info.reason}"
    )


CASES = golden_cases()
IDS = [f"{c.index}-{c.note.replace(' ', '_').replace(',', '')}" for c in CASES]


def test_backends_command_lists_all_five() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "backends"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    names = [line.split()[0] for line in res.stdout.strip().splitlines()]
    assert {"numpy", "dense", "numba", "hf", "torch-sdpa"} <= set(names)
    for line in res.stdout.splitlines():
        assert ("unavailable" in line) == (not INFOS[line.split()[0]].available)


def test_unavailable_peer_raises_with_reason() -> None:
    spec = lshbench.backend_spec("torch-sdpa")
    lshbench.register_backend("test-missing", spec.target, ("torch", "no_such_module_lshbench"))
    try:
        assert not lshbench.list_backends()["test-missing"].available
        with pytest.raises(lshbench.BackendUnavailable, match="no_such_module_lshbench"):
            lshbench.get_backend("test-missing")
    finally:
        lshbench.unregister_backend("test-missing")


# ----------------------------------------------------------------------------- hf


@needs("hf")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hf_golden_batched(case) -> None:
    """Each golden case as a batch of two (values of the second * 2, exact), both dtypes."""
    hf = lshbench.get_backend("hf")
    qk = np.stack([case.qk, case.qk])
    v = np.stack([case.v, 2 * case.v])
    want = np.stack([case.out, 2 * case.out])
    out64 = hf.attend(qk.astype(np.float64), v.astype(np.float64), case.config, case.rotations)
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out64, want, rtol=0, atol=1e-9)
    out32 = hf.attend(qk, v, case.config, case.rotations)
    assert out32.dtype == np.float32
    rows = np.setdiff1d(np.arange(case.qk.shape[0]), case.self_only_rows)
    np.testing.assert_allclose(out32[:, rows], want[:, rows], rtol=0, atol=3e-4)


@needs("hf")
@pytest.mark.parametrize("dv", [3, 8, 13])
def test_hf_values_wider_or_narrower_than_d(dv) -> None:
    """HF needs d_v == d; other widths go through in blocks of d columns, exactly."""
    cfg = lshbench.LSHConfig(n_hashes=3, n_buckets=(4, 2), chunk_len=8, causal=True)
    rng = np.random.default_rng(dv)
    qk = np.round(rng.standard_normal((40, 5)) * 16) / 16  # (L, d=5), exact products
    v = rng.standard_normal((40, dv))
    rot = np.round(lshbench.random_rotations(5, cfg, seed=dv, dtype=np.float64) * 16) / 16
    want = lshbench.get_backend("numpy").attend(qk, v, cfg, rot)
    got = lshbench.get_backend("hf").attend(qk, v, cfg, rot)
    assert got.shape == (40, dv)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@needs("hf")
def test_hf_rejects_bad_rotations() -> None:
    cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=8, chunk_len=4)
    qk = np.zeros((16, 4), np.float32)
    with pytest.raises(lshbench.ConfigError, match=r"rotations\.shape"):
        lshbench.get_backend("hf").attend(qk, qk, cfg, np.zeros((4, 2, 3), np.float32))


# --------------------------------------------------------------------- torch-sdpa


@needs("torch-sdpa")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("batch", [None, 3])
def test_torch_sdpa_shapes_dtype_and_values(dtype, causal, batch) -> None:
    """Same shapes and dtype as dense; values are dense attention WITHOUT the self mask."""
    sdpa = lshbench.get_backend("torch-sdpa")
    assert sdpa.exact_semantics is False and sdpa.uses_hashing is False
    rng = np.random.default_rng(1)
    lead = () if batch is None else (batch,)
    qk = rng.standard_normal((*lead, 70, 8)).astype(dtype)
    v = rng.standard_normal((*lead, 70, 6)).astype(dtype)
    cfg = lshbench.LSHConfig(causal=causal)
    out = sdpa.attend(qk, v, cfg)
    dense = lshbench.get_backend("dense").attend(qk, v, cfg)
    assert out.shape == dense.shape and out.dtype == dense.dtype == dtype
    # reference: softmax(qk . normalized keys) @ v, causal or not, self included
    scores = qk.astype(np.float64) @ np.swapaxes(normalize_keys(qk.astype(np.float64)), -1, -2)
    if causal:
        scores = np.where(np.triu(np.ones((70, 70), bool), 1), -np.inf, scores)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    want = (probs / probs.sum(-1, keepdims=True)) @ v.astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.abs(out - dense).max() > 1e-3  # the self mask differs: it is not "dense"


def test_backend_facts_come_from_the_registry_without_importing_backends() -> None:
    """Facts are declared in the registry entry and read without importing the backend."""
    import subprocess
    import sys

    code = (
        "import sys, lshbench as l; s = {n: l.backend_spec(n) for n in l.list_backends()};"
        "print(s['torch-sdpa'].exact, s['torch-sdpa'].uses_hashing, s['hf'].exact,"
        " s['hf'].tracemalloc_sees, s['numpy'].memory_model, s['dense'].uses_hashing,"
        " sorted(m for m in sys.modules if m.startswith('lshbench.backends.')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.split(" [")[0] == "False False True False numpy False"
    assert "lshbench.backends.numpy_lsh" not in res.stdout
    assert lshbench.get_backend("numpy").exact_semantics is True
