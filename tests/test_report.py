"""``lshbench report`` on synthetic sweep tables whose times follow known power laws.

The fixture builds results the way ``lshbench sweep`` stores them (docs/design.md section 6):
dense time ``c_d L^2``, LSH time ``c_l H L^1.05 (1 + m/64)`` with a small deterministic
wobble, errors falling with n_hashes and chunk length, a few failed cells. The tests
recompute a crossover and an exponent from the fixture with NumPy alone and look for them
in report.md.
"""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import limited_file_size, refuse_writes_under
from hypothesis import given
from hypothesis import strategies as st

from lshbench.report.labels import bucket_label, read_stored_n_buckets
from lshbench.report.tradeoffs import pareto_mask
from lshbench.results.store import COLUMNS

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
HASHES = (1, 2, 4, 8)
CHUNKS = (32, 64)
INPUTS = ("clustered", "gaussian")
#: Columns of the newer schema (docs/design.md sections 6 and 7) a fixture row may carry.
NEW_COLUMNS = ("machine_id", "code_id", "method", "weighting", "target_entropy", "value_corr",
               "attn_tv", "top1_recall", "attn_entropy", "out_err_v", "task_acc")  # fmt: skip
MACHINE = "a1b2c3d4e5f60718"  # machine_id of the fixture's rows (new schema)
CODE = "c0de000000000001"
CPU_MODEL = "AMD EPYC 7B13 64-Core Processor"
#: How the report labels the fixture's machine: short CPU model and the machine_id's prefix.
MACHINE_LABEL = "AMD EPYC 7B13 (a1b2c3d4)"
FIGURES = (
    "time_vs_seqlen.png",
    "memory_vs_seqlen.png",
    "error_vs_n_hashes.png",
    "error_vs_chunk_len.png",
    "pareto.png",
)


#: Hashing fields of a backend that does not hash, as the sweep stores them (missing): the
#: report tells exact backends by these, not by name.
NO_HASHING = {k: np.nan for k in ("n_hashes", "n_buckets", "chunk_len", "chunks_before",
                                  "chunks_after")}  # fmt: skip


def _wobble(*keys: float) -> float:
    """A deterministic multiplicative wobble of a few percent, so fits are not exact."""
    return math.exp(0.03 * math.sin(sum((i + 1) * 1.7 * k for i, k in enumerate(keys))))


def _row(**kw) -> dict:
    base = {c: np.nan for c in (*COLUMNS, *NEW_COLUMNS)}
    base.update(
        run_id="r1",
        batch=1,
        d=64,
        dv=64,
        causal=False,
        dtype="float32",
        threads=1,
        seed=0,
        status="ok",
        message="",
        compile_s=0.1,
        n_samples=7,
        unstable=False,
        chunks_before=1,
        chunks_after=0,
    )
    base.update(kw)
    t = base["time_median_s"]
    if base["status"] == "ok":
        base.update(time_iqr_s=0.02 * t, time_min_s=0.97 * t)
        base["tokens_per_s"] = base["batch"] * base["seqlen"] / t
        base["gflops"] = 1.0
    return base


def dense_time(L: int, batch: int = 1) -> float:
    return 2e-9 * L**2 * batch * _wobble(L, 0.3)


def lsh_time(backend: str, H: int, m: int, L: int, batch: int = 1) -> float:
    scale = 1.5e-7 if backend == "numba" else 7e-7
    return scale * H * L**1.05 * (1 + m / 64) * batch * _wobble(L, H, m, len(backend))


def make_rows(
    lengths=LENGTHS,
    failures: bool = True,
    tokens: int | None = None,
    factors: str | None = None,
    hashes=HASHES,
    schema: str = "new",
) -> list[dict]:
    """Sweep rows; ``tokens`` holds batch * L fixed (the paper preset) when given, ``factors``
    (e.g. "16x32") replaces the default n_buckets rule 2L/m. ``schema="new"`` gives the
    columns of docs/design.md sections 6-7 (attn_tv, method, weighting, machine_id, ...);
    ``"old"`` the table of lshbench 0.1 (rel_err, mass_recall and top1_agree only)."""
    rows = []
    for L in lengths:
        batch = tokens // L if tokens else 1
        for inp in INPUTS:
            t = dense_time(L, batch)
            rows.append(
                _row(
                    backend="dense",
                    seqlen=L,
                    batch=batch,
                    input=inp,
                    **NO_HASHING,
                    time_median_s=t,
                    rel_err=0.0,
                    max_abs_err=0.0,
                    cos_sim=1.0,
                    mass_recall=1.0,
                    **_accuracy(schema, 0.0, exact=True),
                    mem_alloc_peak_bytes=4 * L * 512 * batch,
                    mem_rss_peak_bytes=5 * L * 512 * batch,
                    mem_model_bytes=4 * L * 512 * batch,
                    flops=4 * L * L * 64,
                )
            )
            for backend in ("numba", "numpy"):
                for H in hashes:
                    for m in CHUNKS:
                        err = (
                            0.4
                            / math.sqrt(H)
                            * math.sqrt(32 / m)
                            * (1.0 if inp == "gaussian" else 0.2)
                        )
                        err *= math.log2(L) / 13
                        rounds = H if backend == "numpy" else 1  # numba streams rounds
                        mem = 4 * rounds * L * (2 * m + 3 * 64) * batch
                        row = _row(
                            backend=backend,
                            seqlen=L,
                            batch=batch,
                            input=inp,
                            n_hashes=H,
                            n_buckets=math.prod(map(int, factors.split("x")))
                            if factors
                            else 2 * L // m,
                            n_buckets_spec=factors or str(2 * L // m),
                            chunk_len=m,
                            time_median_s=lsh_time(backend, H, m, L, batch),
                            rel_err=err,
                            max_abs_err=3 * err,
                            cos_sim=1 - err**2,
                            mass_recall=1 - 0.8 * err,
                            **_accuracy(schema, _fixture_tv(H, m, inp, L)),
                            mem_alloc_peak_bytes=int(mem * 1.1),
                            mem_rss_peak_bytes=int(mem * 1.3),
                            mem_model_bytes=mem,
                            flops=1e9,
                        )
                        if failures and backend == "numpy" and H == 8 and m == 32 and L == 8192:
                            row.update(
                                status="oom_predicted",
                                time_median_s=np.nan,
                                message="predicted 30 GiB > --mem-budget 24 GiB",
                            )
                        rows.append(row)
    if failures:
        rows.append(
            _row(
                backend="dense",
                **NO_HASHING,
                seqlen=2 * lengths[-1],
                input="gaussian",
                status="timeout",
                message="cell exceeded --timeout 60 s",
                **_accuracy(schema, np.nan, exact=True),
            )
        )
    if schema == "old":  # lshbench 0.1 wrote none of the newer columns
        rows = [{k: v for k, v in r.items() if k not in NEW_COLUMNS} for r in rows]
    return rows


def _fixture_tv(H: int, m: int, inp: str, L: int) -> float:
    """The fixture's attn_tv: falls with n_hashes and chunk length, lower on clustered."""
    return (
        0.3
        / math.sqrt(H)
        * math.sqrt(32 / m)
        * (1.0 if inp == "gaussian" else 0.15)
        * (math.log2(L) / 13)
    )


def _accuracy(schema: str, tv: float, exact: bool = False) -> dict:
    """The accuracy and provenance columns of a row of the given schema."""
    if schema == "old":
        return {"top1_agree": 1.0 - tv}
    return {
        "machine_id": MACHINE,
        "code_id": CODE,
        "method": None if exact else "lsh",
        "weighting": None if exact else "multiplicity",
        "attn_tv": tv,
        "top1_recall": 1.0 - tv / 2,
        "attn_entropy": 5.0,
        "out_err_v": tv / 3,
    }


def write_results(folder: Path, rows: list[dict], log_only: bool = False) -> Path:
    """Store rows as the sweep does: through its table builder into results.parquet (or only
    the append-only results.jsonl log, as after a sweep killed before its export)."""
    from lshbench.results.store import rows_to_frame

    folder.mkdir(parents=True, exist_ok=True)
    rows = [dict(r, cell_id=f"cell{i}") for i, r in enumerate(rows)]
    for r in rows:
        r.setdefault("n_buckets_spec", None if pd.isna(r["n_buckets"]) else str(r["n_buckets"]))
    if log_only:
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                 for r in rows]  # fmt: skip
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in clean)
        (folder / "results.jsonl").write_text(text)
    else:
        rows_to_frame(rows).to_parquet(folder / "results.parquet", index=False)
    meta = {
        "run_id": "r1",
        "start_time": "2026-01-01T00:00:00+00:00",
        "end_time": "2026-01-01T00:02:00+00:00",
        "command_line": ["lshbench", "sweep", "--preset", "quick"],
        "git": {"commit": "abc123", "dirty": False},
        "cpu": {"model": "Test CPU @ 2.0GHz", "count": 2},
        "versions": {"python": "3.11.7", "numpy": "2.4.6", "numba": "0.68.1", "lshbench": "0.1.0"},
        "workers": {"1": {"threading_layer": "omp", "blas": [{"internal_api": "openblas"}]}},
        "runs": [{"run_id": "r1"}],
        "machines": {
            MACHINE: {
                "cpu_model": CPU_MODEL,
                "logical_cpus": 2,
                "memory_mib": 24105,
                "os": "Linux",
                "packages": {"numpy": "2.4.6"},
            }
        },
    }
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def render(dirs, out: Path) -> str:
    from lshbench.report.document import render_report

    render_report([str(d) for d in dirs], out)
    return (out / "report.md").read_text()


def table_rows(md: str, heading: str) -> list[list[str]]:
    """Cells of the first Markdown table after ``heading``."""
    section = md.split(heading, 1)[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    rows, started = [], False
    for ln in section.splitlines():
        if ln.startswith("|"):
            started = True
            rows.append([c.strip() for c in ln.strip("|").split(" | ")])
        elif started:
            break
    assert lines, f"no table after {heading}"
    return rows[2:]  # drop header and rule


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("report")
    results = write_results(base / "quick", make_rows())
    out = base / "out"
    return results, out, render([results], out)


# --------------------------------------------------------------------------- files, pictures


def test_every_file_exists_and_pngs_have_content(quick) -> None:
    from matplotlib.image import imread

    _, out, md = quick
    assert (out / "report.md").is_file() and (out / "index.html").is_file()
    for name in FIGURES:
        assert (out / name).is_file(), name
        assert f"]({name})" in md
        img = imread(out / name)[..., :3]  # (h, w, 3) floats in [0, 1]
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img.std() > 0.05  # not blank; what it shows is checked on the Figures below
    # no fixed-tokens series in this run: the paper figure is left out with a reason
    assert not (out / "time_per_token.png").exists()
    assert "Figure left out: no configuration holds batch x L fixed" in md


@pytest.fixture(scope="module")
def tables(quick) -> dict:
    """The analysis of the quick fixture, as render_report computes it."""
    from lshbench.report import analysis as ra
    from lshbench.report.plotting import Palette
    from lshbench.report.scaling import crossovers, fit_exponents

    results, _, _ = quick
    df = ra.prepare([ra.load_run(results)])
    points = ra.series_points(df)
    return {
        "points": points,
        "fits": fit_exponents(points),
        "cross": crossovers(points),
        "palette": Palette(points),
        "varying": ra.varying_axes(df),
    }


def _labelled(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata()))
        for line in ax.lines
        if not line.get_label().startswith("_")
    }


def test_time_figure_plots_the_fixture_times(tables) -> None:
    """One panel per chunk length (the slice axis that varies), shared y; every line the
    fixture's times in ms at its measured L, a star at each measured crossover."""
    from lshbench.report.figures_cost import figure_time

    t = tables
    plot = figure_time(t["points"], t["fits"], t["cross"], t["palette"], t["varying"])
    assert plot.name == "time"
    assert "input=gaussian" in plot.caption
    axes = plot.figure.axes
    assert sorted(ax.get_title() for ax in axes) == [f"chunk_len={m}" for m in CHUNKS]
    assert len({ax.get_ylim() for ax in axes}) == 1  # one y range for every panel
    title = plot.figure.get_suptitle()
    best = min(lsh_time(b, H, 64, 8192) for b in ("numba", "numpy") for H in HASHES)
    assert f"is {dense_time(8192) / best:.1f}x faster than the exact baseline (dense)" in title
    assert "at L = 8K" in title and "input=gaussian" in title
    for ax in axes:
        m = int(ax.get_title().removeprefix("chunk_len="))
        assert ax.get_xlabel() == "sequence length L"
        assert ax.get_ylabel() == "time per sequence (ms)"
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        lines = _labelled(ax)
        expected = {"dense": (LENGTHS, [dense_time(L) for L in LENGTHS])}
        for b in ("numba", "numpy"):
            for H in HASHES:
                ls = [L for L in LENGTHS if (b, H, m, L) != ("numpy", 8, 32, 8192)]  # oom
                expected[f"{b} H={H}"] = (ls, [lsh_time(b, H, m, L) for L in ls])
        assert set(lines) == set(expected)
        for label, (x, y) in lines.items():
            np.testing.assert_array_equal(x, expected[label][0])
            np.testing.assert_allclose(y, 1e3 * np.array(expected[label][1]), rtol=1e-12)  # ms
        exponents = [t.get_text() for t in ax.texts if t.get_text().startswith("k=")]
        assert len(exponents) == len(expected)  # the fitted exponent at the end of each line
        stars = sorted(line.get_xdata()[0] for line in ax.lines if line.get_marker() == "*")
        want = sorted(
            value
            for b in ("numba", "numpy")
            for H in HASHES
            for kind, value in [_expected_crossover(b, H, m)]
            if kind == "measured" and (b, H, m) != ("numpy", 8, 32)  # not measured at 8K
        )
        np.testing.assert_allclose(stars, want, rtol=1e-9)
    legend = [t.get_text() for t in plot.figure.legends[0].texts]
    has_star = any(line.get_marker() == "*" for ax in axes for line in ax.lines)
    assert ("crossover: LSH faster than the exact baseline from here" in legend) == has_star
    assert len(legend) == len(set(legend))


def _fixture_error(H: int, m: int, inp: str, L: int) -> float:
    return (
        0.4
        / math.sqrt(H)
        * math.sqrt(32 / m)
        * (1.0 if inp == "gaussian" else 0.2)
        * (math.log2(L) / 13)
    )


def test_error_figure_plots_the_fixture_errors(tables) -> None:
    """attn_tv (top) and mass recall versus n_hashes, one line per method and weighting,
    at the slice's chunk length; and versus chunk length, one line per n_hashes."""
    from lshbench.report.figures_accuracy import figure_error
    from lshbench.report.plotting import DPI

    t = tables
    plot = figure_error(
        t["points"], "n_hashes", ("method", "weighting"), "error_hashes", t["palette"],
        t["varying"],
    )  # fmt: skip
    L = max(LENGTHS)
    m = int(re.search(r"chunk_len=(\d+)", plot.caption).group(1))  # the slice shown
    assert f"at L={L}" in plot.caption and "backend numpy" in plot.caption
    tvs = [_fixture_tv(8, m, inp, L) for inp in INPUTS]  # the largest n_hashes, per input
    assert plot.figure.get_suptitle() == (
        f"attn_tv at H=8, L=8K: LSH {min(tvs):.2g}-{max(tvs):.2g} (range over inputs)"
    )
    axes = plot.figure.axes  # a row per input: attn_tv, then mass recall
    assert [ax.get_title() for ax in axes] == [f"input={i}" for i in INPUTS for _ in range(2)]
    assert plot.figure.get_size_inches()[0] * DPI <= 1600
    tv_axes = [ax for ax in axes if ax.get_ylabel().startswith("attn_tv")]
    assert len({ax.get_ylim() for ax in tv_axes}) == 1  # shared y range of one metric
    assert tv_axes[0].get_yscale() == "log"
    assert [t.get_text() for t in plot.figure.legends[0].texts] == [
        "LSH (hashed buckets)", "multiplicity"]  # fmt: skip
    hashes = [H for H in HASHES if (H, m) != (8, 32)]  # numpy H=8 m=32 is oom_predicted
    for ax in axes:
        inp = ax.get_title().removeprefix("input=")
        recall = ax.get_ylabel().startswith("mass_recall")
        assert ax.get_ylabel() in ("mass_recall (exact mass on keys seen)",
                                   "attn_tv (attention distance)")  # fmt: skip
        assert ax.get_xlabel() in ("n_hashes (H)", "")  # the bottom row only
        lines = _labelled(ax)
        assert set(lines) == {"lsh, multiplicity"}
        x, y = lines["lsh, multiplicity"]
        np.testing.assert_array_equal(x, hashes)
        errors = np.array([_fixture_error(H, m, inp, L) for H in hashes])
        tv = np.array([_fixture_tv(H, m, inp, L) for H in hashes])
        np.testing.assert_allclose(y, 1 - 0.8 * errors if recall else tv, rtol=1e-12)
        failed = [line.get_xdata()[0] for line in ax.lines if line.get_label().startswith("_")]
        assert failed == ([8] if m == 32 else [])  # a failed cell: top edge at its n_hashes

    plot = figure_error(
        t["points"], "chunk_len", "n_hashes", "error_chunk", t["palette"], t["varying"]
    )
    for ax in plot.figure.axes:
        inp = ax.get_title().removeprefix("input=")
        lines = _labelled(ax)
        assert set(lines) == {f"H={H}" for H in HASHES}
        if ax.get_ylabel().startswith("attn_tv"):
            for H in HASHES:
                chunks = [c for c in CHUNKS if (H, c) != (8, 32)]
                np.testing.assert_array_equal(lines[f"H={H}"][0], chunks)
                want = [_fixture_tv(H, c, inp, L) for c in chunks]
                np.testing.assert_allclose(lines[f"H={H}"][1], want, rtol=1e-12)


def test_pareto_figure_draws_the_front_of_the_fixture(tables) -> None:
    from lshbench.report.figures_accuracy import figure_pareto

    t = tables
    plot = figure_pareto(t["points"], t["palette"], t["varying"])
    L = max(LENGTHS)
    ax = next(a for a in plot.figure.axes if a.get_title() == "input=gaussian, L=8K")
    assert ax.get_xlabel() == "time per sequence (ms)"
    assert ax.get_ylabel() == "attn_tv (attention distance)"
    configs = [
        (1e3 * lsh_time(b, H, m, L), _fixture_tv(H, m, "gaussian", L))
        for b in ("numba", "numpy")
        for H in HASHES
        for m in CHUNKS
        if (b, H, m) != ("numpy", 8, 32)
    ]
    dots = sorted(
        (line.get_xdata()[0], line.get_ydata()[0])
        for line in ax.lines
        if len(line.get_xdata()) == 1 and line.get_linestyle() == "None"
    )
    np.testing.assert_allclose(dots, sorted(configs), rtol=1e-12)
    front = sorted(
        c for c in configs if not any(o[0] <= c[0] and o[1] <= c[1] and o != c for o in configs)
    )
    (step,) = [line for line in ax.lines if line.get_drawstyle() == "steps-post"]
    np.testing.assert_allclose(np.c_[step.get_xdata(), step.get_ydata()], front, rtol=1e-12)
    dense = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    np.testing.assert_allclose(dense, [1e3 * dense_time(L)], rtol=1e-12)
    budgets = sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == ":")
    assert budgets == [0.05, 0.10, 0.20]  # on attn_tv


def test_html_is_self_contained(quick) -> None:
    _, out, md = quick
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == md.count("![")
    assert "<img" in page and 'src="time_vs_seqlen.png"' not in page
    assert "Crossover L versus the exact baseline" in page


@given(st.text(alphabet="ab/._-<& \n", max_size=120))
def test_a_table_cell_keeps_its_text_and_every_word_can_break_within_20_characters(
    text: str,
) -> None:
    """In the HTML page a cell's long word (a path, a file name) gets break opportunities,
    so it wraps inside its column rather than widening the table past the window; the text
    a reader sees is unchanged."""
    import html

    from lshbench.report.document import LONG_WORD, _html_cell

    cell = _html_cell(text)
    assert html.unescape(cell.replace("<wbr>", "")) == text
    for word in cell.split():
        assert all(len(html.unescape(piece)) <= LONG_WORD for piece in word.split("<wbr>"))
    # a short word is left whole; a path breaks after its separators
    assert _html_cell("4096 dense") == "4096 dense"
    assert _html_cell("/a/b/" + "c" * 30) == "/<wbr>a/<wbr>b/<wbr>" + "c" * 20 + "<wbr>" + "c" * 10


# --------------------------------------------------------------------------- numbers


def _series_points(backend: str, H: int, m: int, inp: str) -> tuple[np.ndarray, np.ndarray]:
    L = np.array([x for x in LENGTHS if x > m], float)
    t = np.array([lsh_time(backend, H, m, int(x)) for x in L])
    return L, t


def _row_for(rows: list[list[str]], *words: str) -> list[str]:
    found = [r for r in rows if all(re.search(rf"(^|\s){re.escape(w)}(\s|$)", r[0]) for w in words)]
    assert len(found) == 1, (words, [r[0] for r in rows])
    return found[0]


@pytest.mark.parametrize(("H", "m"), [(1, 32), (2, 64), (4, 32)])
def test_exponent_matches_an_independent_fit(quick, H: int, m: int) -> None:
    _, _, md = quick
    L, t = _series_points("numba", H, m, "gaussian")
    slope, intercept = np.polyfit(np.log(L), np.log(t), 1)
    pred = slope * np.log(L) + intercept
    r2 = 1 - np.sum((np.log(t) - pred) ** 2) / np.sum((np.log(t) - np.log(t).mean()) ** 2)
    row = _row_for(
        table_rows(md, "## Appendix: Fitted scaling exponents"),
        "numba",
        f"H={H}",
        f"m={m}",
        "gaussian",
    )
    assert row[3] == f"{slope:.3f}"
    assert row[4] == f"{r2:.4f}"
    assert abs(slope - 1.05) < 0.05  # the fixture's law


def test_dense_exponent_is_two(quick) -> None:
    _, _, md = quick
    row = _row_for(table_rows(md, "## Appendix: Fitted scaling exponents"), "dense", "gaussian")
    L = np.array(LENGTHS, float)
    slope = np.polyfit(np.log(L), np.log([dense_time(int(x)) for x in L]), 1)[0]
    assert row[3] == f"{slope:.3f}" and abs(slope - 2) < 0.05


def _expected_crossover(backend: str, H: int, m: int) -> tuple[str, float]:
    """Crossover recomputed from the fixture: last slower L, first faster L, log interpolation."""
    L = np.array(LENGTHS, float)
    r = np.log([lsh_time(backend, H, m, int(x)) / dense_time(int(x)) for x in L])
    faster = r < 0
    if faster.all():
        return "below", L[0]
    if not faster[-1]:
        return "above", L[-1]
    i = max(j for j in range(len(L)) if not faster[j]) + 1
    x = np.log(L[i - 1]) + (np.log(L[i]) - np.log(L[i - 1])) * r[i - 1] / (r[i - 1] - r[i])
    return "measured", float(np.exp(x))


@pytest.mark.parametrize(
    ("backend", "H", "m"), [("numba", 1, 32), ("numba", 4, 64), ("numpy", 2, 32), ("numpy", 8, 64)]
)
def test_crossover_matches_an_independent_computation(quick, backend, H, m) -> None:
    """One row per configuration: the fixture's times do not depend on the input, so its
    two inputs share one crossover, named without the input."""
    _, _, md = quick
    kind, value = _expected_crossover(backend, H, m)
    rows = table_rows(md, "## Appendix: Crossover L versus the exact baseline")
    assert not any("gaussian" in r[0] or "clustered" in r[0] for r in rows)
    row = _row_for(rows, backend, f"H={H}", f"m={m}")
    assert row[1] == str(len(INPUTS))
    expected = {
        "measured": f"{value:.0f}",
        "below": f"below the grid (<= {value:.0f})",
        "above": f"not in range (> {value:.0f})",
    }
    assert row[2] == expected[kind]
    if kind == "measured":
        assert 256 < value < 8192


def test_fixture_has_every_crossover_kind() -> None:
    kinds = {
        _expected_crossover(b, H, m)[0] for b in ("numba", "numpy") for H in HASHES for m in CHUNKS
    }
    assert kinds == {"measured", "above", "below"}


def test_budget_table_picks_the_fastest_within_budget(quick) -> None:
    """Budgets are on attn_tv (0.05 / 0.10 / 0.20), not on the relative error."""
    _, _, md = quick
    section = md.split("## Appendix: Best configuration under an error budget", 1)[1]
    header = next(ln for ln in section.splitlines() if ln.startswith("|"))
    assert header == (
        "| input | L | attn_tv <= 0.05 | attn_tv <= 0.1 | attn_tv <= 0.2 | exact baseline |"
    )
    rows = table_rows(md, "## Appendix: Best configuration under an error budget")
    assert len(rows) == len(INPUTS) * len(LENGTHS)
    lsh_picked = 0
    for inp in INPUTS:
        for L in LENGTHS:
            row = next(r for r in rows if r[0] == inp and r[1] == str(L))
            assert row[5] == "dense (1.0 GFLOP/s)"  # the only exact backend of the fixture
            for col, budget in zip(row[2:5], (0.05, 0.10, 0.20), strict=True):
                options = [("dense", dense_time(L), 0.0)]
                for b in ("numba", "numpy"):
                    for H in HASHES:
                        for m in CHUNKS:
                            if L <= m or (b, H, m, L) == ("numpy", 8, 32, 8192):
                                continue
                            tv = _fixture_tv(H, m, inp, L)
                            options.append((f"{b} H={H} m={m}", lsh_time(b, H, m, L), tv))
                best = min((o for o in options if o[2] <= budget), key=lambda o: o[1])
                assert col.split(":")[0] == best[0], (inp, L, budget, col, best)
                assert f"attn_tv {best[2]:.3g}," in col
                lsh_picked += best[0] != "dense"
    assert lsh_picked > 0  # the fixture lets LSH meet some budgets


def test_speedups_are_against_the_fastest_exact_row(tmp_path) -> None:
    """Where another exact backend (no hashing fields; here a torch-sdpa stand-in, 0.4x
    dense's time from L = 1024 on, 3x below) is faster than dense, it is the exact baseline:
    crossovers and speed-ups divide by its time, and the tables name it with its GFLOP/s."""
    rows = make_rows(failures=False)
    peer = [
        dict(r, backend="torch-sdpa", gflops=2.5,
             time_median_s=r["time_median_s"] * (0.4 if r["seqlen"] >= 1024 else 3.0))
        for r in rows
        if r["backend"] == "dense"
    ]  # fmt: skip
    md = render([write_results(tmp_path / "run", rows + peer)], tmp_path / "out")
    row = _row_for(
        table_rows(md, "## Appendix: Crossover L versus the exact baseline"), "numba", "H=1",
        "m=32",
    )  # fmt: skip
    L = LENGTHS[-1]
    assert row[6] == f"{0.4 * dense_time(L) / lsh_time('numba', 1, 32, L):.2f}x"
    assert row[8] == "torch-sdpa/dense"  # 4 of the 6 L, then the 2 where dense is faster
    assert row[9] == "2.5"
    budget = table_rows(md, "## Appendix: Best configuration under an error budget")
    assert next(r for r in budget if r[:2] == ["gaussian", "512"])[5] == "dense (1.0 GFLOP/s)"
    assert next(r for r in budget if r[:2] == ["gaussian", "8192"])[5] == (
        "torch-sdpa (2.5 GFLOP/s)"
    )


def test_failed_cells_listed(quick) -> None:
    _, _, md = quick
    rows = table_rows(md, "## Appendix: Failed cells")
    statuses = sorted(r[4] for r in rows)
    assert statuses == ["oom_predicted", "oom_predicted", "timeout"]  # numpy H=8 m=32, 2 inputs
    assert any("--mem-budget" in r[5] for r in rows)


def test_metadata_rendered(quick) -> None:
    _, _, md = quick
    rows = table_rows(md, "## Appendix: Machine and versions")
    values = {r[0]: r[1] for r in rows}
    assert values["cpu.model"] == "Test CPU @ 2.0GHz"
    assert values["versions.numba"] == "0.68.1"
    assert values["workers.1.blas[0].internal_api"] == "openblas"
    assert values["workers.1.threading_layer"] == "omp"
    assert values["command_line"] == "lshbench sweep --preset quick"
    assert values["git.commit"] == "abc123"
    assert values["sweep invocations"] == "1"
    assert rows[0][0] == "run_id"


def test_regenerating_gives_identical_report(quick, tmp_path) -> None:
    results, out, md = quick
    again = render([results], tmp_path / "again")
    assert again == md
    assert (tmp_path / "again" / "index.html").read_text() == (out / "index.html").read_text()


def test_log_only_directory_gives_the_same_tables(quick, tmp_path) -> None:
    """A sweep killed before its export leaves only results.jsonl; load_results reads it."""
    from lshbench.report import analysis as ra
    from lshbench.report.scaling import crossovers, fit_exponents

    results, _, _ = quick
    log_dir = write_results(tmp_path / "quick", make_rows(), log_only=True)
    assert not (log_dir / "results.parquet").exists()
    tables = []
    for folder in (results, log_dir):
        points = ra.series_points(ra.prepare([ra.load_run(folder)]))
        tables.append((points, fit_exponents(points), crossovers(points)))
    for from_parquet, from_log in zip(*tables, strict=True):
        pd.testing.assert_frame_equal(from_parquet, from_log)


# --------------------------------------------------------------------------- unsupported figures


def test_one_length_leaves_time_figure_out(tmp_path) -> None:
    rows = make_rows(lengths=(1024,), failures=False, hashes=(1, 2))
    results = write_results(tmp_path / "one", rows)
    md = render([results], tmp_path / "out")
    assert not (tmp_path / "out" / "time_vs_seqlen.png").exists()
    assert not (tmp_path / "out" / "memory_vs_seqlen.png").exists()
    assert "*Figure left out: only one sequence length (L=1024) in the results" in md
    assert (tmp_path / "out" / "error_vs_n_hashes.png").is_file()


def test_no_exact_rows_leaves_crossover_out(tmp_path) -> None:
    rows = make_rows(lengths=(512, 1024, 2048), failures=False, hashes=(1, 2))
    rows = [r for r in rows if r["backend"] != "dense"]
    md = render([write_results(tmp_path / "nodense", rows)], tmp_path / "out")
    assert "No exact rows: crossovers are not marked" in md
    assert "*Left out: no exact rows" in md
    assert (tmp_path / "out" / "time_vs_seqlen.png").is_file()


def test_paper_view_and_overlay_of_two_runs(tmp_path) -> None:
    quick = write_results(tmp_path / "quick", make_rows(failures=False))
    lengths = (1024, 2048, 4096, 8192)
    rows = make_rows(lengths=lengths, failures=False, tokens=8192, factors="16x32")
    paper = write_results(tmp_path / "paper", rows)
    out = tmp_path / "both"
    md = render([quick, paper], out)
    assert (out / "time_per_token.png").is_file()
    assert "batch x L = 8192" in md
    # the fixture's only exact backend is dense, at 1 GFLOP/s in every row
    assert "the exact baseline (the fastest exact point at each L) is dense, at 1 GFLOP/s" in md
    rows = table_rows(md, "## Appendix: Fitted scaling exponents")
    # two directories: each series is labelled by directory and machine
    paper_run, quick_run = f"[paper: {MACHINE_LABEL}]", f"[quick: {MACHINE_LABEL}]"
    assert any(r[0].startswith(f"{paper_run} numba H=1 m=32 nb=16x32 ") for r in rows)
    assert any(r[0].startswith(f"{quick_run} numba H=1 m=32 nb=2L/m ") for r in rows)
    # the paper run's per-sequence times still follow the laws: exponent near 1.05 and 2
    row = _row_for(rows, *paper_run.split(), "dense", "gaussian")
    assert abs(float(row[3]) - 2) < 0.1
    header = next(ln for ln in md.split("## Appendix: Machine and versions")[1].splitlines() if ln)
    assert header.startswith("| key | quick | paper |")


# --------------------------------------------------------------------------- bad input, CLI


def _cli(args: list[str]) -> tuple[int, str]:
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "report", *args], capture_output=True, text=True
    )
    return res.returncode, res.stderr


def test_cli_writes_report_to_default_folder(quick, tmp_path, monkeypatch) -> None:
    from lshbench.cli import main

    results, _, _ = quick
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["report", str(results)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "reports" / "quick" / "report.md").is_file()
    assert (tmp_path / "reports" / "quick" / "index.html").is_file()
    assert "report.md" in res.output


def test_cli_report_of_several_runs_never_overwrites_a_single_run_report(
    quick, tmp_path, monkeypatch
) -> None:
    """Two runs whose directories share a name (a fresh sweep and the reference run of the
    same preset) go to a folder of their own; the single-run report stays as it was."""
    from lshbench.cli import main

    results, reference = tmp_path / "results" / "quick", tmp_path / "reference" / "quick"
    shutil.copytree(quick[0], results)
    shutil.copytree(quick[0], reference)
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["report", str(results)]).exit_code == 0
    single = tmp_path / "reports" / "quick" / "report.md"
    before = single.read_bytes()
    res = CliRunner().invoke(main, ["report", str(results), str(reference)])
    assert res.exit_code == 0, res.output
    both = tmp_path / "reports" / "results-quick-vs-reference-quick"
    assert str(Path("reports") / both.name / "report.md") in res.output
    assert "reference/quick" in (both / "report.md").read_text()
    assert single.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "quick",
        "results-quick-vs-reference-quick",
    ]


@pytest.mark.parametrize("case", ["missing", "empty", "no_rows", "columns", "corrupt"])
def test_cli_bad_dir_one_line_exit_2(tmp_path, case) -> None:
    folder = tmp_path / "bad"
    if case != "missing":
        folder.mkdir()
    if case == "no_rows":
        write_results(folder, [])
    if case == "columns":
        write_results(folder, make_rows(lengths=(512,), failures=False))
        table = pd.read_parquet(folder / "results.parquet")
        table.drop(columns=["mass_recall", "status"]).to_parquet(folder / "results.parquet")
    if case == "corrupt":
        (folder / "results.parquet").write_bytes(b"PAR1 not really\nparquet\n")
    code, err = _cli([str(folder), "--out", str(tmp_path / "out")])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"Error: DIR={folder}")
    expected = {
        "missing": "no such directory",
        "empty": "holds no results",
        "no_rows": "has no rows",
        "columns": "lacks required columns: status, mass_recall",
        "corrupt": "cannot read the results table",
    }
    assert expected[case] in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_needs_a_dir() -> None:
    code, err = _cli([])
    assert code == 2 and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (64, "64"),
        (64.0, "64"),
        ("64", "64"),
        ("(16, 32)", "16x32"),
        ([16, 32], "16x32"),
        ("[16, 32]", "16x32"),
        ("16x32", "16x32"),
        (np.nan, ""),
        (None, ""),
        ("auto", "auto"),
    ],
)
def test_bucket_label(value, text) -> None:
    assert bucket_label(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64", 64),
        ("2,4", (2, 4)),
        ("16x32", (16, 32)),
        ("(16, 32)", (16, 32)),
        ("[16 32]", (16, 32)),
        ("-4", -4),  # kept: a bad stored value is not silently changed
        ("four", None),
        ("2.5", None),
        ("4,", None),
        ("", None),
    ],
)
def test_read_stored_n_buckets(text, value) -> None:
    assert read_stored_n_buckets(text) == value
    if value is not None:  # formatting and parsing agree: the label reads back the same
        assert read_stored_n_buckets(bucket_label(value)) == value


def test_exact_backends_are_told_by_their_rows_not_their_names(tmp_path) -> None:
    """A backend with no hashing fields in any row (a peer such as an SDPA kernel) is exact;
    one that hashes is LSH whatever its name."""
    from lshbench.report import analysis as ra

    rows = make_rows(lengths=(512, 1024), failures=False, hashes=(1,))
    peer = [dict(r, backend="some-peer", rel_err=np.nan, mass_recall=np.nan)
            for r in rows if r["backend"] == "dense"]  # fmt: skip
    renamed = [dict(r, backend="dense-like") for r in rows if r["backend"] == "numba"]
    folder = write_results(tmp_path / "peers", rows + peer + renamed)
    df = ra.prepare([ra.load_run(folder)])
    exact = df.groupby("backend")["exact"].agg(set).to_dict()
    assert exact == {
        "dense": {True},
        "some-peer": {True},
        "numba": {False},
        "numpy": {False},
        "dense-like": {False},
    }
    peer_rows = df[df["backend"] == "some-peer"]
    assert (peer_rows["rel_err"] == 0).all() and (peer_rows["mass_recall"] == 1).all()


def test_pareto_mask_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        t, e = rng.integers(0, 6, 12).astype(float), rng.integers(0, 6, 12).astype(float)
        keep = pareto_mask(t, e)
        for i in range(len(t)):
            dominated = any(
                (t[j] <= t[i] and e[j] <= e[i]) and (t[j] < t[i] or e[j] < e[i] or j < i)
                for j in range(len(t))
                if j != i
            )
            assert keep[i] == (not dominated), (t, e, i)


# ----------------------------------------------------------------- --out faults: one line


@pytest.mark.parametrize("under", ["", "sub", "a/b/c"])
def test_out_that_is_or_is_under_a_file_is_one_line_exit_2(quick, tmp_path, under) -> None:
    results, _, _ = quick
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = blocker / under if under else blocker
    code, err = _cli([str(results), "--out", str(out)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"Error: out={out}") and "a file" in lines[0], err
    assert blocker.read_text() == "not a folder\n" and sorted(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("err", [errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC])
@pytest.mark.parametrize("exists", [True, False])
def test_out_that_cannot_be_written_is_one_line_exit_1(
    quick, tmp_path, monkeypatch, err, exists
) -> None:
    """An immutable or read-only folder, or a full disk (simulated for this process, so it
    holds for root too): one line naming the folder and the OS error, exit 1, and the
    previous report left as it was."""
    from lshbench.cli import main

    results, _, _ = quick
    out = tmp_path / "reports"
    before = {}
    if exists:
        render([results], out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    refuse_writes_under(monkeypatch, out if exists else tmp_path, err)
    res = CliRunner().invoke(main, ["report", str(results), "--out", str(out)])
    monkeypatch.undo()
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith(f"Error: cannot write the report in {out}: "), lines[0]
    assert f"({errno.errorcode[err]})" in lines[0] and "Traceback" not in res.output
    now = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    assert now == before


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.4, 0.7, 0.99])
def test_a_disk_filling_up_mid_write_leaves_no_truncated_file(quick, tmp_path, fraction) -> None:
    """Files may not grow past a ``fraction`` of the report's largest file (a real write
    failure, EFBIG): one line, exit 1, and every file in the report folder is complete
    (equal to a full render)."""
    results, full, _ = quick
    limit = int(fraction * max(p.stat().st_size for p in full.iterdir()))
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "report", str(results), "--out", str(out)],
        capture_output=True, text=True, preexec_fn=limited_file_size(limit), timeout=300,
    )  # fmt: skip
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"Error: cannot write the report in {out}: "), lines[0]
    assert "Traceback" not in res.stderr
    left = sorted(out.iterdir()) if out.exists() else []
    assert not [p for p in left if p.name.startswith(".")], left  # no temporary file
    for path in left:
        assert path.read_bytes() == (full / path.name).read_bytes(), path.name
