"""Running a sweep: :func:`run_sweep` (the Python API) and :func:`execute` (a checked spec).

A run plans the grid (:mod:`lshbench.sweep.plan`), opens the directory's
:class:`~lshbench.results.store.ResultStore`, records its run entry (this machine's
``machine_id`` and facts, the ``code_id``, host metadata, executor and spec), records the rows
decided without running (invalid configurations, unavailable backends, rows predicted over
``--mem-budget``), hands the rest to an executor cell by cell and records every row it
streams back. Rows already in the store from this machine and this code are reused (resume);
rows of other machines or code versions stay in the store as theirs and are never part of
this run's table (docs/design.md section 7, provenance).

Every access to the store is a method of :class:`_SweepRun` and goes through
:func:`_writing`, which turns an OSError (a full disk; the store's StoreError is one) into
one :class:`ResultsWriteError` line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lshbench.core.config import ConfigError, fail
from lshbench.results.cells import Task
from lshbench.results.load import STORE_NAME, StoreError
from lshbench.sweep.plan import estimate_seconds, plan_tasks, predicted_bytes
from lshbench.sweep.spec import SweepSpec, build_spec, exact_peers
from lshbench.util import fmt_bytes, load_average, os_error_reason, utc_now

if TYPE_CHECKING:
    import pandas as pd

    from lshbench.backends import BackendSpec
    from lshbench.results.schema import Row
    from lshbench.results.store import ResultStore
    from lshbench.sweep.local_executor import CellSpec, Executor

__all__ = [
    "CELL_OVERHEAD_S",
    "RAN",
    "ProgressLines",
    "ResultsWriteError",
    "SweepInterrupted",
    "check_out_dir",
    "decide_task",
    "duration_text",
    "execute",
    "over_budget",
    "prepare",
    "reusable_row",
    "run_sweep",
]

#: statuses of rows that ran; a re-run skips them (unless --force; --retry-failed: non-ok)
RAN = ("ok", "error", "timeout", "oom")


def run_sweep(
    out: str | os.PathLike[str] | None = None,
    *,
    preset: str | None = None,
    config: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    force: bool = False,
    retry_failed: bool = False,
    quiet: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run a sweep and return its rows (one per task of the grid) as a DataFrame.

    ``preset`` defaults to the config file's ``preset`` key, else ``quick``. ``options`` are
    the axes and settings of :mod:`lshbench.sweep.spec` (lists, scalars or comma strings; None =
    not given). Rows already in ``out`` are reused (``force`` redoes them,
    ``retry_failed`` redoes those not ``ok``). Raises ConfigError on a bad value before
    anything runs.
    """
    spec = build_spec(preset, config, out=out, **options)
    return execute(spec, executor=executor, force=force, retry_failed=retry_failed, quiet=quiet)


def execute(
    spec: SweepSpec,
    *,
    executor: Executor | None = None,
    force: bool = False,
    retry_failed: bool = False,
    quiet: bool = True,
) -> pd.DataFrame:
    """Run a checked :class:`SweepSpec` into its directory; returns the grid's rows, in grid
    order (one per task, invalid ones included).

    The rows are this run's: measured now, or reused from the store because this machine
    measured them with this code (``frame.attrs``: ``measured`` and ``reused``, counts).
    Raises ConfigError (one line) before anything runs when :func:`prepare` refuses the sweep,
    and :class:`ResultsWriteError` (one line) when writing the directory fails during it; the
    rows recorded before stay in the store.
    While it runs (in the main thread), SIGTERM and SIGHUP raise :class:`SweepInterrupted`
    as SIGINT raises KeyboardInterrupt: either way the run is closed and the exports written
    before the exception leaves; the previous handlers are restored afterwards."""
    from lshbench.results.store import ResultStore
    from lshbench.sweep.local_executor import LocalExecutor

    executor = executor or LocalExecutor(timeout_s=spec.timeout)
    tasks, invalid = prepare(spec, executor)
    with contextlib.ExitStack() as stack:
        with _writing(spec.out):
            store = stack.enter_context(ResultStore(spec.out))
        run = _SweepRun(spec, executor, store, quiet)
        stack.enter_context(_stop_signals_interrupt())
        run.begin()
        try:
            run.note_foreign_rows()
            to_run = run.decide(tasks, invalid, force=force, retry_failed=retry_failed)
            run.measure(to_run)
        except BaseException:
            run.abandon()
            raise
        grid_ids = [t.id for t in tasks] + [t.id for t, _ in invalid]
        return run.finish(grid_ids)


def prepare(spec: SweepSpec, executor: Executor) -> tuple[list[Task], list[tuple[Task, str]]]:
    """The plan of ``spec`` (tasks, invalid tasks with the reason), after every check that
    needs neither a measurement nor a write, so that a sweep that cannot do what it was asked
    stops with one ConfigError line before anything runs or is written:

    * a ``threads`` value above what ``executor`` can give a cell (its ``max_threads``, if
      it has one: the local executor's is this machine's usable CPUs);
    * a grid where no task can run, or where every LSH configuration is invalid (only the
      non-hashing baselines would run).
    """
    limit = getattr(executor, "max_threads", None)
    if limit is not None:
        for threads in spec.threads:
            if threads > limit:
                fail(
                    "threads",
                    threads,
                    f"must be <= {limit}: this machine has {limit} usable CPUs ('all' = {limit})",
                )
    tasks, invalid = plan_tasks(spec)
    _require_runnable(tasks, invalid)
    check_out_dir(spec.out)
    return tasks, invalid


def check_out_dir(path: Path) -> None:
    """Fail (one ConfigError line) unless ``path`` is a directory this process can write, or
    can be created as one: not a file, not under a file, not in an unwritable directory.

    Writability is tried, not inferred from mode bits (which do not stop root, and say
    nothing of read-only file systems): a temporary file is created and removed in ``path``,
    or in its nearest existing parent when ``path`` does not exist yet."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        if existing == path:
            fail("out", str(path), "is a file, not a directory")
        fail("out", str(path), f"cannot be created: {existing} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lshbench-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if existing == path else f" (its parent {existing})"
        fail("out", str(path), f"directory{where} is not writable: {exc.strerror or exc}")
    for name in (STORE_NAME, f"{STORE_NAME}-wal"):
        db = path / name
        if db.exists() and not os.access(db, os.W_OK):
            fail("out", str(path), f"{name} there is not writable")


class ResultsWriteError(OSError):
    """Writing the results directory failed during a sweep (disk full, permissions, ...).

    The message is one line naming the directory and the OS error; ``errno`` is the OS
    error's. Rows recorded before it stay in the store, so the same command resumes the sweep
    once the cause is fixed."""

    def __init__(self, directory: Path, exc: OSError) -> None:
        if isinstance(exc, StoreError):  # names the directory and what is kept already
            super().__init__(f"{exc}; run the same command again to resume")
        else:
            super().__init__(
                f"cannot write the results in {directory}: {os_error_reason(exc)}; the rows "
                "recorded so far are kept, run the same command again to resume"
            )
        self.errno = exc.errno


@contextlib.contextmanager
def _writing(directory: Path) -> Iterator[None]:
    """Turn an OSError of a write to ``directory`` into one :class:`ResultsWriteError`."""
    try:
        yield
    except ResultsWriteError:
        raise
    except OSError as exc:
        raise ResultsWriteError(directory, exc) from exc


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGTERM or SIGHUP: handled as Ctrl-C (SIGINT) is, the run closed
    and the exports brought level with the store; ``signum`` names the signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


#: signals that end a sweep the way Ctrl-C does (a job scheduler's stop, a closed terminal)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """While the sweep runs, SIGTERM and SIGHUP raise :class:`SweepInterrupted` (the first
    one; later ones are ignored while the run closes), as SIGINT raises KeyboardInterrupt.
    Outside the main thread (no handlers can be set there) nothing changes."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise SweepInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _require_runnable(tasks: list[Task], invalid: list[tuple[Task, str]]) -> None:
    """Fail when nothing of the grid can run, or when no LSH configuration can."""
    if not invalid:
        return
    hashing = [t for t in tasks if t.uses_hashing]
    if tasks and hashing:
        return
    baselines = sorted({t.backend for t in tasks})
    only = f"; only {', '.join(baselines)} would run" if baselines else ""
    raise ConfigError(
        f"{invalid[0][1]} - so no LSH configuration of the grid can run "
        f"({len(invalid)} invalid{only})"
    )


def reusable_row(old: Row | None, task: Task, facts: BackendSpec) -> Row | None:
    """``old`` (the store's latest row of ``task`` by this machine and this code) if a run
    may reuse it, else None: never a row of an input file whose SHA-256 differs from the
    task's (the file changed), nor one measured with another kernel than the one the
    environment forces (``BackendSpec.kernel_env``)."""
    if old is None:
        return None
    if old.get("input_sha256") != task.input_sha256:
        return None  # the input file changed since: measure it again
    forced = facts.forced_kernel()
    if forced is not None and old.get("kernel") not in (None, forced):
        return None  # measured with another kernel than the one asked for now
    return old


def over_budget(task: Task, facts: BackendSpec, budget: int) -> str | None:
    """The oom_predicted message of a task predicted above ``budget`` bytes, else None."""
    need, model = predicted_bytes(task, facts)
    if need <= budget:
        return None
    what = f"backend model {fmt_bytes(model)}" if model else "no backend model"
    need_text, budget_text = fmt_bytes(need), fmt_bytes(budget)
    if need_text == budget_text:  # equal when rounded: say the bytes
        need_text, budget_text = f"{need:,} B", f"{budget:,} B"
    return (
        f"predicted {need_text} > --mem-budget {budget_text} "
        f"({what}; worker, input and reference included)"
    )


class _Deciding(Protocol):
    """What :func:`decide_task` needs: the backends' availability and the budget check."""

    available: dict[str, Any]

    def over_budget(self, task: Task) -> str | None: ...


def decide_task(
    task: Task, old: Row | None, run: _Deciding, *, force: bool, retry_failed: bool
) -> tuple[str, str]:
    """What a run does with a valid task, given its reusable row ``old``
    (:func:`reusable_row`): ``("reuse", "")``, ``("run", "")``, or a status decided without
    running and its message (``skipped``: backend not available, or no GPU for a cuda task;
    ``oom_predicted``: over ``--mem-budget``). The sweep and its dry run
    (:mod:`lshbench.sweep.preview`) both ask this, so the dry run counts what the sweep then
    measures."""
    done = ("ok",) if retry_failed else RAN
    if not force and old is not None and old["status"] in done:
        return "reuse", ""
    info = run.available[task.backend]
    if not info.available:
        return "skipped", f"backend not available: {info.reason}"
    if task.device == "cuda":
        from lshbench.measurement.devices import cuda_unavailable_reason

        no_cuda = cuda_unavailable_reason()
        if no_cuda is not None:
            return "skipped", no_cuda
    over = run.over_budget(task)
    if over is not None:
        return "oom_predicted", over
    return "run", ""


class _SweepRun:
    """One run of a sweep into an open store: its run entry, its decisions and its rows.

    The run is this machine with this code (:func:`lshbench.measurement.machine.provenance`,
    taken once): it reuses only rows the store holds for the same cell, machine_id and
    code_id (:meth:`previous`), and its table (:meth:`finish`) holds only the rows it reused
    or recorded; rows of other machines or code versions stay in the store as theirs.
    """

    def __init__(self, spec: SweepSpec, executor: Executor, store: ResultStore, quiet: bool):
        from lshbench.backends import backend_spec, list_backends
        from lshbench.measurement.machine import host_metadata, provenance

        self.spec = spec
        self.executor = executor
        self.store = store
        self.quiet = quiet
        self.facts = {name: backend_spec(name) for name in spec.backend}
        self.available = list_backends()
        stamp = utc_now().replace(":", "").replace("-", "")[:15]
        self.run_id = f"{stamp}-{secrets.token_hex(3)}"
        ids = provenance()
        self.machine_id: str = ids["machine_id"]
        self.code_id: str = ids["code_id"]
        self.entry: dict[str, Any] = {
            "run_id": self.run_id,
            "machine_id": self.machine_id,
            "code_id": self.code_id,
            "machine": ids["machine"],
            "start_time": utc_now(),
            "end_time": None,
            **host_metadata(),
            "executor": executor.name,
            "spec": spec.as_dict(),
            "exact_peers": exact_peers(spec),
            "input_files": [
                {k: f.as_dict()[k] for k in ("name", "path", "sha256")}
                for f in spec.input_files.values()
            ],
        }
        self.workers: dict[str, Any] = {}
        #: task id -> this run's row of it (reused from the store or recorded now)
        self.mine: dict[str, Row] = {}
        self.counts: Counter[str] = Counter()
        self.estimate: dict[str, float] = {}
        self.n_to_run = 0
        #: rows of earlier runs this run took as they were (resume)
        self.n_reused = 0
        self.bar: Any = None

    # ------------------------------------------------------------ the store

    def begin(self) -> None:
        """Record this run's entry (machine, code, host facts, executor, spec)."""
        with _writing(self.store.dir):
            self.store.begin_run(self.entry)

    def record(self, row: Row) -> None:
        """Stamp a row with this run and append it to the store.

        ``machine_id`` and ``code_id`` stay as the row has them (the worker process that
        measured it stamps its own); a row without them (decided here) gets this run's."""
        row["run_id"] = self.run_id
        defaults = (
            ("executor", self.executor.name),
            ("concurrency", self.executor.concurrency),
            ("machine_id", self.machine_id),
            ("code_id", self.code_id),
        )
        for key, value in defaults:
            if row.get(key) is None:
                row[key] = value
        if row.get("finished_at") is None:
            row["finished_at"] = utc_now()
        with _writing(self.store.dir):
            self.store.append(row)
        ident = str(row["cell_id"])
        self.mine[ident] = self.store.rows[ident]

    def previous(self, task: Task) -> Row | None:
        """The store's row of ``task`` measured by this machine with this code, or None
        (:func:`reusable_row`)."""
        with _writing(self.store.dir):
            old = self.store.previous(task.id, self.machine_id, self.code_id)
        return reusable_row(old, task, self.facts[task.backend])

    def reuse(self, old: Row) -> None:
        """Count a row from the store as this run's (resume)."""
        self.mine[str(old["cell_id"])] = old

    def record_once(self, task: Task, status: str, message: str) -> None:
        """Rows decided here (never ran): appended only when they changed."""
        from lshbench.results.store import make_row

        old = self.previous(task)
        if old is not None and old["status"] == status and old["message"] == message:
            self.reuse(old)
            return
        self.record(make_row(task, status, message))

    def note_foreign_rows(self) -> None:
        """Say (unless quiet) when the store holds rows of other machines or code versions."""
        if self.quiet:
            return
        with _writing(self.store.dir):
            keys = self.store.latest()
        other_machine = {m for _, m, _ in keys if m != self.machine_id}
        other_code = {c for _, m, c in keys if m == self.machine_id and c != self.code_id}
        if not other_machine and not other_code:
            return
        parts = []
        if other_machine:
            parts.append(f"{len(other_machine)} other machine(s)")
        if other_code:
            parts.append(f"{len(other_code)} other version(s) of the code")
        print(
            f"note: {self.spec.out} holds rows measured by {' and '.join(parts)}; they stay "
            f"theirs: this run (machine {self.machine_id}, code {self.code_id}) measures "
            "every cell it has no row of",
            file=sys.stderr,
        )

    # ------------------------------------------------------------ deciding

    def decide(
        self,
        tasks: list[Task],
        invalid: list[tuple[Task, str]],
        *,
        force: bool,
        retry_failed: bool,
    ) -> list[Task]:
        """Record the rows decided without running; return the tasks to measure."""
        for task, reason in invalid:
            self.record_once(task, "skipped", f"invalid configuration: {reason}")
        to_run: list[Task] = []
        for task in tasks:
            old = self.previous(task)
            verdict, message = decide_task(task, old, self, force=force, retry_failed=retry_failed)
            if verdict == "reuse":
                assert old is not None
                self.reuse(old)
                self.n_reused += 1
            elif verdict == "run":
                to_run.append(task)
            else:
                self.record_once(task, verdict, message)
        return to_run

    def over_budget(self, task: Task) -> str | None:
        """The oom_predicted message of a task predicted above --mem-budget, else None."""
        return over_budget(task, self.facts[task.backend], self.spec.mem_budget)

    # ------------------------------------------------------------ measuring

    def measure(self, to_run: list[Task]) -> None:
        """Run ``to_run`` on the executor, one cell (input) at a time, recording each row."""
        from lshbench.sweep.local_executor import CellSpec

        cells: dict[str, list[Task]] = {}
        for task in to_run:
            cells.setdefault(task.cell_key, []).append(task)
        registry = {name: self.facts[name].as_dict() for name in self.spec.backend}
        self.estimate = {
            t.id: estimate_seconds(t, self.spec.repeats, self.facts[t.backend].uses_hashing)
            for t in to_run
        }
        self.n_to_run = len(to_run)
        self.measure_sgemm(to_run)
        cell_specs = [CellSpec(ts, self.spec.repeats, registry) for ts in cells.values()]
        total = sum(self.estimate.values()) + CELL_OVERHEAD_S * len(cell_specs)
        self.bar = _progress(total, self.quiet)
        self.executor.run_cells(self.cells(cell_specs), self.on_row, self.on_env)

    def measure_sgemm(self, to_run: list[Task]) -> None:
        """This machine's float32 GEMM rate at every thread count of the CPU tasks about to
        run, into this run's entry (``sgemm``: threads -> GFLOP/s and how it was measured,
        :func:`lshbench.measurement.calibration.sgemm_rates`): the report's exact floor,
        docs/design.md section 8. Only where the cells run on this machine (the local
        executor); a Dask run's rows carry their own host's ``calib_gflops``."""
        threads = {t.threads for t in to_run if t.device == "cpu"}
        if not threads or self.executor.name != "local":
            return
        from lshbench.measurement.calibration import sgemm_rates, sgemm_size

        n = sgemm_size(max(t.seqlen for t in to_run))
        self.entry["sgemm"] = sgemm_rates(threads, n=n)
        with _writing(self.store.dir):
            self.store.update_run(self.run_id, {"sgemm": self.entry["sgemm"]})

    def cells(self, cell_specs: list[CellSpec]) -> Iterator[CellSpec]:
        """The cells, handed out one by one; the tables are exported after each."""
        for cs in cell_specs:
            yield cs
            self.bar.update(CELL_OVERHEAD_S)
            with _writing(self.store.dir):
                self.store.export()

    def on_row(self, row: Row) -> None:
        """A finished row from the executor: record it, advance the progress bar."""
        self.record(row)
        self.counts[str(row["status"])] += 1
        self.bar.update(self.estimate.get(str(row["cell_id"]), 0.0))
        self.bar.set_postfix_str(
            f"{sum(self.counts.values())}/{self.n_to_run} rows "
            + " ".join(f"{k}={v}" for k, v in sorted(self.counts.items())),
            refresh=False,
        )

    def on_env(self, threads: int, env: dict[str, Any]) -> None:
        """A worker's environment (thread variables, BLAS pools): into this run's entry."""
        self.workers[str(threads)] = env
        with _writing(self.store.dir):
            self.store.update_run(self.run_id, {"workers": self.workers})

    def finish(self, grid_ids: list[str]) -> pd.DataFrame:
        """Close the bar, close this run's entry and export the tables; returns this run's
        rows of ``grid_ids`` (those it has), in that order."""
        from lshbench.results.schema import rows_to_frame

        if self.bar is not None:
            self.bar.close()
        with _writing(self.store.dir):
            self.store.end_run(
                self.run_id, {"load_avg_end": load_average(), "rows_run": dict(self.counts)}
            )
            self.store.export()
        frame = rows_to_frame(self.mine[i] for i in grid_ids if i in self.mine)
        # how many of them were measured now and how many reused (the rest: decided here)
        frame.attrs.update(measured=sum(self.counts.values()), reused=self.n_reused)
        return frame

    def abandon(self) -> None:
        """:meth:`finish` after an error: a write error now is dropped, so that the error
        that ended the run is the one reported."""
        with contextlib.suppress(ResultsWriteError):
            self.finish([])


#: seconds of progress bar per cell for starting its worker (imports, input, reference)
CELL_OVERHEAD_S = 1.5


def _progress(total: float, quiet: bool) -> Any:
    """The sweep's progress on stderr: a tqdm bar on a terminal, plain lines
    (:class:`ProgressLines`) otherwise (CI, nohup, a notebook, a pipe), nothing when quiet."""
    if quiet:
        return ProgressLines(total, stream=None)
    if sys.stderr.isatty() and not os.environ.get("CI"):
        from tqdm import tqdm

        return tqdm(
            total=total,
            unit="s",
            bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
            desc="sweep",
            file=sys.stderr,
        )
    return ProgressLines(total, stream=sys.stderr)


class ProgressLines:
    """Progress as plain lines, for a stderr that is not a terminal: the interface of the
    tqdm bar the sweep uses (``update``, ``set_postfix_str``, ``close``).

    A line ``sweep: 12/40 rows ok=11 error=1, 35 s elapsed, about 1m40s left`` is written
    when a row finishes, at most one every ``every_s`` seconds (the first and the last row
    always); the time left scales the time since the first row finished by the estimated
    work still to do (seconds of :func:`~lshbench.sweep.plan.estimate_seconds`), so the
    start-up before the first row (the GEMM calibration, loading or compiling the kernels)
    does not inflate it; the first line has no estimate. ``stream`` None writes nothing."""

    def __init__(self, total: float, stream: Any, every_s: float = 10.0) -> None:
        import time

        self._clock = time.monotonic
        self.total = total
        self.stream = stream
        self.every_s = every_s
        self.done = 0.0
        self.postfix = ""
        self.start = self._clock()
        self.last: float | None = None
        self.first: tuple[float, float] | None = None  # (time, work done) at the first row
        self.pending = False

    def update(self, n: float = 1.0) -> None:
        self.done += n

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """A row finished (``text``: rows so far by status): a line if one is due."""
        self.postfix = text
        self.pending = True
        now = self._clock()
        if self.first is None:
            self.first = (now, self.done)
        if self.last is None or now - self.last >= self.every_s:
            self._line(now)

    def close(self) -> None:
        if self.pending:
            self._line(self._clock())

    def _line(self, now: float) -> None:
        self.last, self.pending = now, False
        if self.stream is None:
            return
        elapsed = now - self.start
        left = ""
        if self.first is not None and self.first[1] < self.done < self.total:
            since, done_then = self.first
            rate = (self.done - done_then) / max(now - since, 1e-9)  # work seconds per second
            left = f", about {duration_text((self.total - self.done) / rate)} left"
        line = f"sweep: {self.postfix}, {duration_text(elapsed)} elapsed{left}"
        with contextlib.suppress(OSError, ValueError):  # a closed stream: no progress
            print(line, file=self.stream)
            self.stream.flush()


def duration_text(seconds: float) -> str:
    """Seconds as ``35 s``, ``4m05s`` or ``2h03m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
