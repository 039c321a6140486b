"""Tasks and cells: the units a sweep is made of.

A **task** is one row of the results table: one backend on one input with one LSH
configuration. It is a plain JSON-able dict with the keys of :data:`TASK_KEYS`; hashing fields
(``method`` and ``weighting`` included) are ``None`` for backends that do not hash (dense,
peers like torch-sdpa), ``n_buckets`` is ``None`` for method ``local`` (it has no buckets),
and ``target_entropy`` / ``value_corr`` are ``None`` for inputs that do not take them.

A **cell** is what one fresh worker process runs: every task that shares an input, a pass
(``forward``, or ``train``: forward and backward) and a device (the :data:`CELL_AXES`), so
the dense reference of that input is computed once and every backend
and configuration is measured against it. Inside a cell, tasks that share an LSH
configuration form a **group** whose backends are timed in interleaved rounds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from lshbench.core.config import LSHConfig

__all__ = [
    "CELL_AXES",
    "CONFIG_AXES",
    "TASK_KEYS",
    "cell_key",
    "group_key",
    "n_buckets_spec",
    "rotation_seed",
    "task_config",
    "task_id",
]

#: the axes that define one input (one worker, one dense reference)
CELL_AXES = (
    "seqlen", "batch", "d", "dv", "input", "target_entropy", "value_corr", "causal", "dtype",
    "threads", "seed", "pass", "device",
)  # fmt: skip
#: the LSH configuration axes (None for backends that do not hash)
CONFIG_AXES = (
    "n_hashes", "n_buckets", "chunk_len", "chunks_before", "chunks_after", "method", "weighting",
)  # fmt: skip
TASK_KEYS = ("backend", *CELL_AXES, *CONFIG_AXES)

#: axes added after results were first stored, with the values every earlier row had: a key
#: holding one of them is left out of the ids, so the cells of earlier tables keep theirs
_ADDED_AXES: dict[str, tuple[Any, ...]] = {
    "method": (None, "lsh"),
    "weighting": (None, "multiplicity"),
    "target_entropy": (None,),
    "value_corr": (None,),
    "pass": (None, "forward"),
    "device": (None, "cpu"),
}


def _canonical(task: dict[str, Any], keys: tuple[str, ...]) -> str:
    values = {
        k: task.get(k) for k in keys if k not in _ADDED_AXES or task.get(k) not in _ADDED_AXES[k]
    }
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def task_id(task: dict[str, Any]) -> str:
    """Stable id of a task (16 hex digits): the same parameters give the same id in any run
    (and a section-2 LSH task the id it had before ``method`` and ``weighting`` existed)."""
    return hashlib.sha1(_canonical(task, TASK_KEYS).encode()).hexdigest()[:16]


def cell_key(task: dict[str, Any]) -> str:
    """The input a task runs on (tasks with equal keys share a worker and a reference)."""
    return _canonical(task, CELL_AXES)


def group_key(task: dict[str, Any]) -> str:
    """The LSH configuration of a task (equal keys are timed together, interleaved)."""
    return _canonical(task, CONFIG_AXES)


#: buckets of the configuration of a task without any (method ``local``): the rotations
#: are drawn with one column per round, which ``local`` never reads
_NO_BUCKETS = 2


def task_config(task: dict[str, Any]) -> LSHConfig:
    """The :class:`LSHConfig` of a task (a placeholder one for backends that do not hash).

    ``method`` and ``weighting`` default to section 2's (``lsh``, ``multiplicity``) when the
    task has none (tasks of earlier tables)."""
    if task.get("n_hashes") is None:
        return LSHConfig(causal=bool(task["causal"]))
    nb = task.get("n_buckets")
    if nb is None:
        nb = _NO_BUCKETS
    return LSHConfig(
        n_hashes=task["n_hashes"],
        n_buckets=tuple(nb) if isinstance(nb, list | tuple) else nb,
        chunk_len=task["chunk_len"],
        causal=bool(task["causal"]),
        chunks_before=task["chunks_before"],
        chunks_after=task["chunks_after"],
        method=task.get("method") or "lsh",
        weighting=task.get("weighting") or "multiplicity",
    )


def n_buckets_spec(n_buckets: int | list[int] | tuple[int, ...] | None) -> str | None:
    """``"128"`` for an int, ``"16x32"`` for factors, None for none."""
    if n_buckets is None:
        return None
    if isinstance(n_buckets, list | tuple):
        return "x".join(str(int(f)) for f in n_buckets)
    return str(int(n_buckets))


def rotation_seed(seed: int) -> int:
    """Seed of the random rotations of a cell, independent of the input's stream."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])
