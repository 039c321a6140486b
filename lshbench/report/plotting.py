"""What every figure of ``lshbench report`` shares: results, style, axes, slices, saving.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg, no display, no pyplot
state). A figure function returns a :class:`Plot` (the Figure and its caption, so tests can
read what it shows) or a :class:`Skipped` with the reason the data cannot support it; a
figure is never drawn empty. Drawing never writes a file: :func:`save` writes a Plot in each
of the :data:`FORMATS` asked (PNG at :data:`DPI` by default) and turns it into a
:class:`Drawn` (file names and caption). Every figure is at most :data:`WIDTH` inches wide
(1500 px at 150 dpi) with text of 8 pt or more, so that it reads at the width the HTML shows
it. Colours follow (backend, n_hashes) and markers follow
the run in every figure; failed cells (timeout, OOM, error, skipped) are drawn as markers
along the top edge of the panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from lshbench.report.analysis import REFERENCE_BACKEND, in_slice, reference_slice
from lshbench.report.labels import plain

__all__ = [
    "CHUNK_MARKERS",
    "DPI",
    "EXACT_BELOW",
    "FIGURE_FILES",
    "FORMATS",
    "MIN_FONT",
    "WIDTH",
    "Drawn",
    "Palette",
    "Plot",
    "Skipped",
    "at_floor",
    "bytes_unit",
    "caption_with_slice",
    "connect_measured",
    "error_floor",
    "failure_markers",
    "figure_file",
    "figure_legend",
    "floor_axis",
    "legend",
    "length_axis",
    "length_tick",
    "line_styles",
    "one_length_reason",
    "parse_formats",
    "plain_log_ticks",
    "plain_number",
    "save",
    "slice_inputs",
    "slice_points",
    "slice_text",
    "sparse_log_ticks",
    "status_handles",
    "tight",
    "time_unit",
]

#: Every file a report may hold, by figure; files of figures left out are removed.
FIGURE_FILES = {
    "time": "time_vs_seqlen.png",
    "memory": "memory_vs_seqlen.png",
    "error_hashes": "error_vs_n_hashes.png",
    "error_chunk": "error_vs_chunk_len.png",
    "pareto": "pareto.png",
    "task": "task_acc_vs_n_hashes.png",
    "paper": "time_per_token.png",
    "heads_tv": "heads_attn_tv.png",
    "heads_lsh_vs_local": "heads_lsh_vs_local.png",
}
#: The file formats ``lshbench report --format`` accepts; the first one asked that a browser
#: shows (PNG, else SVG) is the one the report embeds.
FORMATS = ("png", "svg", "pdf")
#: Resolution of raster figures (PNG), dots per inch: print quality at 10 inches = 1500 px.
DPI = 150
#: The widest a figure may be, inches (WIDTH x DPI = 1500 px).
WIDTH = 10.0
#: The smallest font size of any text in a figure, points.
MIN_FONT = 8.0
#: An error (attn_tv, rel_err) below this is exact up to rounding: drawn at the axis floor.
EXACT_BELOW = 1e-9
_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_RUN_LINES = ("-", "--", ":", "-.")
CHUNK_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
#: Grey shades of exact backends other than the reference (black), in order of name.
_EXACT_GREYS = ("0.45", "0.3", "0.6", "0.2", "0.7")
#: How a failed cell is drawn: (marker, filled).
_STATUS_MARKERS = {
    "timeout": ("^", True),
    "oom": ("v", True),
    "oom_predicted": ("v", False),
    "error": ("X", True),
    "skipped": ("o", False),
}


@dataclass(frozen=True)
class Plot:
    """A figure built but not yet written: its key in :data:`FIGURE_FILES`, the Figure and
    its caption."""

    name: str
    figure: Figure
    caption: str


@dataclass(frozen=True)
class Drawn:
    """A figure that was written: the file the report shows (in the report folder), its
    caption and every file written (one per format)."""

    file: str
    caption: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A figure left out, and why."""

    reason: str


def parse_formats(text: str) -> tuple[str, ...]:
    """``"png,svg"`` -> ("png", "svg"): the comma list of ``--format``, in :data:`FORMATS`
    order, duplicates dropped; ConfigError (one line naming the field) for anything else."""
    from lshbench.core.config import fail

    asked = [part.strip().lower() for part in str(text).split(",")]
    bad = [part for part in asked if part not in FORMATS]
    if not asked or bad or "" in asked:
        fail("format", text, f"must be a comma list of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in asked)


def figure_file(name: str, fmt: str = "png") -> str:
    """The file name of figure ``name`` (a key of :data:`FIGURE_FILES`) in format ``fmt``."""
    return str(Path(FIGURE_FILES[name]).with_suffix(f".{fmt}"))


def save(
    result: Plot | Skipped, out_dir: Path, formats: Sequence[str] = ("png",)
) -> Drawn | Skipped:
    """Write a :class:`Plot` as ``out_dir / figure_file(name, fmt)`` for each format (no
    timestamp in any). The :class:`Drawn` names the file the report shows: the PNG, else the
    SVG; a PNG is written too when neither is asked (``pdf`` alone), for the HTML."""
    if isinstance(result, Skipped):
        return result
    from lshbench.results.files import atomic_write

    wanted = [f for f in FORMATS if f in formats] or ["png"]
    if "png" not in wanted and "svg" not in wanted:
        wanted.insert(0, "png")
    figure = result.figure
    meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    files = []
    for fmt in wanted:
        file = figure_file(result.name, fmt)

        def write(tmp: str, fmt: str = fmt) -> None:
            figure.savefig(tmp, format=fmt, dpi=DPI, metadata=meta[fmt])

        with rc_context({"svg.hashsalt": "lshbench"}):  # SVG ids from the content, not random
            atomic_write(out_dir / file, write)  # a temporary file renamed: never truncated
        files.append(file)
    shown = next(f for f in files if f.endswith((".png", ".svg")))
    return Drawn(shown, result.caption, tuple(files))


def caption_with_slice(
    caption: str, slices: Mapping[str, Mapping[str, Any]], varying: set[str]
) -> str:
    """``caption`` followed by the slice text (when there is one)."""
    return " ".join(s for s in (caption, slice_text(slices, varying)) if s)


# --------------------------------------------------------------------------- style


def length_tick(x: float, _pos: Any = None) -> str:
    """Axis text for a sequence length: 1024 -> 1K, 65536 -> 64K, 96 -> 96."""
    if x <= 0 or not math.isfinite(x):
        return ""
    if x >= 1024 and x % 1024 == 0:
        return f"{int(x) // 1024}K"
    return f"{x:g}"


def length_axis(ax: Any, lengths: Sequence[float]) -> None:
    """Log2 x axis with ticks at the measured lengths."""
    ax.set_xscale("log", base=2)
    ticks = sorted({float(v) for v in lengths if math.isfinite(v) and v > 0})
    if ticks:
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(length_tick))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)


def plain_log_ticks(axis: Any) -> None:
    """Ticks of a log axis at 1, 2 and 5 times each power of ten, labelled as plain numbers
    (0.05, 0.1, 0.2) instead of powers of ten."""
    from matplotlib.ticker import LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _p: plain_number(v)))
    axis.set_minor_formatter(NullFormatter())


def plain_number(value: float) -> str:
    """A tick value without exponent: ``0.05``, ``2``, ``5000`` (whole numbers from 1000)."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def time_unit(seconds: Sequence[float] | pd.Series) -> tuple[float, str]:
    """(scale, unit) for times in seconds: the largest of s, ms and µs in which the median
    finite value is at least 1 (values x scale are in unit)."""
    median = _median_positive(seconds)
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs")):
        if median * scale >= 1:
            return scale, unit
    return 1e9, "ns"


def bytes_unit(sizes: Sequence[float] | pd.Series) -> tuple[float, str]:
    """(scale, unit) for sizes in bytes: KiB, MiB or GiB by the median finite value."""
    median = _median_positive(sizes)
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if median >= 1024**power:
            return 1.0 / 1024**power, unit
    return 1.0, "bytes"


def _median_positive(values: Sequence[float] | pd.Series) -> float:
    """The (upper) median of the finite positive ``values``; 1.0 when there is none."""
    found = sorted(float(v) for v in values if math.isfinite(float(v)) and float(v) > 0)
    return found[len(found) // 2] if found else 1.0


def connect_measured(
    axis_values: Sequence[float] | pd.Series,
    x: Sequence[float] | pd.Series,
    y: Sequence[float] | pd.Series | np.ndarray,
) -> tuple[list[float], list[float]]:
    """``x, y`` (sorted by x) with a NaN break wherever a value of the figure's axis
    (``axis_values``) lies between two consecutive points of this line: a line is drawn only
    between neighbouring values it was measured at, never through one it was not."""
    axis = sorted({float(v) for v in axis_values if math.isfinite(float(v))})
    xs: list[float] = []
    ys: list[float] = []
    for xi, yi in sorted(zip((float(v) for v in x), (float(v) for v in y), strict=True)):
        if xs and any(xs[-1] < a < xi for a in axis):
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(xi)
        ys.append(yi)
    return xs, ys


def error_floor(values: Sequence[float] | pd.Series, budgets: Sequence[float] = ()) -> float:
    """The floor of a log error axis: the power of ten below the smallest error that is not
    exact (>= :data:`EXACT_BELOW`) and below the budgets drawn. Exact errors are drawn at it
    (:func:`floor_axis`), so a result exact up to rounding (1e-17) does not stretch the axis
    over 16 decades."""
    inexact = [float(v) for v in values if math.isfinite(float(v)) and float(v) >= EXACT_BELOW]
    smallest = min([*inexact, *budgets], default=0.01)
    floor = 10.0 ** math.floor(math.log10(smallest))
    return floor / 10 if floor >= smallest else floor


def at_floor(values: Sequence[float] | pd.Series, floor: float) -> np.ndarray:
    """``values`` with every exact one (below :data:`EXACT_BELOW`) moved to ``floor``."""
    out = np.asarray(values, dtype=float).copy()
    out[np.isfinite(out) & (out < EXACT_BELOW)] = floor
    return out


def floor_axis(axis: Any, floor: float, top: float = 1.0) -> None:
    """A log error axis from ``floor`` to ``top`` with plain 1-2-5 tick labels, the floor
    labelled "exact" (where exact results are drawn, :func:`at_floor`)."""
    from matplotlib.ticker import FixedLocator

    ticks = [floor] + [t for t in _ticks_125(floor, top) if t > floor * 1.5]
    if len(ticks) > 6:
        ticks = [floor] + [t for t in ticks[1:] if _leading(t) == 1]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(
        FuncFormatter(lambda v, _p: "exact" if math.isclose(v, floor) else plain_number(v))
    )
    axis.set_minor_formatter(NullFormatter())
    low, high = floor / 1.6, top * 1.25
    if axis.axis_name == "y":
        axis.axes.set_ylim(low, high)
    else:
        axis.axes.set_xlim(low, high)


def _leading(v: float) -> int:
    return round(v / 10.0 ** math.floor(math.log10(v) + 1e-9))


def _ticks_125(lo: float, hi: float) -> list[float]:
    """1, 2 and 5 times each power of ten within [lo, hi]."""
    out = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = float(f"{m}e{e}")
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(v)
    return out


def sparse_log_ticks(axis: Any, lo: float, hi: float, most: int = 4) -> None:
    """Few labelled ticks on a log axis spanning [lo, hi], so that labels never collide in
    a narrow panel: powers of ten when the range spans more than about a decade, else 1-2-5
    values (at most ``most``); labels as plain numbers (``1000``, not ``1e+03``)."""
    from matplotlib.ticker import FixedLocator

    ticks = _ticks_125(lo, hi)
    decades = [t for t in ticks if _leading(t) == 1]
    if math.log10(hi / lo) > 1.2 and len(decades) >= 2:
        ticks = decades
    while len(ticks) > most:
        ticks = ticks[::2]
    if len(ticks) < 2:  # a range inside one 1-2-5 step: its ends
        ticks = [float(f"{lo * 1.05:.2g}"), float(f"{hi / 1.05:.2g}")]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _p: plain_number(v)))
    axis.set_minor_formatter(NullFormatter())


def figure_legend(fig: Figure, handles: Sequence[Any], ncol: int = 3) -> None:
    """One legend for the whole figure, below the panels: one entry per drawn style (colour,
    line style, marker, width; the first label of each), handles long enough to show their
    dash pattern."""
    seen: dict[str, Any] = {}
    styles = set()
    for h in handles:
        label = h.get_label()
        style = _style(h)
        if label and not label.startswith("_") and label not in seen and style not in styles:
            seen[label] = h
            styles.add(style)
    if not seen:
        return
    fig.set_layout_engine("constrained")  # "outside" legends need it
    fig.legend(
        list(seen.values()),
        list(seen),
        loc="outside lower center",
        ncol=max(1, min(ncol, len(seen))),
        fontsize=MIN_FONT,
        frameon=False,
        handlelength=3.5,
    )


def _style(handle: Any) -> tuple:
    """What tells a legend handle apart when drawn: colour, dashes, marker and its fill."""
    from matplotlib.colors import to_hex

    def colour(c: Any) -> str:
        return c if isinstance(c, str) and c == "none" else to_hex(c, keep_alpha=True)

    if isinstance(handle, Line2D):
        return (colour(handle.get_color()), handle.get_linestyle(), handle.get_marker(),
                colour(handle.get_markerfacecolor()), handle.get_linewidth())  # fmt: skip
    return (id(handle),)


def tight(fig: Figure) -> None:
    """Lay the panels out between the suptitle (wrapped to two lines when long) and the
    :func:`figure_legend` below them (matplotlib's constrained layout)."""
    import textwrap

    title = getattr(fig, "_suptitle", None)  # the suptitle's Text, keeping its font size
    if title is not None:
        title.set_text(textwrap.fill(title.get_text(), 120))
    fig.set_layout_engine("constrained", h_pad=0.06, w_pad=0.06)


class Palette:
    """Colour per (backend, n_hashes), marker per run; stable for a given points table.

    LSH backends get the colours of a qualitative map; the reference backend is black and
    any other exact backend a shade of grey.
    """

    def __init__(self, points: pd.DataFrame) -> None:
        from matplotlib import colormaps

        exact = points["exact"].astype(bool)
        lsh = points[~exact]
        keys = sorted(
            {(b, h) for b, h in zip(lsh["backend"], lsh["n_hashes"], strict=True)},
            key=lambda k: (k[0], k[1] if math.isfinite(k[1]) else math.inf),
        )
        # the qualitative maps without their greys, which belong to the exact backends
        name, greys = ("tab10", {7}) if len(keys) <= 9 else ("tab20", {14, 15})
        cmap = colormaps[name]
        colours = [cmap(i) for i in range(cmap.N) if i not in greys]
        self._colours = {k: colours[i % len(colours)] for i, k in enumerate(keys)}
        others = sorted(set(points.loc[exact, "backend"]) - {REFERENCE_BACKEND})
        self._exact = {b: _EXACT_GREYS[i % len(_EXACT_GREYS)] for i, b in enumerate(others)}
        self._exact[REFERENCE_BACKEND] = "black"
        runs = points.drop_duplicates("run").sort_values("run_index")["run"]
        self._markers = {r: _RUN_MARKERS[i % len(_RUN_MARKERS)] for i, r in enumerate(runs)}
        self._lines = {r: _RUN_LINES[i % len(_RUN_LINES)] for i, r in enumerate(runs)}

    def colour(self, row: Mapping[str, Any]) -> Any:
        if row["exact"]:
            return self._exact.get(row["backend"], "0.3")
        return self._colours.get((row["backend"], row["n_hashes"]), "0.5")

    def marker(self, run: str) -> str:
        return self._markers.get(run, "o")

    def line(self, run: str) -> str:
        return self._lines.get(run, "-")


def line_styles(values: Sequence[Any]) -> dict[Any, tuple[Any, str]]:
    """(colour, marker) per value of an ordered axis: viridis shades, distinct markers."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = max(len(values) - 1, 1)
    return {
        v: (cmap(0.9 * i / n), CHUNK_MARKERS[i % len(CHUNK_MARKERS)]) for i, v in enumerate(values)
    }


def failure_markers(ax: Any, failed: pd.DataFrame, x: str, colours: Sequence[Any]) -> set[str]:
    """Failed cells as markers on the top edge at their x; returns the statuses drawn."""
    if failed.empty:
        return set()
    transform = ax.get_xaxis_transform()  # x in data units, y in axes fraction
    for (_, row), colour in zip(failed.iterrows(), colours, strict=True):
        marker, filled = _STATUS_MARKERS.get(row["status"], ("X", True))
        ax.plot(
            [row[x]],
            [0.96],
            marker=marker,
            ms=8,
            transform=transform,
            clip_on=False,
            color=colour,
            mfc=colour if filled else "none",
            mew=1.5,
            ls="none",
        )
    return set(failed["status"])


def status_handles(statuses: set[str]) -> list[Line2D]:
    """Legend entries for the failure markers drawn."""
    handles = []
    for status in sorted(statuses):
        marker, filled = _STATUS_MARKERS.get(status, ("X", True))
        handles.append(
            Line2D(
                [],
                [],
                marker=marker,
                ls="none",
                color="0.3",
                mfc="0.3" if filled else "none",
                label=f"failed: {status} (top edge)",
            )
        )
    return handles


def legend(ax: Any, extra: Sequence[Line2D] = (), outside: bool = True, **kw: Any) -> None:
    """The axes' legend plus ``extra`` handles; right of the panel when ``outside``."""
    handles, labels = ax.get_legend_handles_labels()
    handles = list(handles) + list(extra)
    labels = list(labels) + [h.get_label() for h in extra]
    if not handles:
        return
    if outside:
        ax.legend(
            handles,
            labels,
            fontsize=MIN_FONT,
            handlelength=3.5,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            frameon=False,
            **kw,
        )
    else:
        ax.legend(handles, labels, fontsize=MIN_FONT, handlelength=3.5, **kw)


# --------------------------------------------------------------------------- slices


def slice_points(
    points: pd.DataFrame, source: pd.DataFrame | None = None, keep: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Points of the reference slice, and the slice used for each run.

    The slice is chosen over all runs (``source``, default ``points``) so that overlaid runs
    show the same configuration; a run with no ok point in it gets its own slice. ``keep``
    limits the axes that are fixed.
    """
    source = points if source is None else source

    def cut(ref: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in ref.items() if keep is None or k in keep}

    common = cut(reference_slice(source))
    masks, slices = [], {}
    for run, g in points.groupby("run", sort=False):
        ref = common
        mask = in_slice(g, ref)
        if not (g.loc[mask, "status"] == "ok").any():
            ref = cut(reference_slice(source[source["run"] == run]))
            mask = in_slice(g, ref)
        slices[str(run)] = ref
        masks.append(mask)
    mask = pd.concat(masks).reindex(points.index, fill_value=False)
    return points[mask], slices


def slice_inputs(slices: Mapping[str, Mapping[str, Any]]) -> str:
    """``"input=gaussian"`` (or ``"inputs=a, b"``): the input(s) a sliced figure shows."""
    inputs = sorted({str(ref["input"]) for ref in slices.values() if ref.get("input")})
    if not inputs:
        return "every input"
    return f"input={inputs[0]}" if len(inputs) == 1 else f"inputs={', '.join(inputs)}"


def slice_text(slices: Mapping[str, Mapping[str, Any]], varying: set[str]) -> str:
    """Caption text naming the fixed value of every axis that varies in the data."""
    texts: dict[str, list[str]] = {}
    for run, ref in slices.items():
        parts = []
        for col, value in ref.items():
            if col in varying and value is not None:
                parts.append(f"{col}={plain(value)}")
        texts.setdefault(", ".join(parts), []).append(run)
    if list(texts) == [""]:
        return ""
    if len(texts) == 1:
        return f"Slice shown: {next(iter(texts))}."
    return "Slice shown: " + "; ".join(f"{t} ({', '.join(r)})" for t, r in texts.items()) + "."


def one_length_reason(points: pd.DataFrame) -> str | None:
    """Why an L-axis figure is left out (a single sequence length), or None."""
    if points["seqlen"].nunique() >= 2:
        return None
    L = plain(points["seqlen"].iloc[0])
    return f"only one sequence length (L={L}) in the results; needs two or more"
