"""Backends for the Dask executor tests, importable in the spawned cell workers.

Tests put this folder on ``PYTHONPATH`` (before the cluster starts, so Dask workers and
their cell processes inherit it) and register the classes with
``lshbench.register_backend(name, "dask_backends:Class")``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sweep_backends import AllocNumpyBackend, KilledBackend, _Exact

__all__ = ["AllocBigBackend", "KillWorkerBackend", "KilledBackend"]

#: bytes AllocBigBackend allocates and touches (above the tests' per-cell memory limit)
BIG_BYTES = 1536 * 2**20
#: environment variable naming the marker file of KillWorkerBackend
MARKER_ENV = "LSHBENCH_TEST_KILL_MARKER"
#: KillWorkerBackend kills its Dask worker only in cells of this sequence length
KILL_SEQLEN = 128


class AllocBigBackend(AllocNumpyBackend):
    """Allocates and fills BIG_BYTES during each call."""

    name = "test-alloc-big"
    alloc_bytes = BIG_BYTES


class KillWorkerBackend(_Exact):
    """On its first call in a cell with L = KILL_SEQLEN, and only while the marker file named
    by $LSHBENCH_TEST_KILL_MARKER does not exist: creates the marker and SIGKILLs its parent
    (the Dask worker process that started this cell), as a lost node would. Later calls run
    normally."""

    name = "test-kill-worker"

    def _attend(self, qk, v, config, rotations):  # type: ignore[override]
        marker = os.environ.get(MARKER_ENV)
        if marker and qk.shape[1] == KILL_SEQLEN and not Path(marker).exists():
            Path(marker).write_text(str(os.getppid()))
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)  # the worker exits sooner: its stdin closes with the parent
        return super()._attend(qk, v, config, rotations)
