"""What the report's figures show, read from the Figures (not pixels): sizes and fonts that
read at the width the HTML shows them, units on the axes, the finding in the title, exact
errors at an axis floor, shared y ranges, legends with one entry per drawn style, no line
through a value that was not measured, no colliding tick labels; the file formats; the
notebook functions."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from test_report import dense_time, make_rows, write_results
from test_report_accuracy import t_lsh, variant_rows

from lshbench.report import figures as nb
from lshbench.report.plotting import DPI, MIN_FONT, Palette, figure_file, plain_number
from lshbench.results.columns import TRACEMALLOC_BLIND

NOTEBOOK = (
    nb.time_vs_seqlen,
    nb.memory_vs_seqlen,
    nb.error_vs_n_hashes,
    nb.error_vs_chunk_len,
    nb.pareto,
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    return write_results(tmp_path_factory.mktemp("figs") / "quick", make_rows())


@pytest.fixture(scope="module")
def frame(quick) -> pd.DataFrame:
    return nb.load_frame(quick)


def _exact_local_rows() -> list[dict]:
    """The variants fixture, with the local window exact (attn_tv 1e-17, as a window that
    covers the whole sequence) at L = 1024 on gaussian input."""
    rows = variant_rows()
    for r in rows:
        if r["method"] == "local" and r["seqlen"] == 1024 and r["input"] == "gaussian":
            r["attn_tv"] = 1e-17
    return rows


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> pd.DataFrame:
    folder = write_results(tmp_path_factory.mktemp("figs") / "variants", _exact_local_rows())
    return nb.load_frame(folder)


def _visible_texts(fig) -> list:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _x_tick_labels_overlap(fig, ax) -> bool:
    renderer = fig.canvas.get_renderer()  # an Agg canvas, drawn
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()
             if t.get_visible() and t.get_text()]  # fmt: skip
    boxes.sort(key=lambda b: b.x0)
    return any(a.x1 > b.x0 for a, b in itertools.pairwise(boxes))


@pytest.mark.parametrize("draw", NOTEBOOK, ids=lambda f: f.__name__)
def test_every_figure_reads_at_page_width(frame, variants, draw) -> None:
    """At most 1600 px wide at the PNG's dpi, no text under 8 pt, a title, labelled axes,
    and x tick labels that do not collide."""
    for data in (frame, variants):
        try:
            fig = draw(data)
        except nb.FigureSkipped:
            assert data is variants  # the variants hold no memory or chunk-length axis
            continue
        FigureCanvasAgg(fig).draw()  # lay it out as it is saved
        assert fig.get_size_inches()[0] * DPI <= 1600
        assert 150 <= DPI <= 200
        assert all(t.get_fontsize() >= MIN_FONT for t in _visible_texts(fig))
        assert fig.get_suptitle()
        shown = [ax for ax in fig.axes if ax.get_visible()]
        assert all(ax.get_ylabel() for ax in shown)
        assert any(ax.get_xlabel() for ax in shown)
        for ax in shown:
            assert not _x_tick_labels_overlap(fig, ax), (draw.__name__, ax.get_title())


def test_time_units_and_finding(frame) -> None:
    fig = nb.time_vs_seqlen(frame)
    assert all(ax.get_ylabel() == "time per sequence (ms)" for ax in fig.axes)
    title = fig.get_suptitle()
    best = min(t_fixture for t_fixture in _fixture_lsh_times(8192))
    assert f"{dense_time(8192) / best:.1f}x faster than the exact baseline (dense)" in title


def _fixture_lsh_times(L: int) -> list[float]:
    from test_report import HASHES, lsh_time

    return [lsh_time(b, H, 64, L) for b in ("numba", "numpy") for H in HASHES]


def test_memory_in_mib_and_panels_titled_by_what_differs(frame) -> None:
    fig = nb.memory_vs_seqlen(frame)
    axes = fig.axes
    titles = [ax.get_title() for ax in axes]
    assert len(set(titles)) == len(titles)  # no two panels say the same
    assert all(ax.get_ylabel().endswith("per call (MiB)") for ax in axes)
    points = frame[(frame["status"] == "ok") & (frame["backend"] == "dense")]
    points = points[points["input"] == "gaussian"].sort_values("seqlen")
    (dense,) = [ln for ln in axes[0].lines if ln.get_label() == "dense"]
    np.testing.assert_allclose(
        np.asarray(dense.get_ydata(), float), points["mem_alloc_peak_bytes"] / 2**20, rtol=1e-12
    )
    ylims = {}
    for ax in axes:  # one y range per measurement (row)
        ylims.setdefault(ax.get_title().split(",")[0], set()).add(ax.get_ylim())
    assert all(len(v) == 1 for v in ylims.values())


def test_exact_errors_sit_at_the_floor_marked_exact(variants) -> None:
    """A local window that is exact (attn_tv 1e-17) is drawn at the axis floor, labelled
    "exact", and the axis spans a few decades, not 16; all panels share the range."""
    fig = nb.pareto(variants)
    ax = next(a for a in fig.axes if a.get_title() == "input=gaussian, L=1K")
    low, high = ax.get_ylim()
    assert 1e-4 < low < 0.05 and high <= 1.5  # not stretched to 1e-17
    floor = next(v for v, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
                 if t.get_text() == "exact")  # fmt: skip
    assert low < floor < 0.05
    squares = [ln for ln in ax.lines if ln.get_marker() == "s" and len(ln.get_xdata()) == 1]
    assert squares and all(ln.get_ydata()[0] == floor for ln in squares)
    assert len({a.get_ylim() for a in fig.axes}) == 1  # one y range for every panel
    # the units of the time axis, and the finding in the title
    assert ax.get_xlabel() in ("time per sequence (ms)", "time per sequence (µs)")
    assert fig.get_suptitle() == "At L = 4K no LSH configuration is within attn_tv 0.1 on any input"


def test_error_figure_legend_has_one_entry_per_drawn_style(variants) -> None:
    fig = nb.error_vs_n_hashes(variants)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.texts]
    assert texts == [
        "LSH (hashed buckets)", "random keys, same budget", "local window, same budget",
        "multiplicity", "count-once",
    ]  # fmt: skip
    assert legend.handlelength >= 3  # long enough to tell a dash from a line
    styles = {ln.get_linestyle() for ax in fig.axes for ln in ax.lines if ln.get_label()[0] != "_"}
    assert styles == {"-", "--"}  # the two weightings the legend names, and nothing else
    tv_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("attn_tv")]
    assert len(tv_axes) == 3 and len({ax.get_ylim() for ax in tv_axes}) == 1
    assert "LSH" in fig.get_suptitle() and "H=8, L=4K" in fig.get_suptitle()


def _lines_skip_no_axis_value(ax, axis_values) -> bool:
    """Each drawn segment joins neighbouring axis values: none passes over a value."""
    for line in ax.lines:
        x = np.asarray(line.get_xdata(), float)
        y = np.asarray(line.get_ydata(), float)
        if len(x) < 2 or line.get_linestyle() in ("None", "none", ""):
            continue
        for a, b, ya, yb in zip(x, x[1:], y, y[1:], strict=False):
            if all(map(math.isfinite, (a, b, ya, yb))):
                if any(min(a, b) < v < max(a, b) for v in axis_values):
                    return False
    return True


def test_no_line_through_a_value_that_was_not_measured(tmp_path) -> None:
    """numba H=2 is not measured at L = 1024, a gap in the middle of the L axis: its line
    breaks there instead of passing over it. Likewise on the n_hashes axis."""
    rows = [r for r in make_rows(failures=False)
            if not (r["backend"] == "numba" and r["n_hashes"] == 2
                    and r["seqlen"] == 1024)]  # fmt: skip
    frame = nb.load_frame(write_results(tmp_path / "gap", rows))
    fig = nb.time_vs_seqlen(frame)
    lengths = sorted(set(frame["seqlen"]))
    for ax in fig.axes:
        assert _lines_skip_no_axis_value(ax, lengths)
        (gap,) = [ln for ln in ax.lines if ln.get_label() == "numba H=2"]
        x = np.asarray(gap.get_xdata(), float)
        assert 1024 not in x and np.isnan(x).sum() == 1  # one break, where 1024 would be
    rows = [r for r in variant_rows()
            if not (r["method"] == "lsh" and r["weighting"] == "multiplicity"
                    and r["n_hashes"] == 2)]  # fmt: skip
    frame = nb.load_frame(write_results(tmp_path / "gap2", rows))
    fig = nb.error_vs_n_hashes(frame)
    for ax in fig.axes:
        assert _lines_skip_no_axis_value(ax, [1, 2, 4, 8])
        (gap,) = [ln for ln in ax.lines if ln.get_label() == "lsh, multiplicity"]
        assert np.isnan(np.asarray(gap.get_xdata(), float)).sum() == 1  # broken at H=2


def test_notebook_functions_write_nothing_and_say_why_they_skip(frame, tmp_path) -> None:
    from matplotlib.figure import Figure

    before = set(Path.cwd().iterdir())
    for draw in NOTEBOOK:
        assert isinstance(draw(frame), Figure)
    assert set(Path.cwd().iterdir()) == before
    assert "Time per sequence" in nb.caption("time", frame)
    with pytest.raises(nb.FigureSkipped, match="batch x L fixed"):
        nb.time_per_token(frame)
    one = frame[frame["seqlen"] == 1024]
    with pytest.raises(nb.FigureSkipped, match="only one sequence length"):
        nb.time_vs_seqlen(one)
    assert set(nb.__all__) >= {f.__name__ for f in NOTEBOOK} | {"load_frame", "time_per_token"}


def test_formats_write_each_file_and_the_html_shows_png_or_svg(quick, tmp_path) -> None:
    from lshbench.report.document import render_report

    written = render_report([quick], tmp_path / "both", "png,svg,pdf")
    out = written.folder
    for fmt in ("png", "svg", "pdf"):
        assert (out / figure_file("time", fmt)).is_file()
        assert out / figure_file("time", fmt) in written.figures
    page = (out / "index.html").read_text()
    assert 'src="data:image/png;base64,' in page and "image/svg+xml" not in page
    written = render_report([quick], out, ("svg",))  # again, svg only: the others are removed
    assert out / "time_vs_seqlen.svg" in written.figures
    assert all(path.suffix == ".svg" for path in written.figures)
    assert not (out / "time_vs_seqlen.png").exists() and not (out / "pareto.pdf").exists()
    md = (out / "report.md").read_text()
    assert "](time_vs_seqlen.svg)" in md
    assert (out / "time_vs_seqlen.svg").read_text().lstrip().startswith("<?xml")
    page = (out / "index.html").read_text()
    assert 'src="data:image/svg+xml;base64,' in page and "image/png" not in page


def test_bad_format_is_one_line_and_exit_2(quick, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lshbench", "report", str(quick), "--out", str(tmp_path / "r"),
         "--format", "png,gif"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "format=png,gif" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_pareto_times_are_the_fixture_times_in_the_axis_unit(variants) -> None:
    fig = nb.pareto(variants)
    ax = next(a for a in fig.axes if a.get_title() == "input=clustered, L=4K")
    scale = {"(ms)": 1e3, "(µs)": 1e6}[ax.get_xlabel().split()[-1]]
    xs = sorted({round(ln.get_xdata()[0], 9) for ln in ax.lines
                 if ln.get_marker() == "o" and len(ln.get_xdata()) == 1})  # fmt: skip
    want = sorted({round(scale * t_lsh("lsh", H, 4096), 9) for H in (1, 2, 4, 8)})
    assert xs == want


def test_pareto_legend_names_no_exact_baseline_when_none_is_drawn(tmp_path) -> None:
    rows = [r for r in variant_rows() if r["backend"] != "dense"]
    fig = nb.pareto(nb.load_frame(write_results(tmp_path / "no-dense", rows)))
    legend = [t.get_text() for t in fig.legends[0].texts]
    assert "Pareto front (over LSH points)" in legend
    assert not any(t.startswith("exact baseline") for t in legend)
    assert not any(ln.get_linestyle() == "--" for ax in fig.axes for ln in ax.lines)


@pytest.mark.parametrize("n_series", [4, 9, 12, 18])
def test_lsh_series_are_never_grey(n_series: int) -> None:
    """Greys mark the exact backends, so no LSH series may be drawn in one, however many
    series there are; the series' colours stay distinct while there are colours left."""
    lsh = pd.DataFrame(
        {"backend": [f"b{i // 4}" for i in range(n_series)], "n_hashes": [float(i % 4 + 1)
         for i in range(n_series)], "exact": False, "run": "r", "run_index": 0}
    )  # fmt: skip
    exact = pd.DataFrame(
        {"backend": ["dense", "torch-sdpa"], "n_hashes": math.nan, "exact": True, "run": "r",
         "run_index": 0}
    )  # fmt: skip
    palette = Palette(pd.concat([lsh, exact], ignore_index=True))
    colours = [tuple(palette.colour(r)) for _, r in lsh.iterrows()]
    assert all(len({round(c, 3) for c in rgba[:3]}) > 1 for rgba in colours), colours
    assert len(set(colours)) == n_series
    assert palette.colour({"exact": True, "backend": "torch-sdpa"}) != colours[0]


def test_an_allocation_peak_tracemalloc_cannot_see_is_not_drawn(tmp_path: Path) -> None:
    """A backend allocating outside Python's allocator (torch on the CPU) has a tracemalloc
    peak that is only the NumPy conversions around its call: rows saying so lose it, so the
    allocation-peak panels draw no line for it and the resident-peak panels still do."""
    rows = make_rows()
    for r in rows:
        if r["backend"] == "dense":
            r["message"] = f"dense's {TRACEMALLOC_BLIND}: read mem_rss_peak_bytes"
    frame = nb.load_frame(write_results(tmp_path / "blind", rows))
    assert frame.loc[frame["backend"] == "dense", "mem_alloc_peak_bytes"].isna().all()
    assert frame.loc[frame["backend"] == "numba", "mem_alloc_peak_bytes"].notna().all()
    fig = nb.memory_vs_seqlen(frame)
    labels = {ax.get_title(): {ln.get_label() for ln in ax.lines} for ax in fig.axes}
    alloc = [t for t in labels if t.startswith("allocation peak")]
    resident = [t for t in labels if t.startswith("resident peak")]
    assert alloc and resident
    assert all("dense" not in labels[t] for t in alloc)
    assert all("dense" in labels[t] for t in resident)
    assert "allocation peak" not in fig.get_suptitle() or "dense" not in fig.get_suptitle()


@pytest.mark.parametrize(
    ("value", "text"), [(0.05, "0.05"), (0.2, "0.2"), (2.0, "2"), (500.0, "500"),
                        (1000.0, "1000"), (2000.0, "2000"), (50000.0, "50000")]
)  # fmt: skip
def test_log_ticks_are_plain_numbers(value: float, text: str) -> None:
    assert plain_number(value) == text


def _train_rows() -> list[dict]:
    """The quick fixture's rows at chunk 64 on two inputs, each also as a train row: twice
    the forward's time and memory, and gradient errors growing with 1/H."""
    rows = []
    for r in make_rows(failures=False):
        if r["backend"] == "numpy" or (r["backend"] == "numba" and r["chunk_len"] != 64):
            continue
        rows.append(dict(r, **{"pass": "forward"}))
        grads = (
            {}
            if r["backend"] == "dense"
            else {"grad_err_qk": 1 / r["n_hashes"], "grad_err_v": 0.5 / r["n_hashes"]}
        )
        rows.append(
            dict(
                r,
                **{"pass": "train"},
                time_median_s=2 * r["time_median_s"],
                mem_rss_peak_bytes=2 * r["mem_rss_peak_bytes"],
                **grads,
            )
        )
    return rows  # fmt: skip


def test_forward_and_train_side_by_side(tmp_path: Path) -> None:
    """A run with train rows: the time figure has one panel per pass, and the appendix puts
    each configuration's forward and train rows in one line, with the inputs as a column
    (they vary) and the train/forward ratio and gradient errors of the train row."""
    from lshbench.report.document import render_report

    folder = write_results(tmp_path / "train", _train_rows())
    fig = nb.time_vs_seqlen(nb.load_frame(folder))
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [
        "pass=forward", "pass=train"
    ]  # fmt: skip
    text = render_report([folder], tmp_path / "report").markdown.read_text()
    section = text.split("## Appendix: Forward and training step", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:2] == ["input", "backend"] and "train / forward" in header
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    col = {name: i for i, name in enumerate(header)}
    assert {row[col["input"]] for row in body} == {"clustered", "gaussian"}
    assert all(row[col["train / forward"]] == "2x" for row in body)
    numba_h8 = [row for row in body if row[col["backend"]] == "numba H=8"]
    assert numba_h8 and all(row[col["grad_err_qk"]] == "0.125" for row in numba_h8)
    dense = [row for row in body if row[col["backend"]] == "dense"]
    assert dense and all(row[col["grad_err_qk"]] == "-" for row in dense)
