"""The cost figures of ``lshbench report``: time, memory and time per token versus L.

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

from lshbench.report.analysis import (
    REFERENCE_BACKEND,
    canon,
    compact_labels,
    in_slice,
    reference_slice,
)
from lshbench.report.floor import draw_exact_floor
from lshbench.report.labels import plain
from lshbench.report.plotting import (
    MIN_FONT,
    WIDTH,
    Palette,
    Plot,
    Skipped,
    bytes_unit,
    caption_with_slice,
    connect_measured,
    failure_markers,
    figure_legend,
    length_axis,
    length_tick,
    one_length_reason,
    plain_log_ticks,
    slice_inputs,
    slice_points,
    status_handles,
    tight,
    time_unit,
)

__all__ = ["figure_memory", "figure_time", "figure_time_per_token"]


# --------------------------------------------------------------------------- panels

#: Axes the time figure draws one panel per value of (in this order, while the panels stay
#: at most :data:`_MOST_PANELS`); every other axis is held at the reference slice.
_PANEL_AXES = (
    "method", "weighting", "pass", "device", "chunk_len", "chunks_before", "chunks_after",
    "causal", "dtype", "threads", "d", "dv",
)  # fmt: skip
_MOST_PANELS = 6


def _panel_axes(points: pd.DataFrame) -> list[str]:
    """The axes of :data:`_PANEL_AXES` that vary among the ok LSH points (at most
    :data:`_MOST_PANELS` combinations of their values)."""
    lsh = points[(points["status"] == "ok") & ~points["exact"].astype(bool)]
    chosen, n = [], 1
    for col in _PANEL_AXES:
        k = lsh[col].map(canon).replace("", np.nan).nunique()
        if k > 1 and n * k <= _MOST_PANELS:
            chosen.append(col)
            n *= k
    return chosen


def _panels(
    sel: pd.DataFrame, axes: list[str], slices: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The combinations of ``axes`` present among the ok LSH points of ``sel``, the
    reference slice's values first."""
    if not axes:
        return [{}]
    lsh = sel[(sel["status"] == "ok") & ~sel["exact"].astype(bool)]
    first = reference_slice(sel)

    def order(combo: tuple) -> tuple:
        pairs = zip(axes, combo, strict=True)
        return tuple((canon(v) != canon(first.get(c)), canon(v)) for c, v in pairs)

    combos = {tuple(r) for r in lsh[axes].itertuples(index=False, name=None)}
    return [dict(zip(axes, c, strict=True)) for c in sorted(combos, key=order)]


def _panel_title(panel: dict[str, Any]) -> str:
    """What sets a panel apart: ``method=lsh, weighting=multiplicity``."""
    return ", ".join(f"{col}={plain(value)}" for col, value in panel.items())


def _grid(n: int, height: float) -> tuple[Figure, Any]:
    """A figure of ``n`` panels, at most 3 per row, :data:`WIDTH` wide, sharing x and y."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(WIDTH, height * rows + 1.2))
    grid = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    axes = [grid[i // cols][i % cols] for i in range(n)]
    for ax in [a for row in grid for a in row][n:]:
        ax.set_visible(False)  # an empty grid cell
    return fig, axes


def _finish(fig: Figure, handles: list[Any], title: str, ncol: int = 3) -> None:
    """Suptitle (the finding), a figure legend below the panels, tight layout around both."""
    fig.suptitle(title, fontsize=10)
    figure_legend(fig, handles, ncol=ncol)
    tight(fig)


def _handles(axes: Sequence[Any]) -> list[Any]:
    """The labelled artists of every panel, in drawing order."""
    out: list[Any] = []
    for ax in axes:
        out += ax.get_legend_handles_labels()[0]
    return out


# --------------------------------------------------------------------------- 1. time vs L


def figure_time(
    points: pd.DataFrame,
    fits: pd.DataFrame,
    cross: pd.DataFrame,
    palette: Palette,
    varying: set[str],
) -> Plot | Skipped:
    """Time per sequence (ms) versus L, log-log, one line per (run, backend, n_hashes).

    One panel per slice that exists (method, weighting, pass, ... as measured; at most 6),
    the exact backends in each; the fitted exponent k (time ~ L^k) at the end of each line;
    a star where a configuration overtakes the exact baseline (only where it does). The title
    states how the fastest LSH configuration compares with the exact baseline at the largest
    L.
    """
    reason = one_length_reason(points)
    if reason:
        return Skipped(reason)
    axes_by = _panel_axes(points)
    keep = [k for k in reference_slice(points) if k not in axes_by]
    sel, slices = slice_points(points, keep=keep)
    ok = sel[(sel["status"] == "ok") & np.isfinite(sel["time_seq"]) & (sel["time_seq"] > 0)]
    counts = ok.groupby("series")["seqlen"].nunique()
    series = [s for s in dict.fromkeys(ok["series"]) if counts.get(s, 0) >= 2]
    if not series:
        return Skipped("no configuration has ok timings at two or more sequence lengths")
    ok = ok[ok["series"].isin(series)]
    panels = [p for p in _panels(ok, axes_by, slices)
              if (~ok.loc[in_slice(ok, p), "exact"].astype(bool)).any()] or [{}]  # fmt: skip
    exps = dict(zip(fits["series"], fits["exponent"], strict=True))
    marks = cross[cross["kind"] == "measured"].set_index("series")
    names = compact_labels(ok, drop=[*axes_by, "nb"])  # nb: not a drawn style
    scale, unit = time_unit(ok["time_seq"])
    fig, axes = _grid(len(panels), 3.4 if len(panels) > 1 else 5.0)
    stars, statuses, floor_note = False, set(), ""
    for ax, panel in zip(axes, panels, strict=True):
        mine = ok[in_slice(ok, panel)]
        lsh = mine[~mine["exact"].astype(bool)]
        for name in dict.fromkeys(lsh["series"]):
            mark = marks.loc[name] if name in marks.index else None
            stars |= _time_line(ax, lsh[lsh["series"] == name], names[name], exps.get(name),
                                mark, palette, scale, sel["seqlen"])  # fmt: skip
        _reference_lines(ax, mine[mine["exact"].astype(bool)], names, exps, palette, scale,
                         sel["seqlen"])  # fmt: skip
        floor_note = draw_exact_floor(ax, mine, scale) or floor_note
        failed = sel[(sel["status"] != "ok") & sel["series"].isin(mine["series"])]
        statuses |= failure_markers(
            ax, failed, "seqlen", [palette.colour(r) for _, r in failed.iterrows()]
        )
        length_axis(ax, sel["seqlen"])
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(f"time per sequence ({unit})")
        ax.grid(True, which="both", alpha=0.25)
        if panel:
            ax.set_title(_panel_title(panel), fontsize=9)
    extra = status_handles(statuses)
    if stars:
        star = "crossover: LSH faster than the exact baseline from here"
        extra.append(Line2D([], [], marker="*", ms=10, ls="none", color="0.5", mec="black",
                            label=star))  # fmt: skip
    first = ok[in_slice(ok, panels[0])]
    title = _time_finding(first, names) + f" ({slice_inputs(slices)}; k: time ~ L^k)"
    _finish(fig, _handles(axes) + extra, title)
    caption = _time_caption(points, cross, marks) + floor_note
    if len(panels) > 1:
        caption += (
            f" One panel per {' and '.join(axes_by)} (panel titles), the exact backends in each."
        )
    return Plot("time", fig, caption_with_slice(caption, slices, varying))


def _time_finding(g: pd.DataFrame, names: dict[str, str]) -> str:
    """The title of the time figure: the fastest LSH configuration against the fastest exact
    backend at the largest L where both were measured (points of one panel)."""
    found = _best_at_largest_common_length(g, "time_seq")
    if found is None:
        fastest = g.loc[g["time_seq"].idxmin()]
        return f"Time versus L: fastest is {names[fastest['series']]}"
    L, base, best = found
    ratio = base["time_seq"] / best["time_seq"]
    where = f"at L = {length_tick(L)}"
    if ratio >= 1:
        return (f"{names[best['series']]} is {ratio:.1f}x faster than the exact baseline "
                f"({base['backend']}) {where}")  # fmt: skip
    return (f"The exact baseline ({base['backend']}) is {1 / ratio:.1f}x faster than the "
            f"fastest LSH configuration ({names[best['series']]}) {where}")  # fmt: skip


def _best_at_largest_common_length(
    g: pd.DataFrame, col: str
) -> tuple[float, pd.Series, pd.Series] | None:
    """``(L, exact, lsh)``: the exact point and the LSH point with the smallest ``col`` at
    the largest L where both were measured; None when no L has both."""
    exact, lsh = g[g["exact"].astype(bool)], g[~g["exact"].astype(bool)]
    common = sorted(set(exact["seqlen"]) & set(lsh["seqlen"]))
    if not common:
        return None
    L = common[-1]
    base = exact[exact["seqlen"] == L].sort_values(col).iloc[0]
    best = lsh[lsh["seqlen"] == L].sort_values(col).iloc[0]
    return float(L), base, best


def _reference_lines(
    ax: Any,
    exact: pd.DataFrame,
    names: dict[str, str],
    exps: dict[str, float],
    palette: Palette,
    scale: float,
    lengths: pd.Series,
) -> None:
    """What a time panel measures LSH against, drawn after its LSH series: each exact
    backend's times (``exact``: the panel's ok exact points; black for the reference
    backend, grey for the others) with its exponent."""
    for name in dict.fromkeys(exact["series"]):
        g = exact[exact["series"] == name]
        _time_line(ax, g, names[name], exps.get(name), None, palette, scale, lengths)


def _time_line(
    ax: Any,
    g: pd.DataFrame,
    label: str,
    exponent: float | None,
    mark: pd.Series | None,
    palette: Palette,
    scale: float,
    lengths: pd.Series,
) -> bool:
    """One series' times (rows of ``g``, sorted by L, connected only between neighbouring
    measured L) with its exponent at the last point and its crossover star, if measured;
    returns whether a star was drawn."""
    row = g.iloc[0]
    colour = palette.colour(row)
    x, y = connect_measured(lengths, g["seqlen"], g["time_seq"] * scale)
    ax.plot(
        x,
        y,
        marker=palette.marker(row["run"]),
        color=colour,
        ls=palette.line(row["run"]),
        lw=2.2 if row["backend"] == REFERENCE_BACKEND else 1.4,
        ms=5,
        label=label,
    )
    if exponent is not None and math.isfinite(exponent):
        ax.annotate(f"k={exponent:.2f}", (g["seqlen"].iloc[-1], g["time_seq"].iloc[-1] * scale),
                    xytext=(4, 0), textcoords="offset points", fontsize=MIN_FONT,
                    color=colour, va="center")  # fmt: skip
    if mark is None:
        return False
    ax.plot(
        [mark["crossover_L"]],
        [mark["crossover_time_seq"] * scale],
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
        (mark["crossover_L"], mark["crossover_time_seq"] * scale),
        xytext=(4, -11),
        textcoords="offset points",
        fontsize=MIN_FONT,
        color=colour,
    )
    return True


def _time_caption(points: pd.DataFrame, cross: pd.DataFrame, marks: pd.DataFrame) -> str:
    caption = "Time per sequence (time_median_s / batch) versus L, log-log."
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
    """Measured peak memory per call (MiB, solid) next to the analytic model (dashed),
    versus L.

    One row of panels per measurement (allocation peak, resident peak), one column per LSH
    backend, so that configurations whose memory does not depend on n_hashes (lines on top
    of each other) stay visible; exact backends are drawn in every panel for reference.
    Each panel is titled by what sets it apart; panels of one measurement share their y
    range. The title states the peak of the leanest LSH configuration against the exact
    baseline at the largest L.
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
    scale, unit = bytes_unit(shown[[m[0] for m in metrics]].to_numpy().ravel())
    fig = Figure(figsize=(WIDTH, (3.0 if len(columns) > 2 else 3.5) * len(metrics) + 1.3))
    grid = fig.subplots(len(metrics), len(columns), squeeze=False, sharex=True, sharey="row")
    statuses: set[str] = set()
    for i, (col, title, good) in enumerate(metrics):
        for j, backend in enumerate(columns):
            mine = good["exact"].astype(bool) | (good["backend"] == backend)
            failed = sel[(sel["status"] != "ok") & sel["series"].isin(good.loc[mine, "series"])]
            ax = grid[i][j]
            statuses |= _memory_panel(ax, good[mine], col, names, failed, palette, scale,
                                      sel["seqlen"])  # fmt: skip
            length_axis(ax, sel["seqlen"])
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
            ax.set_xlabel("sequence length L")
            ax.set_ylabel(f"{title.split(' (')[0]} per call ({unit})")
            parts = [title] if len(metrics) > 1 else []
            if len(columns) > 1:
                parts.append(backend if backend != "exact" else "exact backends")
            ax.set_title(", ".join(parts), fontsize=9)
            ax.grid(True, which="both", alpha=0.25)
    modelled = np.isfinite(shown["mem_model_bytes"]) & (shown["mem_model_bytes"] > 0)
    extra = [Line2D([], [], ls="--", color="0.3", label="analytic model (mem_model_bytes)")]
    extra = extra if modelled.any() else []  # torch backends have no model
    title = _memory_finding(metrics[0][2], metrics[0][0], metrics[0][1], names)
    _finish(fig, _handles([a for row in grid for a in row]) + extra + status_handles(statuses),
            f"{title} ({slice_inputs(slices)})", ncol=4)  # fmt: skip
    model = " and analytic model (`mem_model_bytes`, dashed)" if extra else ""
    caption = (
        f"Peak memory per call ({unit}) versus L, measured (solid){model}; one column per LSH "
        f"backend, the exact backends drawn in each."
    )
    return Plot("memory", fig, caption_with_slice(caption, slices, varying))


def _memory_finding(good: pd.DataFrame, col: str, title: str, names: dict[str, str]) -> str:
    """The leanest LSH configuration against the leanest exact backend at the largest L where
    both were measured."""
    what = title.split(" (")[0]
    found = _best_at_largest_common_length(good, col)
    if found is None:
        return f"Peak memory per call versus L ({what})"
    L, base, best = found
    ratio = base[col] / best[col]
    where = f"at L = {length_tick(L)} ({what})"
    if ratio >= 1:
        lean = names[best["series"]]
        return f"{lean} needs {ratio:.1f}x less memory than {base['backend']} {where}"
    return (f"{base['backend']} needs {1 / ratio:.1f}x less memory than the leanest LSH "
            f"configuration ({names[best['series']]}) {where}")  # fmt: skip


def _memory_panel(
    ax: Any,
    good: pd.DataFrame,
    col: str,
    names: dict[str, str],
    failed: pd.DataFrame,
    palette: Palette,
    scale: float,
    lengths: pd.Series,
) -> set[str]:
    """Measured ``col`` (solid) and the model (dashed) of every series in ``good``, times
    ``scale``; returns the failure statuses drawn."""
    for name in dict.fromkeys(good["series"]):
        g = good[good["series"] == name]
        row = g.iloc[0]
        colour = palette.colour(row)
        x, y = connect_measured(lengths, g["seqlen"], g[col] * scale)
        ax.plot(x, y, marker=palette.marker(row["run"]), color=colour, ms=4, lw=1.4,
                label=names[name])  # fmt: skip
        model = g[np.isfinite(g["mem_model_bytes"]) & (g["mem_model_bytes"] > 0)]
        x, y = connect_measured(lengths, model["seqlen"], model["mem_model_bytes"] * scale)
        ax.plot(x, y, ls="--", color=colour, lw=1.0)
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
    fig = Figure(figsize=(WIDTH, 5.4))
    ax = fig.add_subplot(1, 1, 1)
    totals = set()
    lengths = sel[sel["series"].isin(series)]["seqlen"]
    for name in series:
        g = ok[ok["series"] == name]
        row = g.iloc[0]
        totals.add(int(row["tokens"]))
        x, y = connect_measured(lengths, g["seqlen"], g["time_tok"] * 1e6)
        ax.plot(
            x,
            y,
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
    length_axis(ax, lengths)
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("sequence length L (batch = total tokens / L)")
    ax.set_ylabel("time per token (µs)")
    ax.grid(True, which="both", alpha=0.25)
    total_text = ", ".join(str(t) for t in sorted(totals))
    title = _per_token_finding(ok[ok["series"].isin(series)], names)
    _finish(fig, _handles([ax]) + status_handles(statuses),
            f"{title} (batch x L = {total_text}, {slice_inputs(slices)})", ncol=4)  # fmt: skip
    shown = list(dict.fromkeys(ok[ok["series"].isin(series)]["run"]))
    caption = (
        f"The Reformer paper's view: time per token (time_median_s / (batch x L)) with batch x L "
        f"= {total_text} held fixed (run {', '.join(map(str, shown))}). Flat means linear cost "
        "in L." + _baseline_sentence(ok[ok["series"].isin(series)])
    )
    return Plot("paper", fig, caption_with_slice(caption, slices, varying))


def _per_token_finding(shown: pd.DataFrame, names: dict[str, str]) -> str:
    """How much the time per token grows from the smallest to the largest L, for the exact
    baseline and the LSH configuration that grows least (flat = linear cost)."""
    growth = {}
    for name, g in shown.groupby("series", sort=False):
        g = g.sort_values("seqlen")
        growth[name] = (g["time_tok"].iloc[-1] / g["time_tok"].iloc[0], g.iloc[0])
    lo, hi = length_tick(shown["seqlen"].min()), length_tick(shown["seqlen"].max())
    parts = []
    exact = {k: v for k, v in growth.items() if v[1]["exact"]}
    lsh = {k: v for k, v in growth.items() if not v[1]["exact"]}
    for group in (exact, lsh):
        if group:
            name = min(group, key=lambda k: group[k][0])
            parts.append(f"{names[name]} x{group[name][0]:.2f}")
    return f"Time per token from L = {lo} to {hi}: " + ", ".join(parts)


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
