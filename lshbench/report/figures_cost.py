"""The cost figures of ``lshbench report``: time, memory and time per token versus L.

Each ``figure_*`` function takes the tidy points of :mod:`lshbench.report.analysis` and
returns a :class:`~lshbench.report.plotting.Plot` (write it with
:func:`~lshbench.report.plotting.save`) or a :class:`~lshbench.report.plotting.Skipped`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lshbench.report.analysis import REFERENCE_BACKEND, compact_labels
from lshbench.report.floor import draw_exact_floor
from lshbench.report.plotting import (
    Palette,
    Plot,
    Skipped,
    caption_with_slice,
    failure_markers,
    legend,
    length_axis,
    length_tick,
    one_length_reason,
    slice_inputs,
    slice_points,
    status_handles,
)

__all__ = ["figure_memory", "figure_time", "figure_time_per_token"]


# --------------------------------------------------------------------------- 1. time vs L


def figure_time(
    points: pd.DataFrame,
    fits: pd.DataFrame,
    cross: pd.DataFrame,
    palette: Palette,
    varying: set[str],
) -> Plot | Skipped:
    """Time per sequence versus L, log-log, one line per (run, backend, n_hashes).

    The legend carries the fitted exponent k; a star marks the crossover L against the exact
    baseline.
    """
    reason = one_length_reason(points)
    if reason:
        return Skipped(reason)
    sel, slices = slice_points(points)
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
        label = names[name] + (f"  (k={exps[name]:.2f})" if name in exps else "")
        mark = marks.loc[name] if name in marks.index else None
        _time_line(ax, ok[ok["series"] == name], label, mark, palette)
    floor_note = draw_exact_floor(ax, ok[ok["series"].isin(series)])
    failed = sel[(sel["status"] != "ok") & sel["series"].isin(series)]
    statuses = failure_markers(
        ax, failed, "seqlen", [palette.colour(r) for _, r in failed.iterrows()]
    )
    length_axis(ax, sel["seqlen"])
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("time per sequence (s) = time_median_s / batch")
    ax.grid(True, which="both", alpha=0.25)
    extra = status_handles(statuses)
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
                label="crossover: LSH faster than the exact baseline from here",
            )
        )
    legend(ax, extra)
    ax.set_title(
        f"Time versus sequence length, {slice_inputs(slices)} (k: fitted exponent, time ~ L^k)"
    )
    fig.tight_layout()
    caption = _time_caption(points, cross, marks) + floor_note
    return Plot("time", fig, caption_with_slice(caption, slices, varying))


def _time_line(
    ax: Any, g: pd.DataFrame, label: str, mark: pd.Series | None, palette: Palette
) -> None:
    """One series' times (rows of ``g``, sorted by L) and its crossover star, if measured."""
    row = g.iloc[0]
    colour = palette.colour(row)
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
    if mark is None:
        return
    ax.plot(
        [mark["crossover_L"]],
        [mark["crossover_time_seq"]],
        marker="*",
        ms=15,
        color=colour,
        mec="black",
        mew=0.7,
        ls="none",
        zorder=5,
    )
    ax.annotate(
        length_tick(round(mark["crossover_L"])),
        (mark["crossover_L"], mark["crossover_time_seq"]),
        xytext=(4, -11),
        textcoords="offset points",
        fontsize=7,
        color=colour,
    )


def _time_caption(points: pd.DataFrame, cross: pd.DataFrame, marks: pd.DataFrame) -> str:
    caption = "Time per sequence versus L, log-log."
    if not points["exact"].astype(bool).any():
        caption += " No exact rows: crossovers are not marked."
    else:
        caption += (
            " Stars: where LSH overtakes the exact baseline (the fastest exact backend at each"
            " L, crossover table)."
        )
        if marks.empty and not (cross["kind"] == "below").any():
            caption += " No LSH configuration overtakes it within the measured L."
    if (cross["kind"] == "below").any():
        caption += (
            " Configurations already faster than the exact baseline at the smallest L carry "
            "no star (crossover table: `<= L`)."
        )
    return caption


# --------------------------------------------------------------------------- 2. memory vs L

_MEMORY = (
    ("mem_alloc_peak_bytes", "allocation peak (tracemalloc)"),
    ("mem_rss_peak_bytes", "resident peak (VmHWM delta)"),
)


def figure_memory(points: pd.DataFrame, palette: Palette, varying: set[str]) -> Plot | Skipped:
    """Measured peak memory (solid) next to the analytic model (dashed), versus L.

    One row of panels per measurement (allocation peak, resident peak), one column per LSH
    backend, so that configurations whose memory does not depend on n_hashes (lines on top
    of each other) stay visible; exact backends are drawn in every panel for reference.
    """
    reason = one_length_reason(points)
    if reason:
        return Skipped(reason)
    sel, slices = slice_points(points)
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
            mine = good["exact"].astype(bool) | (good["backend"] == backend)
            failed = sel[(sel["status"] != "ok") & sel["series"].isin(good.loc[mine, "series"])]
            ax = grid[i][j]
            statuses = _memory_panel(ax, good[mine], col, names, failed, palette)
            length_axis(ax, sel["seqlen"])
            ax.set_yscale("log")
            ax.set_xlabel("sequence length L")
            ax.set_ylabel(f"{title}\nbytes per call", fontsize=8)
            ax.set_title(backend if backend != "exact" else "exact backends", fontsize=9)
            ax.grid(True, which="both", alpha=0.25)
            if i == 0:
                extra = [Line2D([], [], ls="--", color="0.3", label="analytic model")]
                legend(ax, extra + status_handles(statuses), outside=False, loc="upper left")
    fig.suptitle(f"Peak memory per call versus L, {slice_inputs(slices)}", fontsize=10)
    fig.tight_layout()
    caption = (
        "Peak memory per call versus L, measured (solid) and analytic model "
        f"(`mem_model_bytes`, dashed); one column per LSH backend, {REFERENCE_BACKEND} drawn "
        "in each."
    )
    return Plot("memory", fig, caption_with_slice(caption, slices, varying))


def _memory_panel(
    ax: Any,
    good: pd.DataFrame,
    col: str,
    names: dict[str, str],
    failed: pd.DataFrame,
    palette: Palette,
) -> set[str]:
    """Measured ``col`` (solid) and the model (dashed) of every series in ``good``; returns
    the failure statuses drawn."""
    for name in dict.fromkeys(good["series"]):
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
    colours = [palette.colour(r) for _, r in failed.iterrows()]
    return failure_markers(ax, failed, "seqlen", colours)


# --------------------------------------------------------------------------- 6. paper view


def figure_time_per_token(
    points: pd.DataFrame, palette: Palette, varying: set[str]
) -> Plot | Skipped:
    """Time per token versus L for series that hold ``batch * L`` fixed (Reformer Fig. 5)."""
    sel, slices = slice_points(points)
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
    statuses = failure_markers(
        ax, failed, "seqlen", [palette.colour(r) for _, r in failed.iterrows()]
    )
    length_axis(ax, sel[sel["series"].isin(series)]["seqlen"])
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L (batch = total tokens / L)")
    ax.set_ylabel("time per token (µs)")
    ax.grid(True, which="both", alpha=0.25)
    legend(ax, status_handles(statuses))
    total_text = ", ".join(str(t) for t in sorted(totals))
    ax.set_title(
        f"Time per token at fixed total tokens (batch x L = {total_text}), {slice_inputs(slices)}"
    )
    fig.tight_layout()
    shown = list(dict.fromkeys(ok[ok["series"].isin(series)]["run"]))
    caption = (
        f"The Reformer paper's view: time per token (time_median_s / (batch x L)) with batch x L "
        f"= {total_text} held fixed (run {', '.join(map(str, shown))}). Flat means linear cost "
        "in L." + _baseline_sentence(ok[ok["series"].isin(series)])
    )
    return Plot("paper", fig, caption_with_slice(caption, slices, varying))


def _baseline_sentence(shown: pd.DataFrame) -> str:
    """Which exact backend is the exact baseline among the shown points (the fastest exact
    point per run and L), with its GFLOP/s."""
    exact = shown[shown["exact"].astype(bool)]
    if exact.empty:
        return " No exact series holds batch x L fixed here, so no exact baseline is drawn."
    best = exact.loc[exact.groupby(["run", "seqlen"], sort=True)["time_tok"].idxmin()]
    names = "/".join(best["backend"].value_counts(sort=True).index)
    gflops = best["gflops"][np.isfinite(best["gflops"])]
    rate = ""
    if len(gflops):
        lo, hi = f"{gflops.min():.3g}", f"{gflops.max():.3g}"
        rate = f", at {lo if lo == hi else f'{lo}-{hi}'} GFLOP/s"
    return (
        f" Thick lines are exact attention; the exact baseline (the fastest exact point at "
        f"each L) is {names}{rate}."
    )
