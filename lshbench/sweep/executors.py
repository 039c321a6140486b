"""Choosing the executor a sweep runs on: :func:`open_executor`.

``local`` (:class:`~lshbench.sweep.local_executor.LocalExecutor`, the default: one cell at a
time on this machine, timing-grade) or ``dask``
(:class:`~lshbench.sweep.dask_executor.DaskExecutor`: cells as tasks on a Dask cluster).
Nothing here imports dask; the Dask executor does when it starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lshbench.core.config import ConfigError, fail
from lshbench.core.options import parse_positive_int
from lshbench.sweep.dask_executor import DaskExecutor
from lshbench.sweep.local_executor import LocalExecutor
from lshbench.sweep.parsing import parse_bytes
from lshbench.sweep.spec import WORKER_BASE_BYTES

if TYPE_CHECKING:
    from lshbench.sweep.local_executor import Executor
    from lshbench.sweep.spec import SweepSpec

__all__ = ["EXECUTORS", "open_executor"]

EXECUTORS = ("local", "dask")


def _mem_limit(value: Any) -> int:
    """Bytes of --mem-limit: more than a worker's own footprint, which it needs to start at
    all (below it every cell would fail before measuring anything)."""
    try:
        limit = parse_bytes(value)
    except ConfigError:
        fail("mem_limit", value, "must be bytes > 0 like 4G, 512M, 2.5GiB or a share like 50%")
    if limit <= WORKER_BASE_BYTES:
        fail(
            "mem_limit",
            value,
            f"must be more than {WORKER_BASE_BYTES // 2**20} MiB, a worker's own memory "
            "(with less no worker can start)",
        )
    return limit


@contextlib.contextmanager
def open_executor(
    spec: SweepSpec,
    executor: str | None = None,
    scheduler: str | None = None,
    workers: Any = None,
    mem_limit: Any = None,
) -> Iterator[Executor]:
    """The executor the ``sweep`` command options name, started, closed on exit.

    ``executor`` is ``local`` (default; sequential, timing-grade) or ``dask``.
    ``scheduler`` (an address) and ``workers`` (LocalCluster size, default usable CPUs //
    the largest ``threads``) need ``dask`` and exclude each other. ``mem_limit`` is the
    memory limit of each cell process (both executors; for a LocalCluster default
    ``--mem-budget / workers``; on an existing cluster default each worker's memory_limit).
    Raises ConfigError (one line) on a bad combination or an unreachable scheduler.
    """
    name = executor or "local"
    if name not in EXECUTORS:
        fail("executor", name, f"must be one of {', '.join(EXECUTORS)}")
    limit = _mem_limit(mem_limit) if mem_limit is not None else None
    if name == "local":
        for field_name, value in (("scheduler", scheduler), ("workers", workers)):
            if value is not None:
                fail(field_name, value, "needs --executor dask")
        yield LocalExecutor(timeout_s=spec.timeout, mem_limit_bytes=limit)
        return
    n = parse_positive_int("workers", workers) if workers is not None else None
    if scheduler is not None and n is not None:
        fail("workers", workers, "not with --scheduler (the cluster's own workers run the cells)")
    if scheduler is not None and not str(scheduler).strip():
        fail("scheduler", scheduler, "must be an address like tcp://host:8786")
    if scheduler is None:
        from lshbench.measurement.machine import usable_cpus

        n = n or max(1, usable_cpus() // max(spec.threads))
        limit = limit or max(1, spec.mem_budget // n)
    with DaskExecutor(
        scheduler=scheduler, workers=n, mem_limit_bytes=limit, timeout_s=spec.timeout
    ) as runner:
        yield runner
