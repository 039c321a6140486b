"""The accuracy figures of ``lshbench report``: error versus n_hashes / chunk length, and
accuracy against cost (the Pareto front with the error budgets and the baselines).

The error is the headline metric ``attn_tv`` (docs/design.md section 6); a run whose table
predates it is drawn with ``rel_err`` instead, and the axis says which. Each ``figure_*``
function takes the tidy points of :mod:`lshbench.report.analysis` and returns a
:class:`~lshbench.report.plotting.Plot` (write it with :func:`~lshbench.report.plotting.save`)
or a :class:`~lshbench.report.plotting.Skipped`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from lshbench.report.analysis import REFERENCE_LSH_BACKEND
from lshbench.report.columns import METHOD_ORDER
from lshbench.report.labels import METHOD_NAMES, metric_axis, plain
from lshbench.report.plotting import (
    EXACT_BELOW,
    MIN_FONT,
    WIDTH,
    Palette,
    Plot,
    Skipped,
    at_floor,
    caption_with_slice,
    connect_measured,
    error_floor,
    failure_markers,
    figure_legend,
    floor_axis,
    length_tick,
    line_styles,
    slice_points,
    sparse_log_ticks,
    status_handles,
    tight,
    time_unit,
)
from lshbench.report.tradeoffs import (
    FALLBACK_METRIC,
    HEADLINE_METRIC,
    budgets_for,
    candidates,
    error_metric,
    pareto_mask,
)

__all__ = ["METHOD_STYLE", "figure_error", "figure_pareto"]

#: The symbols of the hashing axes in labels (the report's legend: H = n_hashes, m = chunk).
_SYMBOL = {"chunk_len": "m", "n_hashes": "H"}
#: Axes held at one value in the error figures (besides the plotted and the line axes).
_ERROR_FIXED = (
    "causal", "dtype", "threads", "d", "dv", "chunks_before", "chunks_after", "chunk_len",
    "method", "weighting",
)  # fmt: skip
#: (colour, marker) of each method (docs/design.md section 2b) in the error and Pareto figures.
METHOD_STYLE = {
    "lsh": ("tab:blue", "o"),
    "random": ("tab:orange", "X"),
    "local": ("tab:green", "s"),
}
#: Error metrics drawn on a log axis with an exact floor.
_LOG_METRICS = ("attn_tv", "rel_err")
#: Line style of each weighting.
_WEIGHTING_LINE = {"multiplicity": "-", "count-once": "--"}


# --------------------------------------------------------------------------- 3, 4. error


def _error_points(points: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """LSH points of one backend per run (the reference LSH backend when present) with a
    measured error, and the backend chosen per run."""
    lsh = points[~points["exact"].astype(bool) & ~points["short"].astype(bool)]
    measured_any = np.isfinite(lsh[HEADLINE_METRIC]) | np.isfinite(lsh[FALLBACK_METRIC])
    chosen, keep = {}, []
    for run, g in lsh.groupby("run", sort=False):
        measured = g[(g["status"] == "ok") & measured_any.loc[g.index]]
        names = sorted(set(measured["backend"]))
        if names:
            preferred = REFERENCE_LSH_BACKEND in names
            chosen[str(run)] = REFERENCE_LSH_BACKEND if preferred else names[0]
            keep.append(g[g["backend"] == chosen[str(run)]])
    return (pd.concat(keep) if keep else lsh.iloc[:0]), chosen


def _error_metrics(ok: pd.DataFrame) -> list[str]:
    """Rows of the error figure: attn_tv, rel_err for runs without attn_tv, mass recall."""
    metrics = []
    if np.isfinite(ok[HEADLINE_METRIC]).any():
        metrics.append(HEADLINE_METRIC)
    without = ok.groupby("run")[HEADLINE_METRIC].apply(lambda v: not np.isfinite(v).any())
    if without.any() and np.isfinite(ok[FALLBACK_METRIC]).any():
        metrics.append(FALLBACK_METRIC)
    if np.isfinite(ok["mass_recall"]).any():
        metrics.append("mass_recall")
    return metrics


def figure_error(
    points: pd.DataFrame,
    x: str,
    line: str | Sequence[str],
    name: str,
    palette: Palette,
    varying: set[str],
) -> Plot | Skipped:
    """The error (``attn_tv``; ``rel_err`` for older tables) and mass recall versus ``x``
    (n_hashes or chunk_len) at one L.

    One panel column per input, one line per value of ``line`` (a column, or several, e.g.
    ``("method", "weighting")``: one line per method and weighting) and run; the other axes
    are held at the reference slice. L is the largest one where some run has two or more
    values of ``x``. ``name`` is the figure's key in
    :data:`~lshbench.report.plotting.FIGURE_FILES`.
    """
    lines = [line] if isinstance(line, str) else list(line)
    pts, backends = _error_points(points)
    if pts.empty:
        return Skipped(
            f"no LSH rows with a measured error ({HEADLINE_METRIC} or {FALLBACK_METRIC})"
        )
    fixed = [k for k in _ERROR_FIXED if k != x and k not in lines]
    pts, ref = slice_points(pts, keep=fixed)
    ok = pts[pts["status"] == "ok"]
    spread = ok.groupby(["run", "input", "seqlen"])[x].nunique()
    lengths = sorted({k[2] for k, n in spread.items() if n >= 2})
    if not lengths:
        return Skipped(f"every configuration has a single {x}; needs two or more at one L")
    L = lengths[-1]
    ok, at_l = ok[ok["seqlen"] == L], pts[pts["seqlen"] == L]
    inputs = sorted(set(ok["input"]))
    metrics = _error_metrics(ok)
    fig = Figure(figsize=(WIDTH, 2.5 * len(inputs) + 1.6))
    grid = fig.subplots(len(inputs), len(metrics), squeeze=False, sharex=True, sharey="col")
    statuses: set[str] = set()
    styles = _line_styles(ok, lines)
    xs = sorted(set(pts[x].dropna()))
    floors = {m: error_floor(ok[m]) for m in metrics if m in _LOG_METRICS}
    for i, input_name in enumerate(inputs):
        for j, metric in enumerate(metrics):
            ax = grid[i][j]
            g = ok[(ok["input"] == input_name) & np.isfinite(ok[metric])]
            _error_lines(ax, g, x, lines, metric, styles, palette, varying, xs, floors.get(metric))
            failed = at_l[(at_l["input"] == input_name) & (at_l["status"] != "ok")]
            colours = [styles.get(_line_key(r, lines), ("0.4", "o", "-"))[0]
                       for _, r in failed.iterrows()]  # fmt: skip
            statuses |= failure_markers(ax, failed, x, colours)
            _error_axes(ax, xs, x, metric, floors.get(metric))
            ax.set_title(f"input={input_name}", fontsize=9)
            if i < len(inputs) - 1:
                ax.set_xlabel("")
    handles = _error_handles(ok, lines, styles, [a for row in grid for a in row])
    fig.suptitle(_error_finding(ok, x, lines, metrics[0], L), fontsize=10)
    handles += status_handles(statuses)
    figure_legend(fig, handles, ncol=3)
    tight(fig)
    used = ", ".join(
        sorted({f"{b} ({r})" if len(backends) > 1 else b for r, b in backends.items()})
    )
    per = " and ".join(lines)
    caption = (
        f"{' and '.join(metric_axis(m) for m in metrics)} versus {x} at L={plain(L)}, one "
        f"line per {per}, one panel per input (panel titles); backend {used}."
    )
    if FALLBACK_METRIC in metrics:
        caption += (f" Runs without {HEADLINE_METRIC} (older tables) are drawn with "
                    f"{FALLBACK_METRIC}.")  # fmt: skip
    return Plot(name, fig, caption_with_slice(caption, ref, varying))


def _line_key(row: Any, lines: Sequence[str]) -> tuple:
    return tuple(row[c] for c in lines)


def _line_styles(ok: pd.DataFrame, lines: Sequence[str]) -> dict[tuple, tuple[Any, str, str]]:
    """(colour, marker, line style) per line key: by method and weighting when the lines
    are those, else viridis shades over the single line axis."""

    def order(key: tuple) -> tuple:  # numbers by value, methods LSH first, then text
        return tuple((0, v, "") if isinstance(v, float) else (1, METHOD_ORDER.get(v, 9), str(v))
                     for v in key)  # fmt: skip

    keys = sorted({_line_key(r, lines) for _, r in ok.iterrows()}, key=order)
    if set(lines) <= {"method", "weighting"}:
        out = {}
        for key in keys:
            named = dict(zip(lines, key, strict=True))
            colour, marker = METHOD_STYLE.get(named.get("method", "lsh"), ("0.4", "o"))
            out[key] = (colour, marker, _WEIGHTING_LINE.get(named.get("weighting", ""), "-"))
        return out
    shades = line_styles(keys)
    return {k: (c, m, "-") for k, (c, m) in shades.items()}


def _line_label(lines: Sequence[str], key: tuple) -> str:
    parts = []
    for col, value in zip(lines, key, strict=True):
        if col in _SYMBOL:
            parts.append(f"{_SYMBOL[col]}={plain(value)}")
        else:
            parts.append(str(value))
    return ", ".join(parts)


def _error_lines(
    ax: Any,
    g: pd.DataFrame,
    x: str,
    lines: Sequence[str],
    metric: str,
    styles: dict[tuple, tuple[Any, str, str]],
    palette: Palette,
    varying: set[str],
    xs: Sequence[float],
    floor: float | None,
) -> None:
    """One line per (run, line key, n_buckets description): median ``metric`` versus ``x``,
    with a band over the min-max of its rows (rotation draws, input seeds) where they
    differ. A line joins only neighbouring values of ``xs`` it was measured at; on a log
    axis (``floor`` given) exact values are drawn at the floor."""
    rank = {key: i for i, key in enumerate(styles)}  # styles are in legend order
    groups = sorted(g.groupby(["run", *lines, "nb_desc"], sort=True),
                    key=lambda item: (item[0][0], rank[tuple(item[0][1:-1])]))  # fmt: skip
    for (run, *key, nb), h in groups:
        band = _band(h, x, metric)
        h = h.groupby(x, as_index=False)[metric].median().sort_values(x)
        prefix = f"[{run}] " if "run" in varying else ""
        label = prefix + _line_label(lines, tuple(key))
        if "nb" in varying and nb not in ("", "2L/m"):
            label += f" nb={nb}"
        colour, marker, style = styles[tuple(key)]
        if "run" in varying:  # runs apart: by marker where line styles mean weightings
            if set(lines) <= {"method", "weighting"}:
                marker = palette.marker(str(run))
            else:
                style = palette.line(str(run))
        y = h[metric].to_numpy(float) if floor is None else at_floor(h[metric], floor)
        px, py = connect_measured(xs, h[x], y)
        ax.plot(
            px,
            py,
            marker=marker,
            ls=style,
            color=colour,
            lw=1.4,
            ms=5,
            label=label,
        )
        if band is not None:
            lo, hi = band["lo"], band["hi"]
            if floor is not None:
                lo, hi = at_floor(lo, floor), at_floor(hi, floor)
            ax.fill_between(band[x], lo, hi, color=colour, alpha=0.15, lw=0)


def _band(h: pd.DataFrame, x: str, metric: str) -> pd.DataFrame | None:
    """``x``, ``lo``, ``hi``: the range of ``metric`` over the rows folded into each point
    of ``h`` (:data:`~lshbench.report.analysis.SPREAD_METRICS`); None when there is none."""
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    if lo not in h or hi not in h:
        return None
    band = h.groupby(x)[[lo, hi]].agg({lo: "min", hi: "max"}).sort_index()
    band.columns = ["lo", "hi"]
    if not (band["hi"] > band["lo"]).any():
        return None
    return band.reset_index()


def _error_axes(ax: Any, xs: Sequence[float], x: str, metric: str, floor: float | None) -> None:
    """Log2 x axis with ticks at the measured values; a log y axis from ``floor`` (exact
    results drawn there, labelled "exact") for an error metric; labels; grid."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if floor is not None:
        ax.set_yscale("log")
        floor_axis(ax.yaxis, floor)
    elif metric == "mass_recall":
        ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"{x} ({_SYMBOL.get(x, x)})")
    ax.set_ylabel(metric_axis(metric), fontsize=MIN_FONT)
    ax.grid(True, which="both", alpha=0.25)


def _error_handles(
    ok: pd.DataFrame, lines: Sequence[str], styles: dict[tuple, tuple[Any, str, str]], axes: Any
) -> list[Line2D]:
    """The legend of the error figure: for method and weighting lines, one entry per method
    drawn (colour and marker) and one per weighting drawn (line style); otherwise the
    panels' own labels."""
    if set(lines) != {"method", "weighting"}:
        out: list[Any] = []
        for ax in axes:
            out += ax.get_legend_handles_labels()[0]
        return out
    handles = []
    for method in [m for m in METHOD_STYLE if m in set(ok["method"])]:
        colour, marker = METHOD_STYLE[method]
        name = METHOD_NAMES.get(method, method)
        handles.append(Line2D([], [], color=colour, marker=marker, ls="none", label=name))
    for weighting, style in _WEIGHTING_LINE.items():
        if weighting in set(ok["weighting"]):
            handles.append(Line2D([], [], color="0.3", ls=style, lw=1.4, label=weighting))
    return handles


def _error_finding(ok: pd.DataFrame, x: str, lines: Sequence[str], metric: str, L: float) -> str:
    """The title of an error figure: the error at the largest ``x`` per line value, as a
    range over the inputs (``attn_tv at H=8, L=4K: LSH 0.05-0.72, random keys 0.78-0.95``)."""
    top = ok[ok[x] == ok[x].max()]
    if set(lines) == {"method", "weighting"}:
        top = top[top["weighting"] == _mode(top["weighting"], "multiplicity")]
        key, names = "method", METHOD_NAMES
        order = [m for m in METHOD_STYLE if m in set(top["method"])]
    else:
        key, names = lines[0], {}
        order = sorted(set(top[key]))
    parts = []
    for value in order:
        v = top.loc[top[key] == value, metric]
        v = v[np.isfinite(v)]
        if v.empty:
            continue
        name = names.get(value, f"{_SYMBOL.get(key, key)}={plain(value)}").split(" (")[0]
        name = name.split(",")[0]
        lo, hi = _short(v.min()), _short(v.max())
        parts.append(f"{name} {lo if lo == hi else f'{lo}-{hi}'}")
    where = f"{_SYMBOL.get(x, x)}={plain(ok[x].max())}, L={length_tick(L)}"
    over = " (range over inputs)" if ok["input"].nunique() > 1 else ""
    return f"{metric} at {where}: " + "; ".join(parts) + over


def _short(v: float) -> str:
    """An error as short text; exact (below :data:`EXACT_BELOW`) as ``exact``."""
    return "exact" if v < EXACT_BELOW else f"{v:.2g}"


def _mode(values: pd.Series, prefer: str) -> str:
    present = list(dict.fromkeys(values))
    return prefer if prefer in present else str(present[0])


# --------------------------------------------------------------------------- 5. Pareto


def _pick_lengths(lengths: Sequence[float], most: int = 4) -> list[float]:
    """Up to ``most`` lengths, evenly spread, always the smallest and the largest."""
    lengths = sorted(lengths)
    if len(lengths) <= most:
        return lengths
    index = np.unique(np.round(np.linspace(0, len(lengths) - 1, most)).astype(int))
    return [lengths[i] for i in index]


def _pareto_candidates(points: pd.DataFrame) -> pd.DataFrame:
    """Candidates of every run judged by its own metric (attn_tv, or rel_err for older
    tables): ``error`` and ``metric`` columns added."""
    parts = []
    for _, g in points.groupby("run_index", sort=True):
        metric = error_metric(g)
        parts.append(candidates(g, metric).assign(metric=metric))
    return pd.concat(parts) if parts else points.iloc[:0].assign(error=[], metric=[])


def figure_pareto(points: pd.DataFrame, palette: Palette, varying: set[str]) -> Plot | Skipped:
    """The error (``attn_tv``; ``rel_err`` for older tables) versus time per sequence, one
    panel per input and L (and run): every LSH configuration, its random and local baselines
    at the same key budget (other markers), dense, the error budgets, and the Pareto front
    computed over the LSH points (a black step)."""
    cand = _pareto_candidates(points)
    if cand.empty:
        return Skipped("no ok rows with both a time and an error (attn_tv or rel_err)")
    keep = ("causal", "dtype", "threads", "d", "dv")  # one row of panels per input
    cand, slices = slice_points(cand, source=points, keep=keep)
    lsh = cand[~cand["exact"].astype(bool)]
    per_l = lsh[lsh["method"] == "lsh"].groupby(["run_index", "input", "seqlen"])["series"]
    per_l = per_l.nunique()
    rows = sorted({(r, i) for (r, i, _), n in per_l.items() if n >= 2})
    if not rows:
        return Skipped("no L has two or more LSH configurations with a time and an error")
    lengths = _pick_lengths(sorted({L for (_, _, L), n in per_l.items() if n >= 2}), most=3)
    run_names = dict(zip(cand["run_index"], cand["run"], strict=True))
    metric_of = dict(zip(cand["run_index"], cand["metric"], strict=True))
    several = len({r for r, _ in rows}) > 1
    shown = cand[cand["seqlen"].isin(lengths)]
    scale, unit = time_unit(shown["time_seq"])
    one_metric = len(set(metric_of.values())) == 1
    floor = error_floor(
        shown.loc[~shown["exact"].astype(bool), "error"],
        budgets_for(next(iter(metric_of.values()))),
    )
    fig = Figure(figsize=(WIDTH, 2.7 * len(rows) + 1.8))
    grid = fig.subplots(len(rows), len(lengths), squeeze=False, sharey=one_metric)
    for i, (run_index, input_name) in enumerate(rows):
        for j, L in enumerate(lengths):
            ax = grid[i][j]
            g = cand[(cand["run_index"] == run_index) & (cand["input"] == input_name)]
            g = g[g["seqlen"] == L]
            if g.empty:
                ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            metric = metric_of[run_index]
            panel_floor = floor if one_metric else error_floor(g["error"], budgets_for(metric))
            _pareto_panel(ax, g, palette, metric, scale, panel_floor)
            run_text = f"[{run_names[run_index]}] " if several else ""
            ax.set_title(f"{run_text}input={input_name}, L={length_tick(L)}", fontsize=9)
            ax.set_xlabel(f"time per sequence ({unit})")
            ax.set_ylabel(metric_axis(metric), fontsize=MIN_FONT)
    exact = shown["exact"].astype(bool) & np.isfinite(shown["time_seq"])
    handles = _pareto_handles(lsh[lsh["seqlen"].isin(lengths)], palette, bool(exact.any()))
    fig.suptitle(_pareto_finding(shown, metric_of), fontsize=10)
    figure_legend(fig, handles, ncol=3)
    tight(fig)
    return Plot("pareto", fig, caption_with_slice(_pareto_caption(cand), slices, varying))


def _pareto_finding(shown: pd.DataFrame, metric_of: dict[Any, str]) -> str:
    """The title of the Pareto figure: at the largest L shown, on how many inputs an LSH
    configuration within the middle error budget is faster than the exact baseline, and the
    best speed-up."""
    metric = next(iter(metric_of.values()))
    budget = budgets_for(metric)[len(budgets_for(metric)) // 2]
    L = shown["seqlen"].max()
    at = shown[(shown["seqlen"] == L) & (shown["metric"] == metric)]
    wins, meets, best = 0, 0, None
    inputs = sorted(set(at["input"]))
    baseline = ""
    for input_name in inputs:
        g = at[at["input"] == input_name]
        exact = g[g["exact"].astype(bool) & np.isfinite(g["time_seq"])]
        lsh = g[(g["method"] == "lsh") & ~g["exact"].astype(bool) & (g["error"] <= budget)]
        if lsh.empty:
            continue
        meets += 1
        fastest = lsh.loc[lsh["time_seq"].idxmin()]
        if exact.empty:
            continue
        base = exact.loc[exact["time_seq"].idxmin()]
        baseline = str(base["backend"])
        speedup = base["time_seq"] / fastest["time_seq"]
        if speedup > 1:
            wins += 1
            if best is None or speedup > best[0]:
                best = (speedup, input_name, fastest)
    where = f"At L = {length_tick(L)}"
    within = f"within {metric} {budget:g}"
    if meets == 0:
        return f"{where} no LSH configuration is {within} on any input"
    if best is None:
        versus = f"the exact baseline ({baseline})" if baseline else "an exact baseline"
        return f"{where} LSH {within} is never faster than {versus} ({meets} inputs meet it)"
    speedup, input_name, row = best
    config = f"{row['backend']} H={plain(row['n_hashes'])} m={plain(row['chunk_len'])}"
    return (
        f"{where} LSH {within} beats the exact baseline ({baseline}) on {wins} of "
        f"{len(inputs)} inputs; best {speedup:.1f}x ({config}, {input_name})"
    )


def _pareto_caption(cand: pd.DataFrame) -> str:
    metrics = sorted(set(cand["metric"]), key=lambda m: m != HEADLINE_METRIC)
    budgets = "; ".join(f"{m} " + ", ".join(f"{b:g}" for b in budgets_for(m)) for m in metrics)
    text = (
        f"Accuracy against cost: {' / '.join(metric_axis(m) for m in metrics)} versus time per "
        "sequence, one panel per input and L. Circles are LSH configurations; crosses (random "
        "keys) and squares (a local window) are the baselines of docs/design.md section 2b at the "
        "same key budget (same n_hashes, chunk_len, look-around); hollow markers use "
        "count-once weighting. The black step is the Pareto front over the LSH points "
        "(nothing is both faster and more accurate); a baseline below it does better than "
        f"hashing. Dotted lines are the error budgets ({budgets}); the dashed line is the "
        "exact baseline (error 0): the fastest exact backend of the panel's run (dense, "
        "torch-sdpa, ...), named at the line. Labels on the front: backend, H, m (and "
        "count-once where it applies)."
    )
    if FALLBACK_METRIC in metrics:
        text += f" Runs without {HEADLINE_METRIC} (older tables) are drawn with {FALLBACK_METRIC}."
    return text


def _method_marker(row: Any, palette: Palette) -> dict[str, Any]:
    """Marker keywords of a point: shape by method, colour by (backend, H), hollow for
    count-once."""
    colour = palette.colour(row)
    marker = METHOD_STYLE.get(row["method"], ("0.4", "o"))[1]
    hollow = row["weighting"] == "count-once"
    return {"marker": marker, "color": colour, "mfc": "none" if hollow else colour}


def _pareto_handles(lsh: pd.DataFrame, palette: Palette, exact: bool) -> list[Line2D]:
    """Legend of the Pareto panels: front, exact baseline (when ``exact`` rows are drawn),
    each method, count-once, one colour per (backend, H)."""
    handles = [Line2D([], [], color="black", lw=1.2, drawstyle="steps-post",
                      label="Pareto front (over LSH points)")]  # fmt: skip
    if exact:
        handles.append(Line2D([], [], color="black", ls="--", lw=1.0,
                              label="exact baseline (fastest exact, error 0)"))  # fmt: skip
    methods = [m for m in METHOD_STYLE if m in set(lsh["method"])]
    for method in methods:
        marker = METHOD_STYLE[method][1]
        name = METHOD_NAMES.get(method, method)
        handles.append(Line2D([], [], marker=marker, ls="none", color="0.3", label=name))
    if (lsh["weighting"] == "count-once").any():
        handles.append(Line2D([], [], marker="o", ls="none", color="0.3", mfc="none",
                              label="count-once weighting (hollow)"))  # fmt: skip
    keys = lsh.drop_duplicates(["backend", "n_hashes"]).sort_values(["backend", "n_hashes"])
    for _, row in keys.iterrows():
        label = f"{row['backend']} H={plain(row['n_hashes'])}"
        handles.append(
            Line2D([], [], marker="o", ls="none", color=palette.colour(row), label=label)
        )
    return handles


def _pareto_panel(
    ax: Any, g: pd.DataFrame, palette: Palette, metric: str, scale: float, floor: float
) -> None:
    """One (input, L) panel: every LSH and baseline point (time x ``scale``), the front over
    the LSH points with labels, the exact baseline, the budgets of ``metric``; exact errors
    drawn at ``floor``."""
    g = g.assign(time_seq=g["time_seq"] * scale, error=at_floor(g["error"], floor))
    inexact = g[~g["exact"].astype(bool)].sort_values(["series_order"], kind="mergesort")
    for _, row in inexact.iterrows():
        ax.plot([row["time_seq"]], [row["error"]], ms=6, ls="none", alpha=0.85,
                **_method_marker(row, palette))  # fmt: skip
    lsh = inexact[inexact["method"] == "lsh"]
    front = lsh[pareto_mask(lsh["time_seq"], lsh["error"])].sort_values("time_seq")
    if len(front):
        ax.plot(front["time_seq"], front["error"], color="black", lw=1.2, drawstyle="steps-post")
        _label_front(ax, front, g, inexact, metric)
    exact = g[g["exact"].astype(bool) & np.isfinite(g["time_seq"])]
    for _, fastest in exact.sort_values("time_seq").groupby("run", sort=True).head(1).iterrows():
        ax.axvline(fastest["time_seq"], color="black", ls="--", lw=1.0)  # the exact baseline
        ax.annotate(
            str(fastest["backend"]),
            (fastest["time_seq"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -10),
            textcoords="offset points",
            fontsize=MIN_FONT,
        )
    for b in budgets_for(metric):
        ax.axhline(b, color="0.5", ls=":", lw=0.9)
        ax.annotate(
            f"{b:g}",
            (1.0, b),
            xycoords=("axes fraction", "data"),
            in_layout=False,
            xytext=(-2, 2),
            textcoords="offset points",
            ha="right",
            fontsize=MIN_FONT,
            color="0.4",
        )
    ax.set_yscale("log")
    floor_axis(ax.yaxis, floor, top=max(1.0, float(g["error"].max()) if len(g) else 1.0))
    ax.set_xscale("log")
    times = g["time_seq"][np.isfinite(g["time_seq"]) & (g["time_seq"] > 0)]
    if len(times):
        lo, hi = float(times.min()) / 1.25, float(times.max()) * 1.25
        ax.set_xlim(lo, hi)
        sparse_log_ticks(ax.xaxis, lo, hi, most=4)
    ax.grid(True, which="both", alpha=0.2)


def _label_front(
    ax: Any, front: pd.DataFrame, g: pd.DataFrame, shown: pd.DataFrame, metric: str
) -> None:
    """Name the configurations on the front (backend, H, m), skipping labels that would
    overlap the previous one."""
    span_t = np.ptp(np.log(g["time_seq"])) or 1.0
    errors = np.concatenate([shown["error"].clip(lower=1e-12), budgets_for(metric)])
    span_e = np.ptp(np.log(errors)) or 1.0
    last = None
    for i, (_, row) in enumerate(front.iterrows()):
        here = (
            math.log(row["time_seq"]) / span_t,
            math.log(max(row["error"], 1e-12)) / span_e,
        )
        if last is not None and math.dist(here, last) < 0.3:
            continue  # too close to the previous label to read
        last = here
        text = f"{row['backend']} H={plain(row['n_hashes'])} m={plain(row['chunk_len'])}"
        if row["weighting"] == "count-once":
            text += " count-once"
        right = math.log(row["time_seq"] / g["time_seq"].min()) / span_t > 0.6
        ax.annotate(
            text,
            (row["time_seq"], row["error"]),
            in_layout=False,
            xytext=(-5 if right else 5, 4 if i % 2 else -9),
            textcoords="offset points",
            ha="right" if right else "left",
            fontsize=MIN_FONT,
        )
