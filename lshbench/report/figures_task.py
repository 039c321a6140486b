"""The Reformer Table 2 view: duplication-task accuracy against n_hashes at each L.

Kitaev et al. (2020), Table 2, train a one-layer model on the duplication task and evaluate
it with LSH attention of 1, 2, 4 and 8 hash rounds. The report puts the sweep's ``task_acc``
of ``duplicate`` rows (docs/design.md section 6: share of queries whose output is nearest, by
cosine, to the value of their copy; the exact backends score 1) next to the paper's row for
the model trained with full attention (:data:`PAPER_TABLE2`), drawn as a labelled
reference. The paper measures a trained model, this study the attention operation alone on
synthetic input: compare the trend with n_hashes, not the values.

:func:`task_table` gives the numbers (one row per run, input, L, configuration), and
:func:`figure_task` draws them. Works on the tidy points of
:func:`lshbench.report.analysis.series_points`.
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

__all__ = ["PAPER_LABEL", "PAPER_TABLE2", "TASK_CONFIG", "figure_task", "task_table"]

#: Kitaev et al. 2020 (Reformer), Table 2, duplication task: accuracy of the model trained
#: with full attention, evaluated with LSH attention of n_hashes rounds (fraction).
PAPER_TABLE2: dict[float, float] = {1: 0.525, 2: 0.769, 4: 0.925, 8: 0.948}
PAPER_LABEL = "Kitaev et al. 2020, Table 2: trained with full attention, evaluated with LSH"
#: The columns that make one line of the view besides the run, input and L.
TASK_CONFIG = ("chunk_len", "chunks_before", "chunks_after", "weighting")
_WEIGHTING_LINE = {"multiplicity": "-", "count-once": "--"}


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
    """Task accuracy of LSH per (run, input, L, configuration) and n_hashes, and the
    n_hashes measured.

    Columns: ``run_index``, ``run``, ``input``, ``seqlen``, :data:`TASK_CONFIG`,
    ``backend``, one column per n_hashes h named ``h`` (float; NaN where not measured) and
    ``dense`` (the exact backends' accuracy on the same run, input and L; NaN without
    one). Empty when no duplicate row has a task accuracy.
    """
    dup = _duplicate_points(points)
    scen = ["run_index", "run", "input", "seqlen"]
    lsh = dup[~dup["exact"].astype(bool)]
    hashes = sorted(set(lsh["n_hashes"].dropna()))
    dense = dup[dup["exact"].astype(bool)].groupby(scen, sort=True)["task_acc"].median()
    rows = []
    for key, g in lsh.groupby([*scen, *TASK_CONFIG, "backend"], sort=True):
        row: dict[str, Any] = dict(zip([*scen, *TASK_CONFIG, "backend"], key, strict=True))
        acc = g.groupby("n_hashes")["task_acc"].median()
        row.update({h: float(acc.get(h, math.nan)) for h in hashes})
        row["dense"] = float(dense.get(tuple(key[: len(scen)]), math.nan))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*scen, *TASK_CONFIG, "backend", *hashes, "dense"]), hashes


def figure_task(points: pd.DataFrame, palette: Palette, varying: set[str]) -> Plot | Skipped:
    """Task accuracy (%) versus n_hashes on duplicate input, one line per L (and run,
    configuration), one panel per duplicate input; the paper's full-attention-trained row
    (:data:`PAPER_TABLE2`) dashed in black, the exact backends at their accuracy (1)."""
    table, hashes = task_table(points)
    if table.empty:
        return Skipped("no duplicate-input rows with a task accuracy (task_acc)")
    if len(hashes) < 2:
        return Skipped("duplicate rows have a single n_hashes; needs two or more")
    inputs = sorted(set(table["input"]))
    lengths = sorted(set(table["seqlen"]))
    shades = line_styles(lengths)
    config_varies = {c for c in TASK_CONFIG if table[c].map(str).nunique() > 1}
    fig = Figure(figsize=(5.2 * len(inputs) + 3.4, 4.2))
    axes = fig.subplots(1, len(inputs), squeeze=False)[0]
    for ax, input_name in zip(axes, inputs, strict=True):
        g = table[table["input"] == input_name]
        for _, row in g.iterrows():
            _task_line(ax, row, hashes, shades, palette, varying, config_varies)
        dense = g["dense"].dropna()
        if len(dense):
            value = float(dense.median())
            ax.axhline(100 * value, color="black", lw=1.6,
                       label=f"{REFERENCE_BACKEND} (exact): {100 * value:.1f} %")  # fmt: skip
        paper_h = sorted(PAPER_TABLE2)
        ax.plot(paper_h, [100 * PAPER_TABLE2[h] for h in paper_h], color="black", ls="--",
                marker="s", mfc="white", lw=1.2, label=PAPER_LABEL)  # fmt: skip
        ax.set_xscale("log", base=2)
        ticks = sorted(set(hashes) | set(paper_h))
        ax.set_xticks(ticks)
        ax.set_xticklabels([plain(h) for h in ticks])
        ax.set_xlabel("n_hashes (LSH-H)")
        ax.set_ylabel("task_acc (duplication task accuracy, %)")
        ax.set_ylim(min(40.0, ax.get_ylim()[0]), 102.0)
        ax.grid(True, alpha=0.25)
        ax.set_title(f"input={input_name}", fontsize=9)
    legend(axes[-1])
    fig.suptitle("Reformer Table 2 view: task_acc versus n_hashes on the duplication task",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    paper = " / ".join(f"{100 * PAPER_TABLE2[h]:.1f}" for h in sorted(PAPER_TABLE2, reverse=True))
    caption = (
        "Reformer Table 2 view: duplication-task accuracy (`task_acc`, the share of queries "
        "whose output is nearest to the value of their copy) versus n_hashes, one line per L, "
        f"one panel per duplicate input; {REFERENCE_BACKEND} (solid black) scores 1. Dashed: "
        f"{PAPER_LABEL} ({paper} % at LSH-8 / 4 / 2 / 1), a trained one-layer model, so compare "
        "the trend with n_hashes, not the values."
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
    """One line of the view: accuracy (%) of one (run, L, configuration) over n_hashes."""
    ys = np.array([row.loc[h] for h in hashes], float)  # .loc: labels, never positions
    xs = np.array(hashes, float)
    keep = np.isfinite(ys)
    colour, marker = shades[row["seqlen"]]
    label = ("[" + str(row["run"]) + "] " if "run" in varying else "") + (
        f"L={length_tick(row['seqlen'])}")  # fmt: skip
    for col in ("chunk_len", "chunks_before", "chunks_after"):
        if col in config_varies:
            label += f" {'m' if col == 'chunk_len' else col}={plain(row[col])}"
    if "weighting" in config_varies:
        label += f" {row['weighting']}"
    ax.plot(
        xs[keep],
        100 * ys[keep],
        color=colour,
        marker=palette.marker(str(row["run"])) if "run" in varying else marker,
        ls=_WEIGHTING_LINE.get(str(row["weighting"]), "-"),
        lw=1.4,
        ms=5,
        label=label,
    )
