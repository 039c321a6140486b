"""The exact floor: the SGEMM rate a sweep stores per thread count, the floor it gives every
point, the crossover table's column and sentence, the time figure's line; runs without a
stored rate have none, said once; a run without torch-sdpa says why its baseline is dense.

The synthetic tables are those of test_report (dense ``2e-9 L^2``, LSH ``~ L^1.05``); the
stored SGEMM rate decides where the floor, ``2 L^2 (d + dv)`` FLOPs at that rate, crosses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import INPUTS, LENGTHS, lsh_time, make_rows, render, table_rows, write_results

from lshbench.measurement import calibration
from lshbench.report import analysis as ra
from lshbench.report import floor
from lshbench.report.peers import EXACT_PEERS, exact_peer_notes
from lshbench.sweep import spec

HEADING = "## Appendix: Crossover L versus the exact baseline"
COLUMN = "beats the exact floor from L"


def with_metadata(folder: Path, **entry: object) -> Path:
    """Add ``entry`` to the fixture's run entry (top level and its ``runs`` history)."""
    path = folder / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(entry)
    meta["runs"] = [{**meta["runs"][0], **entry}]
    path.write_text(json.dumps(meta))
    return folder


def floor_s(L: float, gflops: float, d: int = 64, causal: bool = False) -> float:
    """Exact attention's FLOPs per sequence at ``gflops``, in seconds."""
    return 2 * L * L * 2 * d / (gflops * 1e9) / (2 if causal else 1)


def floor_crossover(H: int, m: int, gflops: float, slower: float = 1.0) -> float:
    """Where numba's fixture time (times ``slower``) falls below the floor: the last sign
    change of the log ratio, interpolated in (log L, log ratio), as the crossover table
    defines it."""
    L = np.array(LENGTHS, float)
    log_r = np.log([slower * lsh_time("numba", H, m, x) / floor_s(x, gflops) for x in LENGTHS])
    i = int(np.flatnonzero(log_r >= 0)[-1])
    frac = log_r[i] / (log_r[i] - log_r[i + 1])
    return float(np.exp(np.log(L[i]) + frac * (np.log(L[i + 1]) - np.log(L[i]))))


# --------------------------------------------------------------------------- the sweep side


def test_sgemm_rates_are_measured_per_thread_count() -> None:
    rates = calibration.sgemm_rates([2, 1, 2], n=256, repeats=3)
    assert list(rates) == ["1", "2"]
    for rate in rates.values():
        assert rate["gflops"] > 0 and rate["n"] == 256 and rate["repeats"] == 3
        assert rate["gflops"] == pytest.approx(2 * 256**3 / rate["gemm_s"] / 1e9)


def test_a_failed_sgemm_measurement_is_recorded_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        calibration, "calibrate_host", lambda *a, **k: {"calib_gflops": None, "calib_error": "x"}
    )
    assert calibration.sgemm_rates([1]) == {"1": {"gflops": None, "error": "x"}}


# --------------------------------------------------------------------------- reading the rate


def test_rates_are_read_per_run_and_thread_count_from_the_entries_of_its_rows() -> None:
    meta = {
        "run_id": "b",
        "sgemm": {"1": {"gflops": 30.0}, "2": {"gflops": 50.0}},
        "runs": [{"run_id": "a", "sgemm": {"1": {"gflops": 10.0}}}, {"run_id": "b"}],
    }
    run = ra.Run("dir", "dir", pd.DataFrame(), meta)
    df = pd.DataFrame(
        {
            "run": ["dir"] * 4 + ["other"],
            "dir": ["dir"] * 4 + ["elsewhere"],
            "run_id": ["a", "b", "b", "c", "a"],
            "threads": [1.0, 1.0, 2.0, 4.0, 1.0],
        }
    )
    rates = floor.sgemm_rates([run], df).set_index(["run", "threads"])["sgemm_gflops"]
    assert rates[("dir", 1.0)] == 20.0  # median of entries a (10) and b (30)
    assert rates[("dir", 2.0)] == 50.0
    assert math.isnan(rates[("dir", 4.0)])  # entry c unknown, nothing stored at 4 threads
    assert math.isnan(rates[("other", 1.0)])  # another directory's metadata


def test_a_dask_run_takes_its_rows_host_rates() -> None:
    """A Dask run's metadata stores no SGEMM rate; each row carries its host's
    (``calib_gflops``), and the floor takes their median at each thread count. A stored
    rate still wins, and a row without either has none."""
    run = ra.Run("dask", "dask", pd.DataFrame(), {"run_id": "d"})
    df = pd.DataFrame(
        {
            "run": ["dask"] * 4 + ["local"],
            "dir": ["dask"] * 4 + ["local"],
            "run_id": ["d"] * 4 + ["l"],
            "threads": [1.0, 1.0, 1.0, 2.0, 1.0],
            "calib_gflops": [40.0, 60.0, np.nan, np.nan, np.nan],
        }
    )
    rates = floor.sgemm_rates([run], df).set_index(["run", "threads"])["sgemm_gflops"]
    assert rates[("dask", 1.0)] == 50.0  # median of the two hosts' rates; the empty one ignored
    assert math.isnan(rates[("dask", 2.0)]) and math.isnan(rates[("local", 1.0)])
    stored = ra.Run("dask", "dask", pd.DataFrame(), {"run_id": "d", "sgemm": {"1": {"gflops": 90}}})
    rates = floor.sgemm_rates([stored], df).set_index(["run", "threads"])["sgemm_gflops"]
    assert rates[("dask", 1.0)] == 90.0


def test_the_floor_is_exact_attention_flops_at_the_rate() -> None:
    points = pd.DataFrame(
        {
            "run": ["r", "r", "r", "r"],
            "threads": [1.0, 1.0, 2.0, 1.0],
            "seqlen": [1024.0, 1024.0, 1024.0, 1024.0],
            "d": [64.0, 64.0, 64.0, 64.0],
            "dv": [64.0, 32.0, 64.0, 64.0],
            "causal": [False, True, False, True],
            "pass": ["forward", "forward", "forward", "train"],
        }
    )
    rates = pd.DataFrame({"run": ["r"], "threads": [1.0], "sgemm_gflops": [100.0]})
    out = floor.with_exact_floor(points, rates)
    assert out["floor_seq"].iloc[0] == pytest.approx(4 * 1024**2 * 64 / 100e9)
    assert out["floor_seq"].iloc[1] == pytest.approx(2 * 1024**2 * 96 / 100e9 / 2)
    assert math.isnan(out["floor_seq"].iloc[2]) and math.isnan(out["floor_gflops"].iloc[2])
    # a training step: the forward's products and the backward's twice as many
    assert out["floor_seq"].iloc[3] == pytest.approx(3 * 4 * 1024**2 * 64 / 100e9 / 2)


# --------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("floor")
    rows = make_rows(failures=False)
    peers = {"exact_peers": {"torch-sdpa": "not installed: torch (pip install 'lshbench[peers]')"}}
    return {
        "crossing": with_metadata(
            write_results(base / "crossing", rows), sgemm={"1": {"gflops": 1000.0}}, **peers
        ),
        "never": with_metadata(write_results(base / "never", rows), sgemm={"1": {"gflops": 1e6}}),
        "old": write_results(base / "old", rows),
    }


def test_floor_column_and_sentence_from_the_measured_crossing(tables, tmp_path: Path) -> None:
    md = render([tables["crossing"]], tmp_path / "out")
    header = md.split(HEADING, 1)[1].split("\n|", 1)[1].split("\n", 1)[0]
    assert header.rstrip(" |").endswith(COLUMN)
    cells = {r[0]: r[-1] for r in table_rows(md, HEADING)}
    want = floor_crossover(1, 32, 1000.0)
    found = [k for k in cells if k.startswith("numba") and "H=1" in k and "m=32" in k]
    assert found and all(float(cells[k]) == pytest.approx(want, abs=0.5) for k in found)
    first = min(
        floor_crossover(H, m, 1000.0)
        for H in (1, 2, 4, 8)
        for m in (32, 64)
        if lsh_time("numba", H, m, LENGTHS[-1]) < floor_s(LENGTHS[-1], 1000.0)
    )
    sentence = (
        "LSH beats even a perfect exact attention (the floor at 1000 GFLOP/s, 1 thread) "
        f"from L = {first:.0f} ("
    )
    assert sentence in md
    assert "No exact floor" not in md
    # torch was not installed where it ran: the baseline is dense, and the report says why
    assert "The exact baseline is dense: torch-sdpa was not installed where the sweep ran" in md


def test_floor_column_pools_the_inputs_into_a_range(tmp_path: Path) -> None:
    """One row per configuration: where its inputs cross the floor at different L, the cell
    is the range of those L, as every other pooled column gives it, not a list of each."""
    slower = 1.3  # numba on the second input takes 1.3x as long: it crosses the floor later
    rows = [
        dict(r, time_median_s=r["time_median_s"] * slower)
        if r["backend"] == "numba" and r["input"] == INPUTS[1]
        else r
        for r in make_rows(failures=False)
    ]
    folder = with_metadata(write_results(tmp_path / "run", rows), sgemm={"1": {"gflops": 1000.0}})
    md = render([folder], tmp_path / "out")
    cells = {r[0]: r[-1] for r in table_rows(md, HEADING)}
    (key,) = [k for k in cells if k.startswith("numba") and "H=1" in k and "m=32" in k]
    lo, hi = floor_crossover(1, 32, 1000.0), floor_crossover(1, 32, 1000.0, slower)
    assert hi > lo + 1  # the two inputs disagree
    assert cells[key] == f"{lo:.0f}-{hi:.0f}"


def test_floor_never_beaten_is_said(tables, tmp_path: Path) -> None:
    md = render([tables["never"]], tmp_path / "out")
    assert {r[-1] for r in table_rows(md, HEADING)} == {"no (> 8192)"}
    assert (
        "No LSH configuration beats a perfect exact attention (the floor at 1000000 GFLOP/s, "
        "1 thread) in the measured range (up to L = 8192)."
    ) in md
    assert "torch-sdpa is not in the run (its metadata predates the record of why)" in md


def test_old_metadata_has_no_floor_said_once(tables, tmp_path: Path) -> None:
    md = render([tables["old"]], tmp_path / "out")
    assert COLUMN not in md and "perfect exact attention" not in md
    assert md.count("No exact floor for") == 1
    assert "neither its metadata nor its rows store a GEMM rate" in md


def test_time_figure_draws_the_floor(tables) -> None:
    from lshbench.report.figures_cost import figure_time
    from lshbench.report.plotting import Palette
    from lshbench.report.scaling import crossovers, fit_exponents

    runs = [ra.load_run(tables["crossing"])]
    df = ra.prepare(runs)
    points = floor.with_exact_floor(ra.series_points(df), floor.sgemm_rates(runs, df))
    plot = figure_time(points, fit_exponents(points), crossovers(points), Palette(points), set())
    scales = {"(s)": 1.0, "(ms)": 1e3, "(µs)": 1e6}
    panels = [ax for ax in plot.figure.axes if ax.get_ylabel().startswith("time per sequence")]
    assert panels
    for ax in panels:  # the floor in every time panel, in the panel's unit
        (scale,) = [v for unit, v in scales.items() if ax.get_ylabel().endswith(unit)]
        (line,) = [ln for ln in ax.lines if ln.get_label().startswith(floor.FLOOR)]
        assert "SGEMM 1000 GFLOP/s" in line.get_label()
        np.testing.assert_array_equal(line.get_xdata(), LENGTHS)
        want = [floor_s(L, 1000.0) * scale for L in LENGTHS]
        np.testing.assert_allclose(line.get_ydata(), want)
    assert "the exact floor" in plot.caption


def test_no_peer_note_when_torch_sdpa_ran() -> None:
    df = pd.DataFrame(
        {
            "run": ["r", "r", "r"],
            "dir": ["r"] * 3,
            "run_id": ["a"] * 3,
            "backend": ["dense", "torch-sdpa", "numba"],
            "exact": [True, True, False],
            "status": ["ok", "ok", "ok"],
        }
    )
    run = ra.Run("r", "r", pd.DataFrame(), {"run_id": "a"})
    assert exact_peer_notes([run], df) == []
    left_out = {"run_id": "a", "exact_peers": {"torch-sdpa": "left out by --backend"}}
    notes = exact_peer_notes([ra.Run("r", "r", pd.DataFrame(), left_out)], df.iloc[[0, 2]])
    assert notes == [
        "The exact baseline is dense: torch-sdpa was not in the run (--backend left it out)."
    ]


def test_the_report_knows_the_sweeps_exact_peers() -> None:
    assert EXACT_PEERS == spec.EXACT_PEERS


def test_the_sgemm_size_follows_the_sweeps_largest_length() -> None:
    sizes = {L: calibration.sgemm_size(L) for L in (64, 512, 513, 1024, 4096, 65536)}
    assert sizes == {64: 512, 512: 512, 513: 1024, 1024: 1024, 4096: 2048, 65536: 2048}
