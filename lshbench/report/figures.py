"""The report's figures for notebooks: ``frame -> matplotlib Figure``, no file written.

The frame is the analysis table ``lshbench report`` draws from: one row per configuration
(series) and sequence length, with the medians of the metrics (``time_seq`` in seconds per
sequence, ``mem_alloc_peak_bytes``, ``attn_tv``, ...; the columns of
:func:`lshbench.report.analysis.series_points`). :func:`load_frame` builds it from results
directories; each figure function draws the same Figure as the report (write it yourself with
``fig.savefig(...)`` if you want a file)::

    from lshbench.report.figures import load_frame, time_vs_seqlen
    frame = load_frame("results/quick")
    fig = time_vs_seqlen(frame)          # shown inline by Jupyter; nothing written
    fig = time_vs_seqlen(frame[frame["backend"].isin(["numba", "dense"])])  # a subset

A figure the data cannot support raises :class:`FigureSkipped` with the reason (one L only,
no dense rows, ...). The captions the report prints under each figure are in
:func:`caption`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from lshbench.report.plotting import Plot, Skipped

__all__ = [
    "FigureSkipped",
    "caption",
    "error_vs_chunk_len",
    "error_vs_n_hashes",
    "load_frame",
    "memory_vs_seqlen",
    "pareto",
    "time_per_token",
    "time_vs_seqlen",
]


class FigureSkipped(ValueError):
    """The data cannot support this figure; the message says why."""


def load_frame(*dirs: str | Path) -> pd.DataFrame:
    """The analysis table of the results in ``dirs`` (``lshbench sweep --out DIR``): one row
    per (series, L), several directories labelled by their names, as ``lshbench report``
    reads them."""
    from lshbench.report import analysis as ra

    runs = [ra.load_run(d) for d in dirs]
    return ra.series_points(ra.prepare(runs))


def _build(name: str, frame: pd.DataFrame) -> Plot | Skipped:
    """The report's figure ``name`` (a key of ``FIGURE_FILES``) of ``frame``, with the
    palette, varying axes, fits and crossovers computed from the frame itself."""
    from lshbench.report import analysis as ra
    from lshbench.report import figures_accuracy as fa
    from lshbench.report import figures_cost as fc
    from lshbench.report.plotting import Palette
    from lshbench.report.scaling import crossovers, fit_exponents

    palette, varying = Palette(frame), ra.varying_axes(frame)
    if name == "time":
        return fc.figure_time(frame, fit_exponents(frame), crossovers(frame), palette, varying)
    if name == "memory":
        return fc.figure_memory(frame, palette, varying)
    if name == "error_hashes":
        return fa.figure_error(frame, "n_hashes", ("method", "weighting"), name, palette, varying)
    if name == "error_chunk":
        return fa.figure_error(frame, "chunk_len", "n_hashes", name, palette, varying)
    if name == "pareto":
        return fa.figure_pareto(frame, palette, varying)
    return fc.figure_time_per_token(frame, palette, varying)


def _figure(name: str, frame: pd.DataFrame) -> Figure:
    from lshbench.report.plotting import Skipped

    result = _build(name, frame)
    if isinstance(result, Skipped):
        raise FigureSkipped(result.reason)
    return result.figure


def caption(name: str, frame: pd.DataFrame) -> str:
    """The report's caption of figure ``name`` (``"time"``, ``"memory"``, ``"error_hashes"``,
    ``"error_chunk"``, ``"pareto"``, ``"paper"``) for ``frame``; FigureSkipped if left out."""
    from lshbench.report.plotting import Skipped

    result = _build(name, frame)
    if isinstance(result, Skipped):
        raise FigureSkipped(result.reason)
    return result.caption


def time_vs_seqlen(frame: pd.DataFrame) -> Figure:
    """Time per sequence (ms) versus L, log-log, one line per backend and n_hashes, one panel
    per measured slice (method, weighting, ...), crossover stars where LSH overtakes the
    exact baseline."""
    return _figure("time", frame)


def memory_vs_seqlen(frame: pd.DataFrame) -> Figure:
    """Peak memory per call (MiB) versus L, measured (solid) and modelled (dashed), one row
    per measurement and one column per LSH backend."""
    return _figure("memory", frame)


def error_vs_n_hashes(frame: pd.DataFrame) -> Figure:
    """attn_tv (log, exact results at the floor) and mass recall versus n_hashes at the
    largest L, one line per method and weighting, one row of panels per input."""
    return _figure("error_hashes", frame)


def error_vs_chunk_len(frame: pd.DataFrame) -> Figure:
    """attn_tv and mass recall versus chunk length, one line per n_hashes, one row of panels
    per input."""
    return _figure("error_chunk", frame)


def pareto(frame: pd.DataFrame) -> Figure:
    """attn_tv versus time per sequence (ms), one panel per input and L: LSH and its random
    and local baselines, the Pareto front over LSH, the exact baseline and the error
    budgets."""
    return _figure("pareto", frame)


def time_per_token(frame: pd.DataFrame) -> Figure:
    """Time per token (µs) versus L for series that hold batch x L fixed (the `paper`
    preset); flat means linear cost."""
    return _figure("paper", frame)
