"""Sweeps on a Dask distributed cluster: one cell per task, streamed into the same store.

:class:`DaskExecutor` implements the :class:`lshbench.sweep.local_executor.Executor` protocol on a
``dask.distributed`` cluster, either an existing one (``scheduler="tcp://host:8786"``) or a
``LocalCluster`` it starts and stops (``workers=N``):

* **One cell per task, one task per worker.** Each cell is one task that asks for the worker
  resource ``cell=1``; workers offer exactly one (``dask worker ... --resources cell=1``;
  the LocalCluster is started with ``resources={"cell": 1}``), so a worker runs one cell at a
  time whatever its ``nthreads``.
* **Thread budget.** A worker's ``nthreads`` is the thread budget of the cells it runs: a
  cell with ``threads = t`` goes only to workers with ``nthreads >= t``; a cell no worker
  can take is a ``skipped`` row that names the largest budget. The LocalCluster gives each of
  its ``N`` workers ``usable CPUs // N`` threads.
* **Same measurement as the local executor.** The task runs the cell with
  :meth:`lshbench.sweep.local_executor.LocalExecutor.run_cell`: a fresh spawned
  ``lshbench.measurement.worker`` process with the thread variables set before import, the
  same phases, timeout and failure rows. Only ``executor`` (``"dask"``), ``concurrency``
  (cells run at once: the workers offering ``cell``) and ``host`` (the worker's machine)
  differ.
* **Memory limit per cell, not per Dask worker.** The nanny's memory policy (pause at 80 %,
  terminate at 95 % of ``memory_limit``) watches the RSS of the Dask worker process only,
  not of its children, so it never sees the cell process, where the memory is. Each cell
  process instead runs under ``RLIMIT_DATA`` = the memory limit (``mem_limit_bytes``, else
  the Dask worker's own ``memory_limit``): an allocation beyond it raises MemoryError inside
  the cell, which becomes an ``oom`` row while the cell's other rows, the Dask worker and
  every other cell go on. A LocalCluster's workers get ``memory_limit`` = the limit too.
* **Per-host calibration.** Before its first cell at a thread count, each worker process runs
  the calibration cell of :mod:`lshbench.measurement.calibration` (a fixed float32 GEMM in a fresh
  process with the same thread variables); every row it returns carries ``calib_gflops``.
* **Streaming and failures.** Rows reach ``on_row`` as tasks finish (``as_completed``), at
  most ``2 x concurrency`` tasks in flight. A worker lost mid-cell (killed, node gone): the
  scheduler runs the cell again elsewhere (``distributed.scheduler.allowed-failures``,
  default 3); past that, the cell's rows are ``error`` rows naming the lost workers (redo
  them with ``--retry-failed``). Rows of finished tasks are already in the store.

Nothing here imports dask until an executor starts.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from lshbench.core.config import fail
from lshbench.results.schema import Row
from lshbench.results.store import make_row
from lshbench.sweep.local_executor import CellSpec, LocalExecutor, stamp_row
from lshbench.util import fmt_bytes, one_line

__all__ = ["RESOURCE", "DaskExecutor", "run_cell_task"]

RowCallback = Callable[[Row], None]
EnvCallback = Callable[[int, dict[str, Any]], None]

#: the worker resource a cell asks for (workers offer exactly 1)
RESOURCE = "cell"
#: seconds to reach a scheduler before giving up
CONNECT_TIMEOUT_S = 5.0
#: seconds to wait for the first worker of an existing cluster
WORKER_WAIT_S = 60.0


class CellResult(TypedDict):
    """What one Dask task returns: the cell's rows and its worker's environment (or None)."""

    rows: list[Row]
    env: dict[str, Any] | None


#: calibration of this Dask worker process, per thread count (filled by run_cell_task)
_CALIBRATION: dict[int, dict[str, Any]] = {}


def _worker_memory_limit() -> int | None:
    """``memory_limit`` of the Dask worker running this task (None: none or not in a worker)."""
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except Exception:
        return None
    return int(limit) if limit else None


def run_cell_task(
    cell: CellSpec,
    timeout_s: float,
    mem_limit_bytes: int | None,
    concurrency: int,
    calibrate: bool = True,
) -> CellResult:
    """Body of one Dask task: calibrate this host (once per process and thread count), then
    run ``cell`` exactly as :class:`LocalExecutor` does.

    Returns ``{"rows": [row, ...], "env": worker environment or None}``; every row carries
    ``executor="dask"``, ``concurrency``, the cell process's ``host`` and ``calib_gflops``.
    """
    limit = mem_limit_bytes or _worker_memory_limit()
    calibration: dict[str, Any] = {}
    if calibrate:
        if cell.threads not in _CALIBRATION:
            from lshbench.measurement.calibration import calibrate_host

            _CALIBRATION[cell.threads] = calibrate_host(cell.threads)
        calibration = _CALIBRATION[cell.threads]
    rows: list[Row] = []
    envs: list[dict[str, Any]] = []
    runner = LocalExecutor(
        timeout_s=timeout_s, name="dask", concurrency=concurrency, mem_limit_bytes=limit
    )
    runner.run_cell(cell, rows.append, lambda threads, env: envs.append(env))
    for row in rows:
        row["calib_gflops"] = calibration.get("calib_gflops")
    env: dict[str, Any] | None = None
    if envs:
        env = {
            **envs[-1],
            "host": socket.gethostname(),
            "mem_limit_bytes": limit,
            "calibration": calibration,
        }
    return CellResult(rows=rows, env=env)


def _address_host(address: str | None) -> str | None:
    """``"10.0.0.5"`` from ``"tcp://10.0.0.5:40123"``."""
    if not address:
        return None
    return address.rpartition("//")[2].rpartition(":")[0] or None


@dataclass
class DaskExecutor:
    """Cells as tasks on a Dask cluster (see the module docstring).

    Give ``scheduler`` (address of a running scheduler) or ``workers`` (size of a
    LocalCluster started here, default: usable CPUs). ``threads_per_worker`` is the
    LocalCluster's thread budget per worker (default: usable CPUs // workers);
    ``mem_limit_bytes`` the memory limit of each cell process (default: the Dask worker's
    ``memory_limit``). ``worker_wait_s=None`` waits for a first worker without limit (Slurm
    jobs may queue for long). Use as a context manager, or call :meth:`start` and :meth:`close`;
    :meth:`run_cells` starts it when needed.
    """

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    mem_limit_bytes: int | None = None
    timeout_s: float = 600.0
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    #: seconds to wait for the first worker of an existing cluster (None: no limit)
    worker_wait_s: float | None = WORKER_WAIT_S
    calibrate: bool = True
    name: str = "dask"
    concurrency: int = 0  # workers offering the cell resource, set by start()
    _client: Any = field(default=None, repr=False)
    _cluster: Any = field(default=None, repr=False)
    _budgets: dict[str, int] = field(default_factory=dict, repr=False)
    _hostnames: dict[str, str] = field(default_factory=dict, repr=False)  # worker IP -> name

    # ------------------------------------------------------------ lifecycle

    def start(self) -> DaskExecutor:
        """Connect to the scheduler or start the LocalCluster; check the workers.

        Raises ConfigError (one line) when dask is missing, the scheduler is unreachable
        within ``connect_timeout_s``, or no worker offers the ``cell`` resource.
        """
        if self._client is not None:
            return self
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            fail(
                "executor", "dask", f"needs dask[distributed] ({exc}): pip install 'lshbench[dask]'"
            )
        if self.scheduler is not None:
            try:
                self._client = Client(self.scheduler, timeout=self.connect_timeout_s)
            except Exception as exc:
                fail(
                    "scheduler",
                    self.scheduler,
                    f"cannot reach a Dask scheduler within {self.connect_timeout_s:g} s "
                    f"({one_line(exc, 200)})",
                )
            try:
                self._client.wait_for_workers(1, timeout=self.worker_wait_s)
            except Exception:
                self.close()
                fail("scheduler", self.scheduler, f"no worker joined within {self.worker_wait_s} s")
        else:
            from lshbench.measurement.machine import usable_cpus

            n = self.workers or usable_cpus()
            budget = self.threads_per_worker or max(1, usable_cpus() // n)
            try:
                self._cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=budget,
                    processes=True,
                    memory_limit=self.mem_limit_bytes or "auto",
                    resources={RESOURCE: 1},
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self._client = Client(self._cluster, timeout=self.connect_timeout_s)
                self._client.wait_for_workers(n, timeout=WORKER_WAIT_S)
            except Exception as exc:
                self.close()
                fail("workers", n, f"cannot start a Dask LocalCluster ({one_line(exc, 200)})")
        self._refresh_workers()
        if not self._budgets:
            where = self.scheduler or "LocalCluster"
            self.close()
            fail(
                "scheduler",
                where,
                f"no Dask worker offers the resource {RESOURCE}=1 (start workers with "
                f"--resources {RESOURCE}=1)",
            )
        return self

    def _refresh_workers(self) -> None:
        """Thread budget (nthreads) of every worker offering the cell resource. An empty
        answer after a non-empty one (every worker restarting) keeps the previous one."""
        info = self._client.scheduler_info(n_workers=-1)["workers"]
        budgets = {
            addr: int(w.get("nthreads", 1))
            for addr, w in info.items()
            if (w.get("resources") or {}).get(RESOURCE, 0) >= 1
        }
        if budgets or not self._budgets:
            self._budgets = budgets
            self.concurrency = len(budgets)
        unknown = [a for a in budgets if _address_host(a) not in self._hostnames]
        if unknown:  # host names for rows of lost workers (the scheduler knows IPs only)
            with contextlib.suppress(Exception):
                names = self._client.run(socket.gethostname, workers=unknown, on_error="ignore")
                for address, name in names.items():
                    if isinstance(name, str):
                        self._hostnames[_address_host(address) or ""] = name

    def close(self) -> None:
        """Disconnect; stop the LocalCluster if this executor started it."""
        for thing in (self._client, self._cluster):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
        self._client = self._cluster = None

    def __enter__(self) -> DaskExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One line: where the cells run."""
        where = f"scheduler {self.scheduler}" if self.scheduler else "a LocalCluster"
        budgets = sorted(set(self._budgets.values()))
        limit = (
            fmt_bytes(self.mem_limit_bytes)
            if self.mem_limit_bytes
            else "each worker's memory_limit"
        )
        return (
            f"dask executor: {self.concurrency} workers on {where}, thread budget "
            f"{'/'.join(map(str, budgets))} per worker, memory limit per cell: "
            f"{limit}"
        )

    # ------------------------------------------------------------ running

    def run_cells(
        self,
        cells: Iterable[CellSpec],
        on_row: RowCallback,
        on_env: EnvCallback | None = None,
    ) -> None:
        """Submit cells as tasks (at most 2 x concurrency in flight); rows reach ``on_row``
        in the order tasks finish."""
        from distributed import as_completed

        self.start()
        source = iter(cells)
        in_flight: dict[str, CellSpec] = {}
        done = as_completed(loop=self._client.loop)

        def submit_next() -> bool:
            for cell in source:
                future = self._submit(cell, on_row)
                if future is not None:
                    in_flight[future.key] = cell
                    done.add(future)
                    return True
            return False

        try:
            for _ in range(max(1, 2 * self.concurrency)):
                if not submit_next():
                    break
            for future in done:
                cell = in_flight.pop(future.key)
                self._collect(future, cell, on_row, on_env)
                future.release()
                submit_next()
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.cancel(list(done.futures))
            raise

    def _submit(self, cell: CellSpec, on_row: RowCallback) -> Any:
        """Submit one cell (None when no worker's thread budget fits: rows are skipped)."""
        self._refresh_workers()  # workers come and go (restarts, dask-jobqueue scaling)
        eligible = [a for a, n in self._budgets.items() if n >= cell.threads]
        if not eligible:
            largest = max(self._budgets.values(), default=0)
            message = (
                f"threads={cell.threads} exceeds every Dask worker's thread budget "
                f"(largest nthreads {largest}); start workers with --nthreads {cell.threads}"
            )
            for task in cell.tasks:
                on_row(self._stamp(make_row(task, "skipped", message)))
            return None
        restrict = None if len(eligible) == len(self._budgets) else eligible
        first = cell.tasks[0]
        key = f"lshbench-cell-L{first.seqlen}-{first.id[:8]}-{secrets.token_hex(4)}"
        return self._client.submit(
            run_cell_task,
            cell,
            self.timeout_s,
            self.mem_limit_bytes,
            self.concurrency,
            self.calibrate,
            key=key,
            resources={RESOURCE: 1},
            workers=restrict,
            pure=False,
        )

    def _collect(
        self,
        future: Any,
        cell: CellSpec,
        on_row: RowCallback,
        on_env: EnvCallback | None,
    ) -> None:
        """Rows of a finished task; a task that failed (workers lost) gives error rows."""
        try:
            result = future.result()
        except Exception as exc:
            from distributed import KilledWorker

            last = getattr(getattr(exc, "last_worker", None), "address", None)
            if isinstance(exc, KilledWorker):
                tries = getattr(exc, "allowed_failures", None)
                message = (
                    f"Dask workers died running this cell "
                    f"({'' if tries is None else f'{tries + 1} tries, '}last {last}); "
                    "rerun with --retry-failed"
                )
            else:
                message = f"Dask task failed: {one_line(exc, 200)}"
            ip = _address_host(last)
            for task in cell.tasks:
                row = make_row(task, "error", message)
                row["host"] = self._hostnames.get(ip or "", ip)
                on_row(self._stamp(row))
            return
        for row in result["rows"]:
            on_row(row)
        if on_env is not None and result.get("env"):
            on_env(cell.threads, result["env"])

    def _stamp(self, row: Row) -> Row:
        return stamp_row(row, self.name, self.concurrency)
