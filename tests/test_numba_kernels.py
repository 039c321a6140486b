"""The ``numba`` backend's chunk-product kernels: every candidate gives the golden
and the reference results, the per-machine choice is forced by the environment variable,
remembered in its JSON file, and visible through ``kernel`` / ``describe()``; the
wait-policy check warns once.

The whole golden and variant suites also run under each candidate with
``LSHBENCH_NUMBA_KERNEL=blas`` / ``tiled`` (docs/backends.md); here the golden cases and a
few variant shapes run in-process against every candidate.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from golden import golden_cases
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import quantize

import lshbench
from lshbench.core.config import LSHConfig

pytestmark = pytest.mark.skipif(
    not lshbench.list_backends()["numba"].available,
    reason=f"numba backend not available: {lshbench.list_backends()['numba'].reason}",
)

CASES = golden_cases()
IDS = [f"{c.index}-{c.note.replace(' ', '_').replace(',', '')}" for c in CASES]


def candidates() -> tuple[str, ...]:
    from lshbench.backends.numba_lsh import KERNELS

    return KERNELS


@pytest.fixture(scope="module", params=["blas", "tiled", "mixed"])
def forced(request):
    """A backend forced to one candidate, compiled for both dtypes."""
    from lshbench.backends.numba_lsh import NumbaBackend

    backend = NumbaBackend(kernel=request.param)
    backend.compile(np.float32)
    backend.compile(np.float64)
    assert backend.kernel == request.param
    return backend


def test_the_candidates_are_blas_tiled_and_mixed() -> None:
    assert candidates() == ("blas", "tiled", "mixed")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_golden_outputs_under_each_candidate(forced, case) -> None:
    """Batch of two (the second with values * -2), float64 to 1e-9, float32 to 2e-4 except
    the self-only rows (as tests/test_golden.py)."""
    qk = np.stack([case.qk, case.qk])  # (2, L, d)
    v = np.stack([case.v, -2 * case.v])  # (2, L, dv)
    want = np.stack([case.out, -2 * case.out])
    out64 = forced.attend(qk.astype(np.float64), v.astype(np.float64), case.config,
                          case.rotations)  # fmt: skip
    np.testing.assert_allclose(out64, want, rtol=0, atol=1e-9)
    out32 = forced.attend(qk, v, case.config, case.rotations)
    rows = np.setdiff1d(np.arange(case.qk.shape[0]), case.self_only_rows)
    np.testing.assert_allclose(out32[:, rows], want[:, rows], rtol=0, atol=2e-4)


@pytest.mark.parametrize(
    ("method", "weighting", "L", "H", "m", "nb", "before", "after", "causal"),
    [
        ("lsh", "multiplicity", 1000, 2, 40, 64, 1, 0, False),  # chunks straddle rounds
        ("lsh", "count-once", 1000, 2, 40, (8, 6), 2, 1, True),
        ("random", "multiplicity", 777, 3, 37, 16, 0, 1, True),  # odd sizes: tile edges
        ("local", "count-once", 768, 4, 64, 32, 1, 1, False),  # blocks of 128 queries
        ("lsh", "multiplicity", 1024, 2, 64, 32, 1, 0, True),  # the bars' chunk and window
    ],
)
def test_variants_agree_with_numpy_under_each_candidate(
    forced, method, weighting, L, H, m, nb, before, after, causal
) -> None:
    cfg = LSHConfig(n_hashes=H, n_buckets=nb, chunk_len=m, causal=causal, chunks_before=before,
                    chunks_after=after, method=method, weighting=weighting)  # fmt: skip
    rng = np.random.default_rng(L * H + m)
    qk = quantize(rng.standard_normal((2, L, 24)))
    v = rng.standard_normal((2, L, 20))
    rot = quantize(lshbench.random_rotations(24, cfg, seed=L, dtype=np.float64))
    ref = lshbench.get_backend("numpy").attend(qk, v, cfg, rot)
    np.testing.assert_allclose(forced.attend(qk, v, cfg, rot), ref, rtol=0, atol=1e-9)
    out32 = forced.attend(qk.astype(np.float32), v.astype(np.float32), cfg, rot)
    np.testing.assert_allclose(out32, ref, rtol=0, atol=1e-4)


def test_the_candidates_agree_with_each_other_to_rounding() -> None:
    """Gaussian float32 input at the bars' chunk (64) and window (128), d = 64."""
    from lshbench.backends.numba_lsh import NumbaBackend

    cfg = LSHConfig(n_hashes=4, n_buckets=32, chunk_len=64)
    rng = np.random.default_rng(3)
    qk, v = rng.standard_normal((2, 2048, 64), dtype=np.float32)
    rot = lshbench.random_rotations(64, cfg, seed=3)
    outs = [NumbaBackend(kernel=k).attend(qk, v, cfg, rot) for k in candidates()]
    ref = lshbench.get_backend("numpy").attend(qk.astype(np.float64), v.astype(np.float64),
                                               cfg, rot)  # fmt: skip
    for out in outs:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 9), k=st.integers(1, 70), e=st.integers(1, 11), f64=st.booleans())
def test_tiled_micro_kernel_is_a_times_b_transposed(n, k, e, f64) -> None:
    """Every edge of the 2 x 4 tiling (odd rows, 0-3 extra columns, any k)."""
    from lshbench.backends import _numba_kernels as kernels

    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(n * 1000 + k * 10 + e)
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((e, k)).astype(dtype)
    out = np.full((n, e), np.nan, dtype)
    kernels._matmul_abt(a, b, out)
    want = a.astype(np.float64) @ b.T.astype(np.float64)  # (n, k) @ (k, e) -> (n, e)
    tol = 1e-12 if f64 else 1e-4
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


# ------------------------------------------------------------------ the choice


@pytest.fixture
def choice_file(tmp_path, monkeypatch):
    """The choice JSON in a temporary directory; no forcing variable."""
    import lshbench.backends.numba_lsh as numba_lsh

    path = tmp_path / "choice.json"
    monkeypatch.setattr(numba_lsh, "kernel_cache_path", lambda: path)
    monkeypatch.delenv("LSHBENCH_NUMBA_KERNEL", raising=False)
    return path


def test_auto_measures_once_then_reuses_the_cached_choice(choice_file) -> None:
    from lshbench.backends.numba_lsh import NumbaBackend, machine_key

    first = NumbaBackend()
    assert first.kernel in candidates()
    facts = first.describe()
    assert facts["kernel_source"] == "measured"
    assert set(facts["kernel_times_s"]) == set(candidates())
    assert first.kernel == min(facts["kernel_times_s"], key=facts["kernel_times_s"].get)
    stored = json.loads(choice_file.read_text())
    assert stored[machine_key()]["kernel"] == first.kernel
    second = NumbaBackend()
    assert second.kernel == first.kernel
    assert second.describe()["kernel_source"] == "cache"


def test_a_cached_choice_is_used_without_measuring(choice_file, monkeypatch) -> None:
    from lshbench.backends.numba_lsh import NumbaBackend, machine_key

    for kernel in candidates():
        choice_file.write_text(json.dumps({machine_key(): {"kernel": kernel}}))
        backend = NumbaBackend()
        monkeypatch.setattr(backend, "time_kernels", lambda: pytest.fail("measured"))
        assert backend.kernel == kernel


@pytest.mark.parametrize("kernel", ["blas", "tiled", "mixed", "TILED "])
def test_the_environment_variable_forces_a_candidate(choice_file, monkeypatch, kernel) -> None:
    from lshbench.backends.numba_lsh import NumbaBackend

    monkeypatch.setenv("LSHBENCH_NUMBA_KERNEL", kernel)
    backend = NumbaBackend()
    assert backend.kernel == kernel.strip().lower()
    assert backend.describe()["kernel_source"] == "env"
    assert not choice_file.exists()


def test_a_bad_kernel_name_is_one_config_error(choice_file, monkeypatch) -> None:
    from lshbench.backends.numba_lsh import NumbaBackend

    monkeypatch.setenv("LSHBENCH_NUMBA_KERNEL", "fast")
    with pytest.raises(lshbench.ConfigError, match="LSHBENCH_NUMBA_KERNEL"):
        NumbaBackend().kernel  # noqa: B018
    with pytest.raises(lshbench.ConfigError, match="kernel"):
        NumbaBackend(kernel="fast")


def test_describe_names_the_kernel_and_the_machine() -> None:
    from lshbench.backends.numba_lsh import NumbaBackend

    facts = NumbaBackend(kernel="tiled").describe()
    assert facts["kernel"] == "tiled" and facts["kernel_source"] == "argument"
    assert facts["cpu_model"] and facts["numba_threads"] >= 1


# ----------------------------------------------------------------- wait policy


def test_spinning_pools_warn_once_with_the_fix(monkeypatch) -> None:
    import threadpoolctl

    from lshbench.backends import _numba_choice

    monkeypatch.setattr(
        threadpoolctl, "threadpool_info", lambda: [{"user_api": "blas", "num_threads": 4}]
    )
    monkeypatch.setattr(_numba_choice, "_WAIT_WARNED", False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.warns(RuntimeWarning, match="OMP_WAIT_POLICY=PASSIVE") as got:
        assert _numba_choice.warn_if_spinning_pools()
    assert len(got) == 1 and "\n" not in str(got[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _numba_choice.warn_if_spinning_pools()  # once per process


@pytest.mark.parametrize(("policy", "threads"), [("PASSIVE", 4), ("passive", 2), (None, 1)])
def test_no_warning_when_pools_cannot_spin(monkeypatch, policy, threads) -> None:
    import threadpoolctl

    from lshbench.backends import _numba_choice

    monkeypatch.setattr(
        threadpoolctl, "threadpool_info", lambda: [{"user_api": "blas", "num_threads": threads}]
    )
    monkeypatch.setattr(_numba_choice, "_WAIT_WARNED", False)
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _numba_choice.warn_if_spinning_pools()


def test_a_sweep_records_the_kernel_and_resumes_only_rows_of_the_forced_one(
    tmp_path, monkeypatch
) -> None:
    from helpers import SMALL_GRID

    out = tmp_path / "run"
    grid = {**SMALL_GRID, "seqlen": [256], "chunk_len": [64], "n_hashes": [2]}

    def sweep(kernel: str) -> pd.DataFrame:
        monkeypatch.setenv("LSHBENCH_NUMBA_KERNEL", kernel)  # the spawned workers inherit it
        df = lshbench.run_sweep(out, backend="numba,dense", **grid)
        assert (df["status"] == "ok").all(), df[["status", "message"]]
        return df

    first = sweep("tiled")
    by_backend = dict(zip(first["backend"], first["kernel"], strict=True))
    assert by_backend["numba"] == "tiled" and pd.isna(by_backend["dense"])
    meta = json.loads((out / "metadata.json").read_text())
    facts = meta["workers"]["1"]["backends"]["numba"]
    assert facts["kernel"] == "tiled" and facts["kernel_source"] == "env"
    assert meta["workers"]["1"]["backends"]["dense"] == {}

    again = sweep("tiled")  # the same kernel: resumed, nothing measured again
    assert list(again["run_id"]) == list(first["run_id"])
    other = sweep("MIXED")  # another forced kernel: numba measured again, dense reused
    runs = dict(zip(other["backend"], other["run_id"], strict=True))
    kernels = dict(zip(other["backend"], other["kernel"], strict=True))
    assert kernels["numba"] == "mixed" and runs["numba"] != first["run_id"].iloc[0]
    assert runs["dense"] == first["run_id"].iloc[0]
    assert set(lshbench.load_results(out)["kernel"].dropna()) == {"mixed"}
