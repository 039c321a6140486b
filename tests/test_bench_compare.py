"""``lshbench bench-compare``: detection, the calibration, the invariants, bad input, end to end."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import lshbench
from lshbench.bench_compare import (
    CALIBRATION,
    bench_compare,
    compare_files,
    cpu_name,
    load_bench_json,
)
from lshbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "bench" / "baselines"
BASELINE = BASELINES / "AuthenticAMD-25-17.json"
THREAD_ENV = {
    var: "1"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
}

#: synthetic suite: bench id -> (seconds per call, flops, allocated bytes, error)
SYNTHETIC = {
    "numpy-L1024-H2": (4.5e-3, 71303168, 7_062_590, 0.79),
    "numba-L1024-H2": (1.5e-3, 71303168, 1_200_000, 0.79),
    "dense-L1024-H2": (5.5e-3, 268435456, 5_917_414, 9.5e-7),
}


def synthetic_run(seed: int, passes: int = 3, rounds: int = 8) -> dict:
    """A pytest-benchmark JSON document shaped like the suite's, with 3% timing noise."""
    rng = np.random.default_rng(seed)

    def entry(name: str, seconds: float, extra: dict) -> dict:
        data = (seconds * (1 + 0.03 * rng.standard_normal(rounds))).tolist()
        return {"name": name, "extra_info": extra, "stats": {"data": data}}

    benchmarks = []
    for k in range(passes):
        for bench_id, (seconds, flops, peak, err) in SYNTHETIC.items():
            cal_extra = {"bench_id": CALIBRATION}
            benchmarks.append(entry(f"test_calibration[before-{bench_id}-p{k}]", 3e-3, cal_extra))
            info = {"bench_id": bench_id, "flops": flops, "mem_alloc_peak_bytes": peak}
            info["rel_err"] = err
            benchmarks.append(entry(f"test_backend[{bench_id}-p{k}]", seconds, info))
    return {"machine_info": {}, "benchmarks": benchmarks}


def committed_baseline() -> dict:
    if not BASELINE.exists():
        pytest.skip(f"{BASELINE} not committed yet")
    return json.loads(BASELINE.read_text())


SOURCES = {"synthetic": lambda: synthetic_run(0), "committed": committed_baseline}


def bench_id(entry: dict) -> str:
    return entry.get("extra_info", {}).get("bench_id", entry["name"])


def scaled(doc: dict, factor: Callable[[dict], float]) -> dict:
    """A copy of ``doc`` with every entry's raw samples multiplied by ``factor(entry)``."""
    out = copy.deepcopy(doc)
    for entry in out["benchmarks"]:
        f = factor(entry)
        stats = entry["stats"]
        stats["data"] = [x * f for x in stats["data"]]
        for key in ("min", "max", "mean", "median", "q1", "q3", "stddev", "iqr"):
            if key in stats:
                stats[key] *= f
    return out


def write(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def compare(baseline: Path, current: Path, *args: str):
    return CliRunner().invoke(main, ["bench-compare", str(baseline), str(current), *args])


def backends_of(doc: dict) -> list[str]:
    ids = {bench_id(e) for e in doc["benchmarks"] if CALIBRATION not in e["name"]}
    return sorted({i.split("-")[0] for i in ids})


# ------------------------------------------------------------- detecting a regression


@pytest.mark.parametrize("source", SOURCES)
def test_one_backend_slowed_by_half_fails(tmp_path: Path, source: str) -> None:
    doc = SOURCES[source]()
    base = write(tmp_path, "base.json", doc)
    for backend in backends_of(doc):
        slow = scaled(doc, lambda e, b=backend: 1.5 if bench_id(e).startswith(f"{b}-") else 1.0)
        res = compare(base, write(tmp_path, f"slow-{backend}.json", slow))
        assert res.exit_code == 1, res.output
        listed = res.output.split("FAIL")[1].splitlines()
        flagged = {line.split()[1] for line in listed if line.split()[:1] == ["REGRESSION"]}
        expected = {i for i in {bench_id(e) for e in doc["benchmarks"]} if i.startswith(backend)}
        assert flagged == expected, res.output
        assert "+50.0%" in res.output


@pytest.mark.parametrize("source", SOURCES)
def test_slower_machine_passes(tmp_path: Path, source: str) -> None:
    """Everything, calibration included, 2x slower: a slower machine, not a regression."""
    doc = SOURCES[source]()
    slower = scaled(doc, lambda e: 2.0)
    res = compare(write(tmp_path, "b.json", doc), write(tmp_path, "c.json", slower))
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "REGRESSION" not in res.output


def test_calibration_slowed_alone_fails(tmp_path: Path) -> None:
    """The normalization really divides by the calibration: a 2x faster calibration alone
    makes every benchmark look 2x slower."""
    doc = synthetic_run(0)
    fast_cal = scaled(doc, lambda e: 0.5 if CALIBRATION in e["name"] else 1.0)
    res = compare(write(tmp_path, "b.json", doc), write(tmp_path, "c.json", fast_cal))
    assert res.exit_code == 1
    assert res.output.count("REGRESSION") >= len(SYNTHETIC)


def test_below_threshold_and_noise_pass(tmp_path: Path) -> None:
    """A 10% slowdown (under the 25% threshold) and an independent noisy re-run pass."""
    doc = synthetic_run(0)
    base = write(tmp_path, "b.json", doc)
    cur = write(
        tmp_path, "c.json", scaled(doc, lambda e: 1.1 if bench_id(e).startswith("numpy") else 1.0)
    )
    assert compare(base, cur).exit_code == 0
    assert compare(base, write(tmp_path, "d.json", synthetic_run(1))).exit_code == 0
    # the same 10% is a regression at --threshold 0.05
    res = compare(base, cur, "--threshold", "0.05")
    assert res.exit_code == 1, res.output


def test_rank_test_is_required(tmp_path: Path) -> None:
    """With 2 samples a side the one-sided Mann-Whitney p is at least 1/6: a 1.5x slower
    median alone does not fail."""
    doc = synthetic_run(0, passes=1, rounds=2)
    slow = scaled(doc, lambda e: 1.5 if bench_id(e).startswith("numpy") else 1.0)
    res = compare(write(tmp_path, "b.json", doc), write(tmp_path, "c.json", slow))
    assert res.exit_code == 0, res.output
    assert "+50.0%" in res.output


@settings(max_examples=25, deadline=None)
@given(factor=st.floats(0.05, 20.0), seed=st.integers(0, 2**16))
def test_machine_speed_cancels(factor: float, seed: int) -> None:
    """Any uniformly faster or slower machine: every change is 0, nothing fails."""
    doc = synthetic_run(seed)
    base = load_bench_json_doc(doc)
    cur = load_bench_json_doc(scaled(doc, lambda e: factor))
    rows = compare_files(base, cur)
    assert all(r.status == "ok" for r in rows)
    np.testing.assert_allclose([r.change for r in rows], 0.0, atol=1e-9)


def load_bench_json_doc(doc: dict):
    with tempfile.TemporaryDirectory() as tmp:
        return load_bench_json(write(Path(tmp), "x.json", doc), "x")


def test_outliers_alone_are_not_significant(tmp_path: Path) -> None:
    """Two samples of a benchmark 10x slower move its median by little and fail nothing."""
    doc = synthetic_run(0, passes=1, rounds=15)
    cur = copy.deepcopy(doc)
    for entry in cur["benchmarks"]:
        if bench_id(entry) == "numpy-L1024-H2":
            entry["stats"]["data"][:2] = [x * 10 for x in entry["stats"]["data"][:2]]
    assert compare(write(tmp_path, "b.json", doc), write(tmp_path, "c.json", cur)).exit_code == 0


# ----------------------------------------------------------------- no baseline, bad input


def test_no_baseline_passes(tmp_path: Path) -> None:
    cur = write(tmp_path, "c.json", synthetic_run(0))
    res = compare(tmp_path / "missing.json", cur)
    assert res.exit_code == 0, res.output
    assert "no baseline" in res.output


def test_plain_function_gives_status_and_the_text_the_command_prints(tmp_path: Path) -> None:
    """The command is a thin layer: same verdict and text without click."""
    doc = synthetic_run(0)
    base = write(tmp_path, "b.json", doc)
    slow = write(
        tmp_path, "slow.json", scaled(doc, lambda e: 1.0 if CALIBRATION in e["name"] else 1.5)
    )
    for current, status in ((write(tmp_path, "same.json", synthetic_run(1)), 0), (slow, 1)):
        verdict = bench_compare(base, current)
        res = compare(base, current)
        assert (verdict.status, res.exit_code) == (status, status), res.output
        assert res.output == verdict.text + "\n"
        assert ("PASS" if status == 0 else "FAIL") in verdict.text
    missing = bench_compare(tmp_path / "missing.json", base)
    assert missing.status == 0 and "no baseline" in missing.text


def one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


def test_unreadable_json_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    good = write(tmp_path, "c.json", synthetic_run(0))
    assert "baseline=" in one_line_error(compare(bad, good))
    assert "current=" in one_line_error(compare(good, bad))
    assert "CURRENT" in one_line_error(compare(good, tmp_path / "nope.json"))


def test_missing_calibration_is_one_line_exit_2(tmp_path: Path) -> None:
    doc = synthetic_run(0)
    doc["benchmarks"] = [e for e in doc["benchmarks"] if CALIBRATION not in e["name"]]
    good = write(tmp_path, "b.json", synthetic_run(0))
    assert CALIBRATION in one_line_error(compare(good, write(tmp_path, "c.json", doc)))


def test_missing_raw_samples_is_one_line_exit_2(tmp_path: Path) -> None:
    doc = synthetic_run(0)
    del doc["benchmarks"][1]["stats"]["data"]
    good = write(tmp_path, "b.json", synthetic_run(0))
    assert "stats.data" in one_line_error(compare(good, write(tmp_path, "c.json", doc)))


@pytest.mark.parametrize(
    ("option", "value"),
    [("--threshold", v) for v in ("nan", "inf", "-inf", "0", "-0.5", "NaN")]
    + [("--alpha", v) for v in ("nan", "inf", "-inf", "0", "1", "1.5", "-0.01")],
)
def test_every_bad_option_is_one_line_exit_2(tmp_path: Path, option: str, value: str) -> None:
    """A NaN or infinite option would turn every check into a pass: refused, nothing run."""
    base = write(tmp_path, "b.json", synthetic_run(0))
    slower = write(tmp_path, "c.json", scaled(synthetic_run(1), slowed("numpy", 10.0)))
    line = one_line_error(compare(base, slower, option, value))
    assert option.lstrip("-") in line and "Traceback" not in line


@settings(max_examples=40, deadline=None)
@given(
    threshold=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(float("nan"))),
    alpha=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(float("nan"))),
)
def test_options_are_finite_and_in_range_or_refused(threshold: float, alpha: float) -> None:
    """The function's own check: any float either is valid or raises ConfigError."""
    from lshbench.bench_compare import check_options

    valid = math.isfinite(threshold) and threshold > 0 and math.isfinite(alpha) and 0 < alpha < 1
    if valid:
        check_options(threshold, alpha)
    else:
        with pytest.raises(lshbench.ConfigError):
            check_options(threshold, alpha)


@pytest.mark.parametrize("factor", [10.0, 3.0, 100.0])
def test_default_options_catch_a_large_regression(tmp_path: Path, factor: float) -> None:
    base = write(tmp_path, "b.json", synthetic_run(0))
    slower = write(tmp_path, "c.json", scaled(synthetic_run(1), slowed("numpy", factor)))
    res = compare(base, slower)
    assert res.exit_code == 1 and "REGRESSION" in res.output, res.output


def slowed(backend: str, factor: float) -> Callable[[dict], float]:
    """Multiply the samples of every benchmark of ``backend`` by ``factor``."""
    return lambda e: factor if bench_id(e).startswith(f"{backend}-") else 1.0


@settings(max_examples=40, deadline=None)
@given(
    value=st.floats(min_value=5e-324, max_value=1.7976931348623157e308),
    which=st.sampled_from(["base", "cur", "calibration"]),
)
def test_extreme_samples_are_compared_or_refused_in_one_line(value: float, which: str) -> None:
    """Samples anywhere in float range (1e308, 1e-308, ...): a verdict or one ConfigError."""
    base, cur = synthetic_run(0), synthetic_run(1)
    doc = cur if which == "cur" else base
    for entry in doc["benchmarks"]:
        if (CALIBRATION in entry["name"]) == (which == "calibration"):
            entry["stats"]["data"] = [value] * len(entry["stats"]["data"])
    with tempfile.TemporaryDirectory() as tmp:
        b, c = write(Path(tmp), "b.json", base), write(Path(tmp), "c.json", cur)
        try:
            verdict = bench_compare(b, c)
        except lshbench.ConfigError as exc:
            assert "\n" not in str(exc) and "seconds per call" in str(exc)
            assert not 1e-12 <= value <= 1e6
        else:
            assert verdict.status in (0, 1)
            assert 1e-12 <= value <= 1e6


@pytest.mark.parametrize("value", [1e308, 1e-308, 1e7, 1e-13])
def test_extreme_samples_on_the_command_line(tmp_path: Path, value: float) -> None:
    doc = synthetic_run(1)
    doc["benchmarks"][1]["stats"]["data"][0] = value
    base = write(tmp_path, "b.json", synthetic_run(0))
    assert "seconds per call" in one_line_error(compare(base, write(tmp_path, "c.json", doc)))


# ------------------------------------------------------------- deterministic invariants


def with_extra(doc: dict, key: str, change: Callable[[object], object], target: str) -> dict:
    out = copy.deepcopy(doc)
    for entry in out["benchmarks"]:
        if bench_id(entry) == target:
            entry["extra_info"][key] = change(entry["extra_info"][key])
    return out


@pytest.mark.parametrize(
    ("key", "change", "fails"),
    [
        ("mem_alloc_peak_bytes", lambda b: 2 * b, True),
        ("mem_alloc_peak_bytes", lambda b: int(b * 1.05), False),
        ("mem_alloc_peak_bytes", lambda b: b // 2, False),  # less memory is fine
        ("rel_err", lambda e: e * (1 + 1e-4), True),
        ("rel_err", lambda e: e * (1 - 1e-4), True),  # either direction: semantics changed
        ("rel_err", lambda e: e * (1 + 1e-8), False),
        ("flops", lambda f: f + 1, True),
    ],
)
def test_invariants_gate_whatever_the_timer_says(
    tmp_path: Path, key: str, change: Callable, fails: bool
) -> None:
    doc = synthetic_run(0)
    cur = with_extra(doc, key, change, "numpy-L1024-H2")
    res = compare(write(tmp_path, "b.json", doc), write(tmp_path, "c.json", cur))
    assert res.exit_code == (1 if fails else 0), res.output
    if fails:
        assert "CHANGED" in res.output and "numpy-L1024-H2" in res.output.split("FAIL")[1]


def test_missing_benchmark_fails_new_one_passes(tmp_path: Path) -> None:
    doc = synthetic_run(0)
    fewer = copy.deepcopy(doc)
    fewer["benchmarks"] = [e for e in doc["benchmarks"] if bench_id(e) != "numba-L1024-H2"]
    b, c = write(tmp_path, "b.json", doc), write(tmp_path, "c.json", fewer)
    res = compare(b, c)
    assert res.exit_code == 1 and "MISSING" in res.output
    res = compare(c, b)
    assert res.exit_code == 0 and " new " in res.output


def test_passes_are_pooled_and_divided_by_the_calibration_before_them(tmp_path: Path) -> None:
    """Each pass is divided by the calibration that ran just before it: a machine that is
    2x slower during one pass only (calibration and case alike) changes nothing."""
    doc = synthetic_run(0, passes=3, rounds=8)
    run = load_bench_json(write(tmp_path, "b.json", doc), "x")
    assert set(run.benchmarks) == set(SYNTHETIC)
    assert run.normalized("numpy-L1024-H2").shape == (24,)
    assert run.calibration_medians.shape == (3 * len(SYNTHETIC),)
    busy = scaled(doc, lambda e: 2.0 if e["name"].endswith("-p1]") else 1.0)
    busy_run = load_bench_json(write(tmp_path, "c.json", busy), "x")
    for bench in SYNTHETIC:
        np.testing.assert_allclose(busy_run.normalized(bench), run.normalized(bench))


# ------------------------------------------------------------------------- end to end


def run_suite(out: Path, extra_env: dict[str, str] | None = None) -> None:
    """The benchmark suite, short mode, one case (numpy L=1024 H=2) and its calibrations."""
    env = {**os.environ, **THREAD_ENV, "LSHBENCH_BENCH_SHORT": "1", **(extra_env or {})}
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "bench"), "-q", "-p", "no:cacheprovider",
        "-k", "numpy-L1024-H2", f"--benchmark-json={out}",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_slowed_backend_is_caught_end_to_end(tmp_path: Path) -> None:
    """A backend registered only for one run (the numpy backend doing its work twice)."""
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    run_suite(base)
    tests_dir = str(Path(__file__).parent)
    run_suite(
        cur,
        {
            "LSHBENCH_BENCH_REGISTER": "numpy=slow_backend:SlowNumpyBackend",
            "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])),
        },
    )
    res = compare(base, cur)
    assert res.exit_code == 1, res.output
    assert "REGRESSION numpy-L1024-H2" in " ".join(res.output.split()), res.output
    # same output, same memory: only the timer caught it
    base_info = load_bench_json(base, "b").extra_info("numpy-L1024-H2")
    cur_info = load_bench_json(cur, "c").extra_info("numpy-L1024-H2")
    assert cur_info["rel_err"] == base_info["rel_err"]
    assert cur_info["flops"] == base_info["flops"]


def on_cpu(doc: dict, vendor: str, family: int, model: int) -> dict:
    """``doc`` as recorded on the named CPU (pytest-benchmark's ``machine_info["cpu"]``)."""
    out = copy.deepcopy(doc)
    out["machine_info"]["cpu"] = {"vendor_id_raw": vendor, "family": family, "model": model}
    return out


def test_a_folder_of_baselines_compares_the_one_of_the_current_cpu(tmp_path: Path) -> None:
    """The same run is a regression against its own CPU's baseline and passes against
    another CPU's (on which it is relatively faster): only the matching one is used."""
    folder = tmp_path / "baselines"
    folder.mkdir()
    doc = synthetic_run(0)
    write(folder, "AuthenticAMD-25-17.json", on_cpu(doc, "AuthenticAMD", 25, 17))
    slower_machine = scaled(doc, lambda e: 1.0 if CALIBRATION in e["name"] else 0.5)
    write(folder, "GenuineIntel-6-167.json", on_cpu(slower_machine, "GenuineIntel", 6, 167))
    current = on_cpu(scaled(doc, lambda e: 1.0 if CALIBRATION in e["name"] else 0.9), "x", 1, 1)
    for cpu, status in ((("GenuineIntel", 6, 167), 1), (("AuthenticAMD", 25, 17), 0)):
        path = write(tmp_path, "current.json", on_cpu(current, *cpu))
        verdict = bench_compare(folder, path)
        assert verdict.status == status, verdict.text
        assert f"{cpu[0]}-{cpu[1]}-{cpu[2]}.json" in verdict.text.splitlines()[0]
        assert "warning: no baseline recorded on this CPU" not in verdict.text


def test_no_baseline_of_the_cpu_compares_the_first_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "baselines"
    folder.mkdir()
    doc = synthetic_run(0)
    write(folder, "b.json", on_cpu(doc, "GenuineIntel", 6, 167))
    write(folder, "a.json", on_cpu(doc, "AuthenticAMD", 25, 17))
    path = write(tmp_path, "current.json", on_cpu(synthetic_run(1), "AuthenticAMD", 23, 1))
    verdict = bench_compare(folder, path)
    assert verdict.status == 0, verdict.text
    assert "a.json" in verdict.text.splitlines()[0]
    assert (
        "warning: no baseline recorded on this CPU (AuthenticAMD family 23 model 1); "
        "compared with a.json (AuthenticAMD family 25 model 17)" in verdict.text
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert bench_compare(empty, path).status == 0
    assert "no baseline" in bench_compare(empty, path).text


def test_cpu_name_needs_vendor_family_and_model() -> None:
    assert cpu_name({"vendor_id_raw": "GenuineIntel", "family": 6, "model": 167}) == (
        "GenuineIntel family 6 model 167"
    )
    assert cpu_name({"vendor_id_raw": "GenuineIntel", "family": 6}) == ""
    assert cpu_name(None) == "" and cpu_name("x86") == ""


def test_committed_baselines_are_named_after_their_cpu() -> None:
    """``bench/baselines/<vendor>-<family>-<model>.json``: the name says which CPU it is for,
    and no two are for one CPU."""
    files = sorted(BASELINES.glob("*.json"))
    assert files, "no committed baseline"
    cpus = []
    for path in files:
        cpu = json.loads(path.read_text())["machine_info"]["cpu"]
        assert path.stem == f"{cpu['vendor_id_raw']}-{cpu['family']}-{cpu['model']}"
        cpus.append(load_bench_json(path, "baseline").cpu)
    assert len(set(cpus)) == len(cpus)
