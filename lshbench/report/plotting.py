"""What every figure of ``lshbench report`` shares: results, style, axes, slices, saving.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg, no display, no pyplot
state). A figure function returns a :class:`Plot` (the Figure and its caption, so tests can
read what it shows) or a :class:`Skipped` with the reason the data cannot support it; a
figure is never drawn empty. :func:`save` writes a Plot as PNG and turns it into a
:class:`Drawn` (file name and caption). Colours follow (backend, n_hashes) and markers follow
the run in every figure; failed cells (timeout, OOM, error, skipped) are drawn as markers
along the top edge of the panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from lshbench.report.analysis import REFERENCE_BACKEND, in_slice, reference_slice
from lshbench.report.labels import plain

__all__ = [
    "CHUNK_MARKERS",
    "FIGURE_FILES",
    "Drawn",
    "Palette",
    "Plot",
    "Skipped",
    "caption_with_slice",
    "failure_markers",
    "legend",
    "length_axis",
    "length_tick",
    "line_styles",
    "one_length_reason",
    "plain_log_ticks",
    "save",
    "slice_inputs",
    "slice_points",
    "slice_text",
    "status_handles",
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
_DPI = 110
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
    """A figure that was written: its file name (in the report folder) and caption."""

    file: str
    caption: str


@dataclass(frozen=True)
class Skipped:
    """A figure left out, and why."""

    reason: str


def save(result: Plot | Skipped, out_dir: Path) -> Drawn | Skipped:
    """Write a :class:`Plot` as ``out_dir / FIGURE_FILES[name]`` (PNG, no timestamp)."""
    if isinstance(result, Skipped):
        return result
    from lshbench.results.files import atomic_write

    file = FIGURE_FILES[result.name]
    figure = result.figure
    atomic_write(  # a temporary file renamed: never a truncated PNG
        out_dir / file,
        lambda tmp: figure.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None}),
    )
    return Drawn(file, result.caption)


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
    axis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


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
        cmap = colormaps["tab10" if len(keys) <= 10 else "tab20"]
        self._colours = {k: cmap(i % cmap.N) for i, k in enumerate(keys)}
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
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            frameon=False,
            **kw,
        )
    else:
        ax.legend(handles, labels, fontsize=7, **kw)


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
