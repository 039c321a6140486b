"""The accuracy figures of ``lshbench report``: error versus n_hashes / chunk length, and
accuracy against cost (the Pareto front with the error budgets).

Each ``figure_*`` function takes the tidy points of :mod:`lshbench.report.analysis` and
returns a :class:`~lshbench.report.plotting.Plot` (write it with
:func:`~lshbench.report.plotting.save`) or a :class:`~lshbench.report.plotting.Skipped`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lshbench.report.analysis import REFERENCE_BACKEND, REFERENCE_LSH_BACKEND
from lshbench.report.labels import plain
from lshbench.report.plotting import (
    CHUNK_MARKERS,
    Palette,
    Plot,
    Skipped,
    caption_with_slice,
    failure_markers,
    legend,
    length_tick,
    line_styles,
    slice_points,
    status_handles,
)
from lshbench.report.tradeoffs import BUDGETS, candidates, pareto_mask
from lshbench.util import fmt_seconds

__all__ = ["figure_error", "figure_pareto"]

#: The symbols of the hashing axes in labels (the report's legend: H = n_hashes, m = chunk).
_SYMBOL = {"chunk_len": "m", "n_hashes": "H"}
#: Axes held at one value in the error figures (besides the plotted and the line axis).
_ERROR_FIXED = (
    "causal", "dtype", "threads", "d", "dv", "chunks_before", "chunks_after", "chunk_len",
)  # fmt: skip


# --------------------------------------------------------------------------- 3, 4. error


def _error_points(points: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """LSH points of one backend per run (the reference LSH backend when present) with a
    measured error, and the backend chosen per run."""
    lsh = points[~points["exact"].astype(bool) & ~points["short"].astype(bool)]
    chosen, keep = {}, []
    for run, g in lsh.groupby("run", sort=False):
        measured = g[(g["status"] == "ok") & np.isfinite(g["rel_err"])]
        names = sorted(set(measured["backend"]))
        if names:
            preferred = REFERENCE_LSH_BACKEND in names
            chosen[str(run)] = REFERENCE_LSH_BACKEND if preferred else names[0]
            keep.append(g[g["backend"] == chosen[str(run)]])
    return (pd.concat(keep) if keep else lsh.iloc[:0]), chosen


def figure_error(
    points: pd.DataFrame, x: str, line: str, name: str, palette: Palette, varying: set[str]
) -> Plot | Skipped:
    """Relative error and mass recall versus ``x`` (n_hashes or chunk_len) at one L.

    One panel column per input distribution, one line per value of ``line`` (and run).
    L is the largest one where some run has two or more values of ``x``. ``name`` is the
    figure's key in :data:`~lshbench.report.plotting.FIGURE_FILES`.
    """
    pts, backends = _error_points(points)
    if pts.empty:
        return Skipped("no LSH rows with a measured error (rel_err)")
    fixed = [k for k in _ERROR_FIXED if k not in (x, line)]
    pts, ref = slice_points(pts, keep=fixed)
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
    styles = line_styles(sorted(set(ok[line].dropna())))
    xs = sorted(set(pts[x].dropna()))
    for j, input_name in enumerate(inputs):
        for i, metric in enumerate(metrics):
            ax = grid[i][j]
            g = ok[(ok["input"] == input_name) & np.isfinite(ok[metric])]
            _error_lines(ax, g, x, line, metric, styles, palette, varying)
            failed = at_l[(at_l["input"] == input_name) & (at_l["status"] != "ok")]
            colours = [styles.get(v, ("0.4", "o"))[0] for v in failed[line]]
            statuses |= failure_markers(ax, failed, x, colours)
            log_y = metric == "rel_err" and (g[metric] > 0).all() and not g.empty
            _error_axes(ax, xs, x, metric, log_y)
            ax.set_title(f"input={input_name}", fontsize=9)
    legend(grid[0][-1], status_handles(statuses))
    fig.tight_layout()
    used = ", ".join(
        sorted({f"{b} ({r})" if len(backends) > 1 else b for r, b in backends.items()})
    )
    caption = (
        f"Relative error (top) and attention-mass recall (bottom) versus {x} at L={plain(L)}, "
        f"one line per {line}, one panel per input; backend {used}."
    )
    return Plot(name, fig, caption_with_slice(caption, ref, varying))


def _error_lines(
    ax: Any,
    g: pd.DataFrame,
    x: str,
    line: str,
    metric: str,
    styles: dict[Any, tuple[Any, str]],
    palette: Palette,
    varying: set[str],
) -> None:
    """One line per (run, value of ``line``, n_buckets description): median ``metric``
    versus ``x``."""
    for (run, value, nb), h in g.groupby(["run", line, "nb_desc"], sort=True):
        h = h.groupby(x, as_index=False)[metric].median().sort_values(x)
        prefix = f"[{run}] " if "run" in varying else ""
        label = f"{prefix}{_SYMBOL.get(line, line)}={plain(value)}"
        if "nb" in varying and nb not in ("", "2L/m"):
            label += f" nb={nb}"
        colour, marker = styles[value]
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


def _error_axes(ax: Any, xs: Sequence[float], x: str, metric: str, log_y: bool) -> None:
    """Log2 x axis with ticks at the measured values; labels; grid."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("relative error (Frobenius)" if metric == "rel_err" else "mass recall")
    ax.grid(True, which="both", alpha=0.25)


# --------------------------------------------------------------------------- 5. Pareto


def _pick_lengths(lengths: Sequence[float], most: int = 4) -> list[float]:
    """Up to ``most`` lengths, evenly spread, always the smallest and the largest."""
    lengths = sorted(lengths)
    if len(lengths) <= most:
        return lengths
    index = np.unique(np.round(np.linspace(0, len(lengths) - 1, most)).astype(int))
    return [lengths[i] for i in index]


def figure_pareto(points: pd.DataFrame, palette: Palette, varying: set[str]) -> Plot | Skipped:
    """Relative error versus time per sequence per L, Pareto front drawn as a black step."""
    cand = candidates(points)
    if cand.empty:
        return Skipped("no ok rows with both a time and a relative error")
    keep = ("causal", "dtype", "threads", "d", "dv")  # one row of panels per input
    cand, slices = slice_points(cand, source=points, keep=keep)
    lsh = cand[~cand["exact"].astype(bool)]
    per_l = lsh.groupby(["run_index", "input", "seqlen"])["series"].nunique()
    rows = sorted({(r, i) for (r, i, _), n in per_l.items() if n >= 2})
    if not rows:
        return Skipped("no L has two or more LSH configurations with a time and an error")
    lengths = _pick_lengths(sorted({L for (_, _, L), n in per_l.items() if n >= 2}), most=3)
    chunk_values = sorted(set(lsh["chunk_len"].dropna()))
    chunk_marker = {v: CHUNK_MARKERS[i % len(CHUNK_MARKERS)] for i, v in enumerate(chunk_values)}
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
            ax.set_title(f"{run_text}input={input_name}, L={length_tick(L)}", fontsize=9)
            ax.set_xlabel("time per sequence")
            ax.set_ylabel("relative error")
    handles = _pareto_handles(lsh, palette, chunk_marker)
    grid[0][len(lengths) - 1].legend(
        handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False
    )
    fig.tight_layout()
    budgets = ", ".join(f"{100 * b:g}%" for b in BUDGETS)
    caption = (
        "Accuracy against cost, one row per input: each point is one LSH configuration; the "
        "black step is "
        "the Pareto front (nothing is both faster and more accurate); dotted lines are the error "
        f"budgets {budgets}; the dashed line is {REFERENCE_BACKEND}. Labels on the front: "
        "backend, H, m."
    )
    return Plot("pareto", fig, caption_with_slice(caption, slices, varying))


def _pareto_handles(
    lsh: pd.DataFrame, palette: Palette, chunk_marker: dict[float, str]
) -> list[Line2D]:
    """Legend of the Pareto panels: front, dense, one colour per (backend, H), one marker
    per chunk length."""
    handles = [Line2D([], [], color="black", lw=1.2, drawstyle="steps-post", label="Pareto front")]
    handles.append(
        Line2D(
            [], [], color="black", ls="--", lw=1.0, label=f"{REFERENCE_BACKEND} (exact, error 0)"
        )
    )
    keys = lsh.drop_duplicates(["backend", "n_hashes"]).sort_values(["backend", "n_hashes"])
    for _, row in keys.iterrows():
        label = f"{row['backend']} H={plain(row['n_hashes'])}"
        handles.append(
            Line2D([], [], marker="o", ls="none", color=palette.colour(row), label=label)
        )
    for value, marker in chunk_marker.items():
        handles.append(
            Line2D(
                [], [], marker=marker, ls="none", color="0.4", mfc="none", label=f"m={plain(value)}"
            )
        )
    return handles


def _pareto_panel(ax: Any, g: pd.DataFrame, palette: Palette, chunk_marker: dict) -> None:
    """One (input, L) panel: every LSH point, the front with labels, dense, the budgets."""
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
        _label_front(ax, front, g, lsh)
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


def _label_front(ax: Any, front: pd.DataFrame, g: pd.DataFrame, lsh: pd.DataFrame) -> None:
    """Name the configurations on the front (backend, H, m), skipping labels that would
    overlap the previous one."""
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
        text = f"{row['backend']} H={plain(row['n_hashes'])} m={plain(row['chunk_len'])}"
        right = math.log(row["time_seq"] / g["time_seq"].min()) / span_t > 0.6
        ax.annotate(
            text,
            (row["time_seq"], row["rel_err"]),
            xytext=(-5 if right else 5, 4 if i % 2 else -9),
            textcoords="offset points",
            ha="right" if right else "left",
            fontsize=6.5,
        )
