"""A sweep's dry run: what it would measure, reuse and skip, its memory and its time.

:func:`preview` plans a checked :class:`~lshbench.sweep.spec.SweepSpec` as
:func:`~lshbench.sweep.run.execute` would (:func:`~lshbench.sweep.run.prepare`, then
:func:`~lshbench.sweep.run.decide_task` for every task, against the rows of ``--out`` read
without writing: :func:`lshbench.results.load.stored_rows`), and runs and writes nothing.
:func:`preview_lines` is its text for ``lshbench sweep --dry-run``.

Memory is the cost model's prediction (:func:`~lshbench.sweep.plan.predicted_bytes`: the
worker, its input and reference, and the largest phase) and a cell's peak the largest of
its tasks'. Time is, per row to measure, an earlier row of the same task on this machine
(any code version: its median seconds per call times the calls a measurement makes), else
the cost model (:func:`~lshbench.sweep.plan.estimate_seconds`), plus each cell's worker
start; the text says how many rows each source gave.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lshbench.results.cells import Task
from lshbench.sweep.plan import ASSUMED_FLOPS, estimate_seconds, predicted_bytes, task_seconds
from lshbench.sweep.run import (
    CELL_OVERHEAD_S,
    decide_task,
    duration_text,
    over_budget,
    prepare,
    reusable_row,
)
from lshbench.sweep.spec import SweepSpec
from lshbench.util import fmt_bytes

if TYPE_CHECKING:
    from lshbench.backends import BackendSpec
    from lshbench.results.schema import Row

__all__ = ["CellPreview", "SweepPreview", "preview", "preview_lines"]


@dataclass
class CellPreview:
    """One cell (one input: one worker process): its rows to measure, its predicted peak
    bytes (the largest of its tasks') and its estimated seconds."""

    task: Task  #: the cell's first task (its input axes)
    to_measure: int = 0
    peak_bytes: int = 0
    seconds: float = 0.0


@dataclass
class SweepPreview:
    """What a sweep would do. ``grid``: rows of the grid per backend (invalid ones
    included); ``measure``: rows it would measure, per backend; ``reused``: rows of
    ``--out`` it would reuse (this machine, this code); ``decided``: rows it would record
    without running, per status (``skipped``, ``oom_predicted``); ``cells``: the cells with
    rows to measure, in run order; ``from_rows`` / ``from_model``: rows whose time comes
    from an earlier row of this machine / from the cost model."""

    spec: SweepSpec
    grid: Counter[str] = field(default_factory=Counter)
    measure: Counter[str] = field(default_factory=Counter)
    reused: int = 0
    decided: Counter[str] = field(default_factory=Counter)
    cells: list[CellPreview] = field(default_factory=list)
    from_rows: int = 0
    from_model: int = 0

    @property
    def n_measure(self) -> int:
        return sum(self.measure.values())

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cells)


class _Decider:
    """:func:`decide_task`'s view of the backends and the budget, without a store."""

    def __init__(self, spec: SweepSpec, facts: dict[str, BackendSpec]) -> None:
        from lshbench.backends import list_backends

        self.spec = spec
        self.facts = facts
        self.available: dict[str, Any] = list_backends()

    def over_budget(self, task: Task) -> str | None:
        return over_budget(task, self.facts[task.backend], self.spec.mem_budget)


def preview(
    spec: SweepSpec, executor: Any, *, force: bool = False, retry_failed: bool = False
) -> SweepPreview:
    """What ``execute(spec, executor=executor, force=..., retry_failed=...)`` would do now,
    run and written nothing. Raises ConfigError as the sweep would before it runs."""
    from lshbench.backends import backend_spec
    from lshbench.measurement.machine import provenance
    from lshbench.results.store import check_store_target

    tasks, invalid = prepare(spec, executor)
    check_store_target(spec.out)  # the sweep would refuse it when it opens the store
    facts = {name: backend_spec(name) for name in spec.backend}
    ids = provenance()
    mine, timed = _earlier_rows(spec, ids["machine_id"], ids["code_id"])
    out = SweepPreview(spec)
    decider = _Decider(spec, facts)
    for task, _ in invalid:
        out.grid[task.backend] += 1
        out.decided["skipped"] += 1
    cells: dict[str, CellPreview] = {}
    for task in tasks:
        out.grid[task.backend] += 1
        old = reusable_row(mine.get(task.id), task, facts[task.backend])
        verdict, _ = decide_task(task, old, decider, force=force, retry_failed=retry_failed)
        if verdict == "reuse":
            out.reused += 1
            continue
        if verdict != "run":
            out.decided[verdict] += 1
            continue
        out.measure[task.backend] += 1
        cell = cells.get(task.cell_key)
        if cell is None:
            cell = cells[task.cell_key] = CellPreview(task, seconds=CELL_OVERHEAD_S)
        cell.to_measure += 1
        cell.peak_bytes = max(cell.peak_bytes, predicted_bytes(task, facts[task.backend])[0])
        per_call = timed.get(task.id)
        if per_call is not None:
            out.from_rows += 1
            cell.seconds += task_seconds(per_call, spec.repeats)
        else:
            out.from_model += 1
            uses_hashing = facts[task.backend].uses_hashing
            cell.seconds += estimate_seconds(task, spec.repeats, uses_hashing)
    out.cells = list(cells.values())
    return out


def _earlier_rows(
    spec: SweepSpec, machine_id: str, code_id: str
) -> tuple[dict[str, Row], dict[str, float]]:
    """(the latest row of each task by this machine and code, the latest measured seconds
    per call of each task by this machine with any code) in ``spec.out``."""
    from lshbench.results.load import stored_rows

    mine: dict[str, Row] = {}
    timed: dict[str, float] = {}
    for row in stored_rows(spec.out):
        if row.get("machine_id") != machine_id:
            continue
        ident = str(row["cell_id"])
        if row.get("code_id") == code_id:
            mine[ident] = row
        seconds = row.get("time_median_s")
        if row["status"] == "ok" and isinstance(seconds, int | float) and seconds > 0:
            timed[ident] = float(seconds)
    return mine, timed


#: cells listed one per line; more are summed up in one line
MAX_CELL_LINES = 40


def preview_lines(p: SweepPreview, executor_name: str = "local") -> list[str]:
    """The dry run's text: rows per backend, reused and decided rows, one line per cell
    with rows to measure (its input, rows, predicted peak memory, estimated time), the
    largest peak against ``--mem-budget`` and the estimated total time."""
    spec = p.spec

    def per_backend(counts: Counter[str]) -> str:
        return ", ".join(f"{name} {counts[name]}" for name in spec.backend if counts[name])

    total = sum(p.grid.values())
    lines = [
        f"dry run of preset {spec.preset} into {spec.out}: nothing is measured or written",
        f"grid: {total} rows ({per_backend(p.grid)})",
        f"already in {spec.out} (this machine and code), reused: {p.reused}",
    ]
    for status, n in sorted(p.decided.items()):
        why = "over --mem-budget" if status == "oom_predicted" else "invalid or unavailable"
        lines.append(f"recorded without running: {n} {status} ({why})")
    by_backend = f" ({per_backend(p.measure)})" if p.measure else ""
    lines.append(f"to measure: {p.n_measure} rows{by_backend}")
    lines.append(exact_peer_line(spec))
    if not p.cells:
        return lines
    varying = _varying_axes(p.cells)
    lines.append(
        f"cells to run ({len(p.cells)}, one worker process each; peak memory predicted by "
        "the cost model):"
    )
    for cell in p.cells[:MAX_CELL_LINES]:
        lines.append(
            f"  {_cell_label(cell.task, varying)}: {cell.to_measure} rows, peak "
            f"{fmt_bytes(cell.peak_bytes)}, ~{duration_text(cell.seconds)}"
        )
    if len(p.cells) > MAX_CELL_LINES:
        rest = p.cells[MAX_CELL_LINES:]
        lines.append(
            f"  ... {len(rest)} more cells: {sum(c.to_measure for c in rest)} rows, peak "
            f"{fmt_bytes(max(c.peak_bytes for c in rest))}, "
            f"~{duration_text(sum(c.seconds for c in rest))}"
        )
    peak = max(c.peak_bytes for c in p.cells)
    lines.append(
        f"predicted peak memory: {fmt_bytes(peak)} per cell at most "
        f"(--mem-budget {fmt_bytes(spec.mem_budget)})"
    )
    sources = []
    if p.from_rows:
        sources.append(f"earlier rows of this machine for {p.from_rows} rows")
    if p.from_model:
        sources.append(f"the cost model for {p.from_model} rows")
    how = "one cell at a time" if executor_name == "local" else "if run one cell at a time"
    lines.append(
        f"estimated time: ~{duration_text(p.seconds)} {how} (from {' and '.join(sources)}; "
        f"rough: the cost model assumes {ASSUMED_FLOPS / 1e9:g} GFLOP/s)"
    )
    return lines


def exact_peer_line(spec: SweepSpec) -> str:
    """Whether the exact peers (torch-sdpa) run beside the sweep's other exact backends, and
    why not (:func:`~lshbench.sweep.spec.exact_peers`)."""
    from lshbench.backends import backend_spec
    from lshbench.sweep.spec import exact_peers

    exact = [n for n in spec.backend if not backend_spec(n).uses_hashing]
    parts = []
    for name, status in exact_peers(spec).items():
        if status != "in the run":
            parts.append(f"{name} not in the run ({status})")
        elif not spec.backend_given:
            parts.append(f"{name} in the run (installed here; added unless --backend is given)")
    shown = ", ".join(exact) or "none"
    return "; ".join([f"exact backends (the exact baseline is the fastest): {shown}", *parts])


#: the task fields that tell cells apart, in the order a cell's label names them
_CELL_FIELDS = (
    "input", "target_entropy", "value_corr", "local_share", "layer", "head", "seqlen", "batch", "d",
    "dtype", "causal", "threads", "seed",
)  # fmt: skip
_SHORT = {
    "target_entropy": "entropy", "value_corr": "rho", "local_share": "local", "seqlen": "L",
    "batch": "B",
}  # fmt: skip


def _varying_axes(cells: list[CellPreview]) -> list[str]:
    """The fields that differ between cells (input and L always)."""
    out = []
    for name in _CELL_FIELDS:
        values = {getattr(c.task, name) for c in cells}
        if name in ("input", "seqlen") or len(values) > 1:
            out.append(name)
    return out


def _cell_label(task: Task, fields: list[str]) -> str:
    parts = []
    for name in fields:
        value = getattr(task, name)
        if value is None:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(text if name == "input" else f"{_SHORT.get(name, name)}={text}")
    return " ".join(parts)
