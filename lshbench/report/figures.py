"""The PNG figures of ``lshbench report`` (matplotlib, Agg, no display, no pyplot state).

Each ``figure_*`` function takes the tidy points of :mod:`lshbench.report.analysis` and
either writes one PNG and returns a :class:`Drawn` (file name and caption), or returns a
:class:`Skipped` with the reason the data cannot support the figure; a figure is never drawn
empty. Colours follow (backend, n_hashes) and markers follow the run in every figure; failed
cells (timeout, OOM, error, skipped) are drawn as markers along the top edge of the panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lshbench.report.analysis import (
    BUDGETS,
    REFERENCE_BACKEND,
    candidates,
    compact_labels,
    in_slice,
    pareto_mask,
    reference_slice,
)
from lshbench.report.document import fmt_seconds

__all__ = [
    "FIGURE_FILES",
    "Drawn",
    "Skipped",
    "figure_error",
    "figure_memory",
    "figure_pareto",
    "figure_time",
    "figure_time_per_token",
    "slice_text",
]

#: Every file a report may hold, by figure; files of figures left out are removed.
FIGURE_FILES = {
    "time": "time_vs_seqlen.png",
    "memory": "memory_vs_seqlen.png",
    "error_hashes": "error_vs_n_hashes.png",
    "error_chunk": "error_vs_chunk_len.png",
    "pareto": "pareto.png",
    "paper": "time_per_token.png",
}
_DPI = 110
_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_RUN_LINES = ("-", "--", ":", "-.")
_CHUNK_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
#: How a failed cell is drawn: (marker, filled).
_STATUS_MARKERS = {
    "timeout": ("^", True),
    "oom": ("v", True),
    "oom_predicted": ("v", False),
    "error": ("X", True),
    "skipped": ("o", False),
}


@dataclass(frozen=True)
class Drawn:
    """A figure that was written: its file name (in the report folder) and caption."""

    file: str
    caption: str


@dataclass(frozen=True)
class Skipped:
    """A figure left out, and why."""

    reason: str


# --------------------------------------------------------------------------- style


def _fmt_length(x: float, _pos: Any = None) -> str:
    """Axis text for a sequence length: 1024 -> 1K, 65536 -> 64K, 96 -> 96."""
    if x <= 0 or not math.isfinite(x):
        return ""
    if x >= 1024 and x % 1024 == 0:
        return f"{int(x) // 1024}K"
    return f"{x:g}"


def _length_axis(ax: Any, lengths: Sequence[float]) -> None:
    """Log2 x axis with ticks at the measured lengths."""
    ax.set_xscale("log", base=2)
    ticks = sorted({float(v) for v in lengths if math.isfinite(v) and v > 0})
    if ticks:
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(_fmt_length))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)


class Palette:
    """Colour per (backend, n_hashes), marker per run; stable for a given points table."""

    def __init__(self, points: pd.DataFrame) -> None:
        from matplotlib import colormaps

        lsh = points[~points["exact"].astype(bool)]
        keys = sorted(
            {(b, h) for b, h in zip(lsh["backend"], lsh["n_hashes"], strict=True)},
            key=lambda k: (k[0], k[1] if math.isfinite(k[1]) else math.inf),
        )
        cmap = colormaps["tab10" if len(keys) <= 10 else "tab20"]
        self._colours = {k: cmap(i % cmap.N) for i, k in enumerate(keys)}
        self._exact = {REFERENCE_BACKEND: "black", "torch-sdpa": "0.45"}
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


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / FIGURE_FILES[name], dpi=_DPI, metadata={"Software": None})
    return FIGURE_FILES[name]


def _failure_markers(ax: Any, failed: pd.DataFrame, x: str, colours: Sequence[Any]) -> set[str]:
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


def _status_handles(statuses: set[str]) -> list[Line2D]:
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


def _slice_points(
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


def slice_text(slices: Mapping[str, Mapping[str, Any]], varying: set[str]) -> str:
    """Caption text naming the fixed value of every axis that varies in the data."""
    texts: dict[str, list[str]] = {}
    for run, ref in slices.items():
        parts = []
        for col, value in ref.items():
            if col in varying and value is not None:
                parts.append(f"{col}={_text(value)}")
        texts.setdefault(", ".join(parts), []).append(run)
    if list(texts) == [""]:
        return ""
    if len(texts) == 1:
        return f"Slice shown: {next(iter(texts))}."
    return "Slice shown: " + "; ".join(f"{t} ({', '.join(r)})" for t, r in texts.items()) + "."


def _text(value: Any) -> str:
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def _legend(ax: Any, extra: Sequence[Line2D] = (), outside: bool = True, **kw: Any) -> None:
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


# --------------------------------------------------------------------------- 1. time vs L


def figure_time(
    points: pd.DataFrame,
    fits: pd.DataFrame,
    cross: pd.DataFrame,
    palette: Palette,
    varying: set[str],
    out_dir: Path,
) -> Drawn | Skipped:
    """Time per sequence versus L, log-log, one line per (run, backend, n_hashes).

    The legend carries the fitted exponent k; a star marks the crossover L against dense.
    """
    if points["seqlen"].nunique() < 2:
        L = _text(points["seqlen"].iloc[0])
        return Skipped(f"only one sequence length (L={L}) in the results; needs two or more")
    sel, slices = _slice_points(points)
    ok = sel[(sel["status"] == "ok") & np.isfinite(sel["time_seq"]) & (sel["time_seq"] > 0)]
    counts = ok.groupby("series")["seqlen"].nunique()
    series = [s for s in dict.fromkeys(ok["series"]) if counts.get(s, 0) >= 2]
    if not series:
        return Skipped("no configuration has ok timings at two or more sequence lengths")
    exps = dict(zip(fits["series"], fits["exponent"], strict=True))
    marks = cross[cross["kind"] == "measured"].set_index("series")
    names = compact_labels(sel[sel["series"].isin(series)])
    fig = Figure(figsize=(10.5, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    for name in series:
        g = ok[ok["series"] == name]
        row = g.iloc[0]
        colour = palette.colour(row)
        label = names[name] + (f"  (k={exps[name]:.2f})" if name in exps else "")
        ax.plot(
            g["seqlen"],
            g["time_seq"],
            marker=palette.marker(row["run"]),
            color=colour,
            ls=palette.line(row["run"]),
            lw=2.2 if row["backend"] == REFERENCE_BACKEND else 1.4,
            ms=5,
            label=label,
        )
        if name in marks.index:
            m = marks.loc[name]
            ax.plot(
                [m["crossover_L"]],
                [m["crossover_time_seq"]],
                marker="*",
                ms=15,
                color=colour,
                mec="black",
                mew=0.7,
                ls="none",
                zorder=5,
            )
            ax.annotate(
                _fmt_length(round(m["crossover_L"])),
                (m["crossover_L"], m["crossover_time_seq"]),
                xytext=(4, -11),
                textcoords="offset points",
                fontsize=7,
                color=colour,
            )
    failed = sel[(sel["status"] != "ok") & sel["series"].isin(series)]
    statuses = _failure_markers(
        ax, failed, "seqlen", [palette.colour(r) for _, r in failed.iterrows()]
    )
    _length_axis(ax, sel["seqlen"])
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("time per sequence (s) = time_median_s / batch")
    ax.grid(True, which="both", alpha=0.25)
    extra = _status_handles(statuses)
    if not marks.empty:
        extra.append(
            Line2D(
                [],
                [],
                marker="*",
                ms=10,
                ls="none",
                color="0.5",
                mec="black",
                label="crossover: LSH faster than dense from here",
            )
        )
    _legend(ax, extra)
    ax.set_title("Time versus sequence length (k: fitted exponent, time ~ L^k)")
    fig.tight_layout()
    file = _save(fig, out_dir, "time")
    caption = "Time per sequence versus L, log-log."
    if not (points["backend"] == REFERENCE_BACKEND).any():
        caption += " No dense rows: crossovers are not marked."
    elif marks.empty and not (cross["kind"] == "below").any():
        caption += " No LSH configuration overtakes dense within the measured L."
    if (cross["kind"] == "below").any():
        caption += (
            " Configurations already faster than dense at the smallest L carry no star "
            "(crossover table: `<= L`)."
        )
    return Drawn(file, " ".join(x for x in (caption, slice_text(slices, varying)) if x))


# --------------------------------------------------------------------------- 2. memory vs L

_MEMORY = (
    ("mem_alloc_peak_bytes", "allocation peak (tracemalloc)"),
    ("mem_rss_peak_bytes", "resident peak (VmHWM delta)"),
)


def figure_memory(
    points: pd.DataFrame, palette: Palette, varying: set[str], out_dir: Path
) -> Drawn | Skipped:
    """Measured peak memory (solid) next to the analytic model (dashed), versus L.

    One row of panels per measurement (allocation peak, resident peak), one column per LSH
    backend, so that configurations whose memory does not depend on n_hashes (lines on top
    of each other) stay visible; exact backends are drawn in every panel for reference.
    """
    if points["seqlen"].nunique() < 2:
        L = _text(points["seqlen"].iloc[0])
        return Skipped(f"only one sequence length (L={L}) in the results; needs two or more")
    sel, slices = _slice_points(points)
    ok = sel[sel["status"] == "ok"]
    metrics = []
    for col, title in _MEMORY:
        good = ok[np.isfinite(ok[col]) & (ok[col] > 0)]
        counts = good.groupby("series")["seqlen"].nunique()
        series = [s for s in dict.fromkeys(good["series"]) if counts[s] >= 2]
        if series:
            metrics.append((col, title, good[good["series"].isin(series)]))
    if not metrics:
        return Skipped("no configuration has a measured memory peak at two or more L")
    shown = pd.concat([m[2] for m in metrics])
    names = compact_labels(shown)
    columns = sorted(set(shown.loc[~shown["exact"].astype(bool), "backend"])) or ["exact"]
    fig = Figure(figsize=(4.6 * len(columns) + 2.8, 3.7 * len(metrics)))
    grid = fig.subplots(len(metrics), len(columns), squeeze=False)
    for i, (col, title, good) in enumerate(metrics):
        for j, backend in enumerate(columns):
            ax = grid[i][j]
            mine = good["exact"].astype(bool) | (good["backend"] == backend)
            for name in dict.fromkeys(good.loc[mine, "series"]):
                g = good[good["series"] == name]
                row = g.iloc[0]
                colour = palette.colour(row)
                ax.plot(
                    g["seqlen"],
                    g[col],
                    marker=palette.marker(row["run"]),
                    color=colour,
                    ms=4,
                    lw=1.4,
                    label=names[name],
                )
                model = g[np.isfinite(g["mem_model_bytes"]) & (g["mem_model_bytes"] > 0)]
                ax.plot(model["seqlen"], model["mem_model_bytes"], ls="--", color=colour, lw=1.0)
            failed = sel[(sel["status"] != "ok") & sel["series"].isin(good.loc[mine, "series"])]
            colours = [palette.colour(r) for _, r in failed.iterrows()]
            statuses = _failure_markers(ax, failed, "seqlen", colours)
            _length_axis(ax, sel["seqlen"])
            ax.set_yscale("log")
            ax.set_xlabel("sequence length L")
            ax.set_ylabel(f"{title}\nbytes per call", fontsize=8)
            ax.set_title(backend if backend != "exact" else "exact backends", fontsize=9)
            ax.grid(True, which="both", alpha=0.25)
            if i == 0:
                extra = [Line2D([], [], ls="--", color="0.3", label="analytic model")]
                _legend(ax, extra + _status_handles(statuses), outside=False, loc="upper left")
    fig.tight_layout()
    file = _save(fig, out_dir, "memory")
    caption = (
        "Peak memory per call versus L, measured (solid) and analytic model "
        "(`mem_model_bytes`, dashed); one column per LSH backend, dense drawn in each."
    )
    return Drawn(file, " ".join(x for x in (caption, slice_text(slices, varying)) if x))


# --------------------------------------------------------------------------- 3, 4. error


def _error_points(points: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """LSH points of one backend per run (numpy when present) with a measured error."""
    lsh = points[~points["exact"].astype(bool) & ~points["short"].astype(bool)]
    chosen, keep = {}, []
    for run, g in lsh.groupby("run", sort=False):
        measured = g[(g["status"] == "ok") & np.isfinite(g["rel_err"])]
        names = sorted(set(measured["backend"]))
        if names:
            chosen[str(run)] = "numpy" if "numpy" in names else names[0]
            keep.append(g[g["backend"] == chosen[str(run)]])
    return (pd.concat(keep) if keep else lsh.iloc[:0]), chosen


def figure_error(
    points: pd.DataFrame,
    x: str,
    line: str,
    name: str,
    palette: Palette,
    varying: set[str],
    out_dir: Path,
) -> Drawn | Skipped:
    """Relative error and mass recall versus ``x`` (n_hashes or chunk_len) at one L.

    One panel column per input distribution, one line per value of ``line`` (and run).
    L is the largest one where some run has two or more values of ``x``.
    """
    pts, backends = _error_points(points)
    if pts.empty:
        return Skipped("no LSH rows with a measured error (rel_err)")
    fixed = [
        k
        for k in (
            "causal",
            "dtype",
            "threads",
            "d",
            "dv",
            "chunks_before",
            "chunks_after",
            "chunk_len",
        )
        if k not in (x, line)
    ]
    pts, ref = _slice_points(pts, keep=fixed)
    ok = pts[(pts["status"] == "ok") & np.isfinite(pts["rel_err"])]
    spread = ok.groupby(["run", "input", "seqlen"])[x].nunique()
    lengths = sorted({k[2] for k, n in spread.items() if n >= 2})
    if not lengths:
        return Skipped(f"every configuration has a single {x}; needs two or more at one L")
    L = lengths[-1]
    ok, at_l = ok[ok["seqlen"] == L], pts[pts["seqlen"] == L]
    inputs = sorted(set(ok["input"]))
    metrics = [m for m in ("rel_err", "mass_recall") if np.isfinite(ok[m]).any()]
    fig = Figure(figsize=(4.3 * len(inputs) + 2.8, 3.4 * len(metrics)))
    grid = fig.subplots(len(metrics), len(inputs), squeeze=False)
    statuses: set[str] = set()
    line_styles = _line_styles(sorted(set(ok[line].dropna())))
    for j, input_name in enumerate(inputs):
        for i, metric in enumerate(metrics):
            ax = grid[i][j]
            g = ok[(ok["input"] == input_name) & np.isfinite(ok[metric])]
            for (run, value, nb), h in g.groupby(["run", line, "nb_desc"], sort=True):
                h = h.groupby(x, as_index=False)[metric].median().sort_values(x)
                prefix = f"[{run}] " if "run" in varying else ""
                label = f"{prefix}{_short(line)}={_text(value)}"
                if "nb" in varying and nb not in ("", "2L/m"):
                    label += f" nb={nb}"
                colour, marker = line_styles[value]
                ax.plot(
                    h[x],
                    h[metric],
                    marker=marker,
                    ls=palette.line(str(run)),
                    color=colour,
                    lw=1.4,
                    ms=5,
                    label=label,
                )
            failed = at_l[(at_l["input"] == input_name) & (at_l["status"] != "ok")]
            colours = [line_styles.get(v, ("0.4", "o"))[0] for v in failed[line]]
            statuses |= _failure_markers(ax, failed, x, colours)
            xs = sorted(set(pts[x].dropna()))
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            if metric == "rel_err" and (g[metric] > 0).all() and not g.empty:
                ax.set_yscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel("relative error (Frobenius)" if metric == "rel_err" else "mass recall")
            ax.set_title(f"input={input_name}", fontsize=9)
            ax.grid(True, which="both", alpha=0.25)
    _legend(grid[0][-1], _status_handles(statuses))
    fig.tight_layout()
    file = _save(fig, out_dir, name)
    used = ", ".join(
        sorted({f"{b} ({r})" if len(backends) > 1 else b for r, b in backends.items()})
    )
    caption = (
        f"Relative error (top) and attention-mass recall (bottom) versus {x} at L={_text(L)}, "
        f"one line per {line}, one panel per input; backend {used}."
    )
    return Drawn(file, " ".join(s for s in (caption, slice_text(ref, varying)) if s))


def _short(col: str) -> str:
    return {"chunk_len": "m", "n_hashes": "H"}.get(col, col)


def _line_styles(values: Sequence[Any]) -> dict[Any, tuple[Any, str]]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = max(len(values) - 1, 1)
    return {
        v: (cmap(0.9 * i / n), _CHUNK_MARKERS[i % len(_CHUNK_MARKERS)])
        for i, v in enumerate(values)
    }


# --------------------------------------------------------------------------- 5. Pareto


def _pick_lengths(lengths: Sequence[float], most: int = 4) -> list[float]:
    """Up to ``most`` lengths, evenly spread, always the smallest and the largest."""
    lengths = sorted(lengths)
    if len(lengths) <= most:
        return lengths
    index = np.unique(np.round(np.linspace(0, len(lengths) - 1, most)).astype(int))
    return [lengths[i] for i in index]


def figure_pareto(
    points: pd.DataFrame, palette: Palette, varying: set[str], out_dir: Path
) -> Drawn | Skipped:
    """Relative error versus time per sequence per L, Pareto front drawn as a black step."""
    cand = candidates(points)
    if cand.empty:
        return Skipped("no ok rows with both a time and a relative error")
    keep = ("causal", "dtype", "threads", "d", "dv")  # one row of panels per input
    cand, slices = _slice_points(cand, source=points, keep=keep)
    lsh = cand[~cand["exact"].astype(bool)]
    per_l = lsh.groupby(["run_index", "input", "seqlen"])["series"].nunique()
    rows = sorted({(r, i) for (r, i, _), n in per_l.items() if n >= 2})
    if not rows:
        return Skipped("no L has two or more LSH configurations with a time and an error")
    lengths = _pick_lengths(sorted({L for (_, _, L), n in per_l.items() if n >= 2}), most=3)
    chunk_values = sorted(set(lsh["chunk_len"].dropna()))
    chunk_marker = {v: _CHUNK_MARKERS[i % len(_CHUNK_MARKERS)] for i, v in enumerate(chunk_values)}
    run_names = dict(zip(cand["run_index"], cand["run"], strict=True))
    several = len({r for r, _ in rows}) > 1
    fig = Figure(figsize=(4.4 * len(lengths) + 2.4, 3.5 * len(rows)))
    grid = fig.subplots(len(rows), len(lengths), squeeze=False)
    for i, (run_index, input_name) in enumerate(rows):
        for j, L in enumerate(lengths):
            ax = grid[i][j]
            g = cand[(cand["run_index"] == run_index) & (cand["input"] == input_name)]
            g = g[g["seqlen"] == L]
            if g.empty:
                ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            _pareto_panel(ax, g, palette, chunk_marker)
            run_text = f"[{run_names[run_index]}] " if several else ""
            ax.set_title(f"{run_text}input={input_name}, L={_fmt_length(L)}", fontsize=9)
            ax.set_xlabel("time per sequence")
            ax.set_ylabel("relative error")
    ncols = len(lengths)
    handles = [Line2D([], [], color="black", lw=1.2, drawstyle="steps-post", label="Pareto front")]
    handles.append(Line2D([], [], color="black", ls="--", lw=1.0, label="dense (exact, error 0)"))
    keys = lsh.drop_duplicates(["backend", "n_hashes"]).sort_values(["backend", "n_hashes"])
    for _, row in keys.iterrows():
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="none",
                color=palette.colour(row),
                label=f"{row['backend']} H={_text(row['n_hashes'])}",
            )
        )
    for value, marker in chunk_marker.items():
        handles.append(
            Line2D(
                [], [], marker=marker, ls="none", color="0.4", mfc="none", label=f"m={_text(value)}"
            )
        )
    grid[0][ncols - 1].legend(
        handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False
    )
    fig.tight_layout()
    file = _save(fig, out_dir, "pareto")
    budgets = ", ".join(f"{100 * b:g}%" for b in BUDGETS)
    caption = (
        "Accuracy against cost, one row per input: each point is one LSH configuration; the "
        "black step is "
        "the Pareto front (nothing is both faster and more accurate); dotted lines are the error "
        f"budgets {budgets}; the dashed line is dense. Labels on the front: backend, H, m."
    )
    return Drawn(file, " ".join(s for s in (caption, slice_text(slices, varying)) if s))


def _pareto_panel(ax: Any, g: pd.DataFrame, palette: Palette, chunk_marker: dict) -> None:
    lsh = g[~g["exact"].astype(bool)].sort_values(["series_order"], kind="mergesort")
    for _, row in lsh.iterrows():
        ax.plot(
            [row["time_seq"]],
            [row["rel_err"]],
            marker=chunk_marker.get(row["chunk_len"], "o"),
            color=palette.colour(row),
            ms=6,
            ls="none",
            alpha=0.85,
        )
    front = lsh[pareto_mask(lsh["time_seq"], lsh["rel_err"])].sort_values("time_seq")
    if len(front):
        ax.plot(front["time_seq"], front["rel_err"], color="black", lw=1.2, drawstyle="steps-post")
        span_t = np.ptp(np.log(g["time_seq"])) or 1.0
        errors = np.concatenate([lsh["rel_err"].clip(lower=1e-12), BUDGETS])  # y range drawn
        span_e = np.ptp(np.log(errors)) or 1.0
        last = None
        for i, (_, row) in enumerate(front.iterrows()):
            here = (
                math.log(row["time_seq"]) / span_t,
                math.log(max(row["rel_err"], 1e-12)) / span_e,
            )
            if last is not None and math.dist(here, last) < 0.12:
                continue  # too close to the previous label to read
            last = here
            text = f"{row['backend']} H={_text(row['n_hashes'])} m={_text(row['chunk_len'])}"
            right = math.log(row["time_seq"] / g["time_seq"].min()) / span_t > 0.6
            ax.annotate(
                text,
                (row["time_seq"], row["rel_err"]),
                xytext=(-5 if right else 5, 4 if i % 2 else -9),
                textcoords="offset points",
                ha="right" if right else "left",
                fontsize=6.5,
            )
    dense = g[g["backend"] == REFERENCE_BACKEND]
    for t in sorted(set(dense["time_seq"])):
        ax.axvline(t, color="black", ls="--", lw=1.0)
    if (lsh["rel_err"] > 0).all() and len(lsh):
        ax.set_yscale("log")
    for b in BUDGETS:
        ax.axhline(b, color="0.5", ls=":", lw=0.9)
        ax.annotate(
            f"{100 * b:g}%",
            (1.0, b),
            xycoords=("axes fraction", "data"),
            xytext=(-2, 2),
            textcoords="offset points",
            ha="right",
            fontsize=6.5,
            color="0.4",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_seconds(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.2)


# --------------------------------------------------------------------------- 6. paper view


def figure_time_per_token(
    points: pd.DataFrame, palette: Palette, varying: set[str], out_dir: Path
) -> Drawn | Skipped:
    """Time per token versus L for series that hold ``batch * L`` fixed (Reformer Fig. 5)."""
    sel, slices = _slice_points(points)
    ok = sel[(sel["status"] == "ok") & np.isfinite(sel["time_tok"]) & (sel["time_tok"] > 0)]
    stats = ok.groupby("series").agg(n=("seqlen", "nunique"), tokens=("tokens", "nunique"))
    series = [
        s
        for s in dict.fromkeys(ok["series"])
        if stats.loc[s, "n"] >= 2 and stats.loc[s, "tokens"] == 1
    ]
    if not series:
        return Skipped(
            "no configuration holds batch x L fixed over two or more L "
            "(fixed total tokens; the `paper` sweep preset does)"
        )
    names = compact_labels(sel[sel["series"].isin(series)])
    fig = Figure(figsize=(10.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    totals = set()
    for name in series:
        g = ok[ok["series"] == name]
        row = g.iloc[0]
        totals.add(int(row["tokens"]))
        ax.plot(
            g["seqlen"],
            g["time_tok"] * 1e6,
            marker=palette.marker(row["run"]),
            ls=palette.line(row["run"]),
            color=palette.colour(row),
            lw=2.2 if row["exact"] else 1.4,
            ms=5,
            label=names[name],
        )
    failed = sel[(sel["status"] != "ok") & sel["series"].isin(series)]
    statuses = _failure_markers(
        ax, failed, "seqlen", [palette.colour(r) for _, r in failed.iterrows()]
    )
    _length_axis(ax, sel[sel["series"].isin(series)]["seqlen"])
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L (batch = total tokens / L)")
    ax.set_ylabel("time per token (µs)")
    ax.grid(True, which="both", alpha=0.25)
    _legend(ax, _status_handles(statuses))
    total_text = ", ".join(str(t) for t in sorted(totals))
    ax.set_title(f"Time per token at fixed total tokens (batch x L = {total_text})")
    fig.tight_layout()
    file = _save(fig, out_dir, "paper")
    shown = list(dict.fromkeys(ok[ok["series"].isin(series)]["run"]))
    caption = (
        f"The Reformer paper's view: time per token (time_median_s / (batch x L)) with batch x L "
        f"= {total_text} held fixed (run {', '.join(map(str, shown))}). Flat means linear cost "
        "in L."
    )
    return Drawn(file, " ".join(s for s in (caption, slice_text(slices, varying)) if s))
