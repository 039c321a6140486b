"""Executors: run cells in fresh worker processes and stream finished rows back.

The interface is small so other executors (Dask, Slurm) can stream into the same store:
``executor.run_cells(cells, on_row)`` runs every :class:`CellSpec` and calls ``on_row(row)``
for each finished row, failures included, in the order rows finish. Every row carries
``executor`` (the executor's name) and ``concurrency`` (cells it runs at once); the worker
fills ``host``, ``machine_id`` and ``code_id`` (the executor, for rows of a worker that died:
the same machine).

:class:`LocalExecutor` runs cells one after another on this machine, each in a new
``python -m lshbench.measurement.worker`` process (spawned, never forked) whose thread
variables are set from the cell's ``threads`` before it starts. It is the timing-grade
executor: nothing else of the sweep runs while a cell is measured.

Failures are rows, and the cell goes on in a new worker without the rows that failed:

* no event from the worker for ``timeout_s`` seconds: the worker's process group is killed,
  the rows of the phase in flight become ``timeout``;
* the worker killed by a SIGKILL the executor did not send: ``oom`` when the kernel's
  OOM killer acted meanwhile (an OOM-kill counter of :mod:`lshbench.sweep.oom_kills` rose),
  else ``error`` "killed by signal SIGKILL" (a user, a job scheduler);
* any other death: ``error`` with the signal or exit status and the tail of its stderr.

A MemoryError inside the worker (an allocation beyond ``mem_limit_bytes``, or refused by the
OS) is an ``oom`` row that the worker itself reports; the cell goes on.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lshbench.measurement.machine import usable_cpus
from lshbench.measurement.worker import provenance_ids, thread_env
from lshbench.results.cells import Task
from lshbench.results.schema import Row
from lshbench.results.store import make_row
from lshbench.sweep.oom_kills import oom_kill_counts, oom_killed_since
from lshbench.util import fmt_bytes

__all__ = ["CellSpec", "Executor", "LocalExecutor", "stamp_row", "worker_command"]

RowCallback = Callable[[Row], None]
EnvCallback = Callable[[int, dict[str, Any]], None]
STDERR_TAIL = 400  # characters of a dead worker's stderr kept in the message


@dataclass
class CellSpec:
    """The tasks of one cell (one input) and how to measure them."""

    tasks: list[Task]
    repeats: int
    #: backend name -> its registry entry, ``BackendSpec.as_dict()`` (the worker registers it)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return int(self.tasks[0].threads)

    def payload(self, tasks: list[Task]) -> dict[str, Any]:
        """The worker's first line (see :mod:`lshbench.measurement.worker`), as JSON values."""
        return {
            "tasks": [t.as_dict() for t in tasks],
            "repeats": self.repeats,
            "backends": self.backends,
        }


class Executor(Protocol):
    """What the sweep needs from an executor.

    An executor may also have ``max_threads``: the most threads one cell may ask for (the
    sweep rejects a larger ``threads`` value before anything runs); without it, the executor
    deals with such cells itself (Dask: ``skipped`` rows naming the workers' budgets).
    """

    name: str
    concurrency: int

    def run_cells(
        self,
        cells: Iterable[CellSpec],
        on_row: RowCallback,
        on_env: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        """Run every cell; ``on_row`` for each finished row, ``on_env(threads, env)`` per
        worker that reports its environment."""


class _Lines:
    """Line reader over a pipe with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.eof = False

    def read(self, timeout: float) -> list[bytes] | None:
        """Complete lines available within ``timeout`` s ([] at EOF, None on timeout)."""
        if self.eof:
            return []
        if not self.selector.select(max(0.0, timeout)):
            return None
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.eof = True
            return []
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines

    def close(self) -> None:
        self.selector.close()


def worker_command(python: str, mem_limit_bytes: int | None = None) -> list[str]:
    """Command line of a cell's worker process.

    With ``mem_limit_bytes`` the worker first lowers its own ``RLIMIT_DATA`` (private writable
    memory: heap, anonymous mmap, thread stacks; Linux >= 4.7) to that many bytes, before
    NumPy is imported, so an allocation beyond it raises MemoryError inside the worker (an
    ``oom`` row; the cell goes on) instead of the machine swapping or the kernel killing it.
    """
    if mem_limit_bytes is None:
        return [python, "-m", "lshbench.measurement.worker"]
    n = int(mem_limit_bytes)
    start = (
        f"import resource; resource.setrlimit(resource.RLIMIT_DATA, ({n}, {n})); "
        "from lshbench.measurement.worker import main; main()"
    )
    return [python, "-c", start]


def stamp_row(row: Row, executor: str, concurrency: int) -> Row:
    """Mark ``row`` (in place, and return it) as run by ``executor`` with ``concurrency``
    cells at once: the stamp every executor puts on the rows it hands to ``on_row``."""
    row["executor"] = executor
    row["concurrency"] = concurrency
    return row


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@dataclass
class LocalExecutor:
    """Sequential, one fresh worker process per cell (timing-grade)."""

    timeout_s: float = 600.0
    python: str = sys.executable
    name: str = "local"
    concurrency: int = 1
    #: RLIMIT_DATA of each worker process in bytes (None: no limit); see worker_command
    mem_limit_bytes: int | None = None

    @property
    def max_threads(self) -> int:
        """The most threads a cell may ask for: the CPUs this process may run on."""
        return usable_cpus()

    def run_cells(
        self,
        cells: Iterable[CellSpec],
        on_row: RowCallback,
        on_env: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        for cell in cells:
            self.run_cell(cell, on_row, on_env)

    def _stamp(self, row: Row) -> Row:
        stamp_row(row, self.name, self.concurrency)
        if row.get("machine_id") is None:  # rows of a dead worker: this machine measured
            row.update(provenance_ids())
        row["host"] = row.get("host") or socket.gethostname()
        if self.mem_limit_bytes is not None and row.get("status") == "oom":
            limit = fmt_bytes(self.mem_limit_bytes)
            row["message"] = f"{row.get('message') or ''} [cell memory limit {limit}]".strip()
        return row

    def run_cell(
        self,
        cell: CellSpec,
        on_row: RowCallback,
        on_env: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        """Run one cell to the end, restarting the worker after a failure."""
        pending = {t.id: t for t in cell.tasks}
        while pending:
            failed = self._run_worker(cell, list(pending.values()), pending, on_row, on_env)
            for ident, (status, message) in failed.items():
                on_row(self._stamp(_failed_row(pending.pop(ident), status, message)))

    def _run_worker(
        self,
        cell: CellSpec,
        tasks: list[Task],
        pending: dict[str, Task],
        on_row: RowCallback,
        on_env: EnvCallback | None,
    ) -> dict[str, tuple[str, str]]:
        """One worker over ``tasks``; finished rows leave ``pending``. Returns the rows to
        record as failed (id -> (status, message)) when the worker did not finish."""
        state = _WorkerState(oom_kills=oom_kill_counts())
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                worker_command(self.python, self.mem_limit_bytes),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=thread_env(cell.threads),
                start_new_session=True,  # its own process group, killed as a whole
            )
            assert proc.stdin is not None and proc.stdout is not None
            reader = _Lines(proc.stdout)
            try:
                proc.stdin.write((json.dumps(cell.payload(tasks)) + "\n").encode())
                proc.stdin.flush()
                self._follow(proc, reader, state, cell, pending, on_row, on_env)
            except BaseException:
                _kill_group(proc)
                raise
            finally:
                reader.close()
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            returncode = proc.wait()
            err.seek(0)
            tail = stderr_summary(err.read()[-(1 << 16) :].decode(errors="replace"))
        if state.done and returncode == 0:
            return {}
        blamed = [i for i in state.in_flight if i in pending] or list(pending)
        status, message = self._failure(state, returncode, tail)
        return {i: (status, message) for i in blamed}

    def _follow(
        self,
        proc: subprocess.Popen[bytes],
        reader: _Lines,
        state: _WorkerState,
        cell: CellSpec,
        pending: dict[str, Task],
        on_row: RowCallback,
        on_env: EnvCallback | None,
    ) -> None:
        """Read the worker's events until it is done, exits, or is silent for timeout_s
        (then its process group is killed)."""
        deadline = time.monotonic() + self.timeout_s
        while not state.done:
            lines = reader.read(deadline - time.monotonic())
            if lines is None:
                state.killed_for_timeout = True
                _kill_group(proc)
                return
            if not lines and reader.eof:
                return
            for line in lines:
                event = json.loads(line)
                kind = event.get("event")
                if kind == "phase":
                    state.phase, state.in_flight = event["phase"], event["ids"]
                    deadline = time.monotonic() + self.timeout_s
                elif kind == "row":
                    row: Row = event["row"]
                    if pending.pop(str(row["cell_id"]), None) is not None:
                        on_row(self._stamp(row))
                elif kind == "done":
                    state.done = True
                    if on_env is not None and event.get("env"):
                        on_env(cell.threads, event["env"])

    def _failure(self, state: _WorkerState, returncode: int, tail: str) -> tuple[str, str]:
        """(status, message) of the rows a worker that did not finish leaves behind."""
        if state.killed_for_timeout:
            return (
                "timeout",
                f"no result within --timeout={self.timeout_s:g} s (phase {state.phase})",
            )
        if returncode == -signal.SIGKILL:
            return _sigkill_verdict(state)
        how = (
            f"signal {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"exit status {returncode}"
        )
        message = f"worker died with {how} in phase {state.phase}" + (f": {tail}" if tail else "")
        out_of_memory = tail.rsplit(" | ", 1)[-1].startswith("MemoryError")
        return ("oom" if out_of_memory else "error"), message


@dataclass
class _WorkerState:
    """What the executor knows of a running worker."""

    phase: str = "start"
    in_flight: list[str] = field(default_factory=list)  # ids of the phase in flight
    killed_for_timeout: bool = False
    done: bool = False
    #: OOM-kill counters when the worker started (see lshbench.sweep.oom_kills)
    oom_kills: dict[str, int] = field(default_factory=dict)


def _sigkill_verdict(state: _WorkerState) -> tuple[str, str]:
    """(status, message) of a worker killed by a SIGKILL the executor did not send."""
    where = f"in phase {state.phase}"
    if not state.oom_kills:
        return "error", f"worker killed by signal SIGKILL {where} (no OOM-kill counter here)"
    if oom_killed_since(state.oom_kills):
        return "oom", f"worker killed by the kernel's OOM killer (SIGKILL) {where}"
    return "error", f"worker killed by signal SIGKILL {where} (not by the kernel's OOM killer)"


def stderr_summary(text: str) -> str:
    """A dead worker's stderr as one line for a row's message: every Python traceback
    reduced to its exception line (the frames say nothing to a reader of the results), lines
    joined by `` | ``, the last :data:`STDERR_TAIL` characters."""
    kept: list[str] = []
    in_traceback = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback and (not line.strip() or line[:1].isspace()):
            continue  # a frame, its source line or a caret line
        in_traceback = False
        if line.strip():
            kept.append(line.strip())
    return " | ".join(kept)[-STDERR_TAIL:]


def _failed_row(task: Task, status: str, message: str) -> Row:
    """The row of a task whose worker failed (with the task's input file fields)."""
    return make_row(task, status, message)
