"""Copy retrieval on the duplication input, against n_hashes at each L.

The ``duplicate`` input is the Reformer paper's duplication task (Kitaev et al. 2020,
section 5): the second half of a sequence copies the first. Its ``task_acc`` (docs/design.md
section 6) is the share of queries whose output decodes, by cosine, to the value of their
copy. The copy is each query's top-scoring key, so ``task_acc`` measures whether a query's
windows hold its copy: on LSH rows it equals ``top1_recall`` (the exact backends score 1).
The view calls it what it is, **copy retrieval**, and draws no accuracy of a model: the
paper's Table 2 (:data:`PAPER_TABLE2`) is the accuracy of a model trained with full
attention and evaluated end to end with LSH, which this attention-only number cannot be
compared with; captions and the table's text cite it as context only.

:func:`task_table` gives the numbers (one row per run, input, L, configuration: the median
over rotation draws and its min-max), and :func:`figure_task` draws them: one panel per
group of duplicate inputs with different numbers (inputs whose numbers are all equal, such
as two sharpnesses, which change no bucket, share one panel), lines only between measured
n_hashes. Works on the tidy points of :func:`lshbench.report.analysis.series_points`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lshbench.report.analysis import REFERENCE_BACKEND, REFERENCE_LSH_BACKEND
from lshbench.report.labels import plain
from lshbench.report.plotting import (
    Palette,
    Plot,
    Skipped,
    legend,
    length_tick,
    line_styles,
)

__all__ = [
    "PAPER_TABLE2",
    "TASK_CONFIG",
    "TASK_NAME",
    "figure_task",
    "paper_note",
    "spread_column",
    "task_panels",
    "task_table",
]

#: Kitaev et al. 2020 (Reformer), Table 2, duplication task: accuracy of the model trained
#: with full attention, evaluated with LSH attention of n_hashes rounds (fraction). Cited as
#: context only: a trained model evaluated end to end, not the attention step measured here.
PAPER_TABLE2: dict[float, float] = {1: 0.525, 2: 0.769, 4: 0.925, 8: 0.948}
#: What the view calls ``task_acc`` on duplicate input.
TASK_NAME = "copy retrieved"
#: The columns that make one line of the view besides the run, input and L.
TASK_CONFIG = ("chunk_len", "chunks_before", "chunks_after", "weighting")
_WEIGHTING_LINE = {"multiplicity": "-", "count-once": "--"}
_SCENARIO = ["run_index", "run", "input", "seqlen"]


def spread_column(end: str, h: float) -> str:
    """Name of the ``end`` ("lo" or "hi") of the min-max at n_hashes ``h`` in
    :func:`task_table`: ``"lo 4"``."""
    return f"{end} {plain(h)}"


def paper_note() -> str:
    """One sentence on why the paper's Table 2 is not drawn beside ``task_acc``."""
    paper = " / ".join(f"{100 * PAPER_TABLE2[h]:.1f}" for h in sorted(PAPER_TABLE2))
    hashes = " / ".join(plain(h) for h in sorted(PAPER_TABLE2))
    return (
        f"The Reformer paper's Table 2 ({paper} % at LSH-{hashes}) is the accuracy of a "
        "one-layer model trained with full attention and evaluated end to end with LSH; "
        "this number is the attention step alone on synthetic input, so the two are not "
        "comparable and the paper's are not drawn beside it."
    )


def _duplicate_points(points: pd.DataFrame) -> pd.DataFrame:
    """ok duplicate points with a task accuracy: exact ones, and LSH (method lsh) of one
    backend per run (the reference LSH backend when present)."""
    dup = points[(points["input_kind"] == "duplicate") & (points["status"] == "ok")]
    dup = dup[np.isfinite(dup["task_acc"]) & ~dup["short"].astype(bool)]
    exact = dup[dup["exact"].astype(bool)]
    lsh = dup[~dup["exact"].astype(bool) & (dup["method"] == "lsh")]
    keep = [exact]
    for _, g in lsh.groupby("run_index", sort=True):
        names = sorted(set(g["backend"]))
        chosen = REFERENCE_LSH_BACKEND if REFERENCE_LSH_BACKEND in names else names[0]
        keep.append(g[g["backend"] == chosen])
    return pd.concat(keep)


def task_table(points: pd.DataFrame) -> tuple[pd.DataFrame, list[float]]:
    """Copy retrieval (``task_acc``) of LSH per (run, input, L, configuration) and
    n_hashes, and the n_hashes measured.

    Columns: ``run_index``, ``run``, ``input``, ``seqlen``, :data:`TASK_CONFIG`,
    ``backend``, one column per n_hashes h named ``h`` (float, the median over rotation
    draws; NaN where not measured), ``"lo h"`` and ``"hi h"`` (:func:`spread_column`: the
    min-max over the draws; equal to the median with one draw) and ``dense`` (the exact
    backends' value on the same run, input and L; NaN without one). Empty when no
    duplicate row has one.
    """
    dup = _duplicate_points(points)
    lsh = dup[~dup["exact"].astype(bool)]
    hashes = sorted(set(lsh["n_hashes"].dropna()))
    dense = dup[dup["exact"].astype(bool)].groupby(_SCENARIO, sort=True)["task_acc"].median()
    spread = [spread_column(end, h) for end in ("lo", "hi") for h in hashes]
    rows = []
    for key, g in lsh.groupby([*_SCENARIO, *TASK_CONFIG, "backend"], sort=True):
        row: dict[Any, Any] = dict(zip([*_SCENARIO, *TASK_CONFIG, "backend"], key, strict=True))
        by_h = g.groupby("n_hashes")
        acc = by_h["task_acc"].median()
        row.update({h: float(acc.get(h, math.nan)) for h in hashes})
        for end in ("lo", "hi"):
            col = f"task_acc_{end}"
            ends = by_h[col].agg("min" if end == "lo" else "max") if col in g else acc
            row.update(
                {spread_column(end, h): float(ends.get(h, acc.get(h, math.nan))) for h in hashes}
            )
        row["dense"] = float(dense.get(tuple(key[: len(_SCENARIO)]), math.nan))
        rows.append(row)
    columns = [*_SCENARIO, *TASK_CONFIG, "backend", *hashes, *spread, "dense"]
    return pd.DataFrame(rows, columns=columns), hashes


def task_panels(table: pd.DataFrame, hashes: list[float]) -> list[list[str]]:
    """The duplicate inputs of :func:`task_table` grouped into panels: inputs whose every
    number (each L, configuration and n_hashes, and dense) is the same share one group, in
    input order, so two inputs that differ only in something the numbers do not depend on
    (the sharpness: scaling qk changes no bucket) draw one panel, not two identical ones."""
    values = [*hashes, *(spread_column(e, h) for e in ("lo", "hi") for h in hashes), "dense"]
    keys = ["run_index", "seqlen", *TASK_CONFIG, "backend"]
    groups: dict[str, list[str]] = {}
    for name in sorted(set(table["input"])):
        g = table[table["input"] == name].sort_values(keys, kind="mergesort")
        numbers = g[keys].astype(str).to_numpy().tolist()
        numbers += np.round(g[values].to_numpy(float), 12).tolist()
        groups.setdefault(repr(numbers), []).append(name)
    return list(groups.values())


def figure_task(points: pd.DataFrame, palette: Palette, varying: set[str]) -> Plot | Skipped:
    """Copy retrieval (%) versus n_hashes on duplicate input, one line per L (and run,
    configuration) with the min-max over rotation draws as error bars, one panel per group
    of :func:`task_panels`; the exact backends at their value (1)."""
    table, hashes = task_table(points)
    if table.empty:
        return Skipped("no duplicate-input rows with a task accuracy (task_acc)")
    if len(hashes) < 2:
        return Skipped("duplicate rows have a single n_hashes; needs two or more")
    panels = task_panels(table, hashes)
    lengths = sorted(set(table["seqlen"]))
    shades = line_styles(lengths)
    config_varies = {c for c in TASK_CONFIG if table[c].map(str).nunique() > 1}
    fig = Figure(figsize=(5.2 * len(panels) + 3.4, 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, names in zip(axes, panels, strict=True):
        g = table[table["input"] == names[0]]
        for _, row in g.iterrows():
            _task_line(ax, row, hashes, shades, palette, varying, config_varies)
        dense = g["dense"].dropna()
        if len(dense):
            value = float(dense.median())
            ax.axhline(100 * value, color="black", lw=1.6,
                       label=f"{REFERENCE_BACKEND} (exact): {100 * value:.1f} %")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(hashes)
        ax.set_xticklabels([plain(h) for h in hashes])
        ax.minorticks_off()
        ax.set_xlabel("n_hashes (LSH-H)")
        ax.set_ylabel(f"{TASK_NAME}, % (task_acc: top-1 recall here)")
        ax.set_ylim(min(40.0, ax.get_ylim()[0]), 102.0)
        ax.grid(True, alpha=0.25)
        same = " (identical numbers)" if len(names) > 1 else ""
        ax.set_title("input=" + " = ".join(names) + same, fontsize=9)
    legend(axes[-1])
    fig.suptitle("Duplication input: share of queries that retrieve their copy, versus n_hashes",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    merged = [" and ".join(names) for names in panels if len(names) > 1]
    caption = (
        "Copy retrieval on the duplication input (`task_acc`: the share of queries whose "
        "output decodes to their copy's value) versus n_hashes, one line per L, lines only "
        "between measured n_hashes, error bars the min-max over rotation draws; "
        f"{REFERENCE_BACKEND} (solid black) scores 1. The copy is each query's top key, so "
        "this is top-1 recall: whether a round puts the copy in the query's windows. "
        + (f"{'; '.join(merged)} give the same numbers and share a panel. " if merged else "")
        + paper_note()
    )
    return Plot("task", fig, caption)


def _task_line(
    ax: Any,
    row: pd.Series,
    hashes: list[float],
    shades: dict[Any, tuple[Any, str]],
    palette: Palette,
    varying: set[str],
    config_varies: set[str],
) -> None:
    """One line of the view: copy retrieval (%) of one (run, L, configuration) over
    n_hashes; a gap (an n_hashes the line lacks) breaks the line, error bars give the
    min-max over rotation draws."""
    ys = np.array([row.loc[h] for h in hashes], float)  # .loc: labels, never positions
    lo = np.array([row.loc[spread_column("lo", h)] for h in hashes], float)
    hi = np.array([row.loc[spread_column("hi", h)] for h in hashes], float)
    xs = np.array(hashes, float)
    colour, marker = shades[row["seqlen"]]
    label = ("[" + str(row["run"]) + "] " if "run" in varying else "") + (
        f"L={length_tick(row['seqlen'])}")  # fmt: skip
    for col in ("chunk_len", "chunks_before", "chunks_after"):
        if col in config_varies:
            label += f" {'m' if col == 'chunk_len' else col}={plain(row[col])}"
    if "weighting" in config_varies:
        label += f" {row['weighting']}"
    ax.plot(  # NaN breaks the line: no segment across an n_hashes this line lacks
        xs,
        100 * ys,
        color=colour,
        marker=palette.marker(str(row["run"])) if "run" in varying else marker,
        ls=_WEIGHTING_LINE.get(str(row["weighting"]), "-"),
        lw=1.4,
        ms=5,
        label=label,
    )
    keep = np.isfinite(ys) & np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
    if keep.any():  # the min-max over rotation draws, where there is a spread
        err = np.vstack([ys - lo, hi - ys])[:, keep]  # (2, n)
        ax.errorbar(xs[keep], 100 * ys[keep], yerr=100 * np.clip(err, 0.0, None),
                    color=colour, ls="none", capsize=2, lw=1.0)  # fmt: skip
