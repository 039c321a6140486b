"""Tasks and cells: the units a sweep is made of.

A **task** (:class:`Task`) is one row of the results table: one backend on one input with one
LSH configuration, a frozen record whose :attr:`Task.id` is computed once, when it is made,
and written as the row's ``cell_id`` column (with ``machine_id`` and ``code_id``, the row's
key). Hashing fields (``method`` and ``weighting`` included) are ``None`` for backends that
do not hash (dense, peers like torch-sdpa), ``n_buckets`` is ``None`` for method ``local``
(it has no buckets), and ``target_entropy`` / ``value_corr`` / ``local_share`` are ``None``
for inputs that do not take them. A task crosses process boundaries as :meth:`Task.as_dict`
(JSON) and comes back through :meth:`Task.from_dict`.

A **cell** is what one fresh worker process runs: every task that shares an input, a pass
(``forward``, or ``train``: forward and backward) and a device (the :data:`CELL_AXES`,
:attr:`Task.cell_key`), so the dense reference of that input is computed once and every
backend and configuration is measured against it. Inside a cell, tasks that share an LSH
configuration form a **group** (:attr:`Task.group_key`) whose backends are timed in
interleaved rounds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lshbench.core.config import LSHConfig, fail
from lshbench.core.options import format_n_buckets
from lshbench.results.upgrade import ADDED_AXES

__all__ = [
    "CELL_AXES",
    "CONFIG_AXES",
    "FILE_FIELDS",
    "ORACLE",
    "ORACLE_BUDGETS",
    "TASK_KEYS",
    "Task",
    "TaskValue",
    "n_buckets_spec",
    "rotation_seed",
    "task_id",
]

#: the axes that define one input (one worker, one dense reference)
#: (``qk``: "shared" or "separate" queries and keys, docs/design.md section 2c; ``layer``
#: and ``head``: the captured model head a cell of a per-head input file runs, else None;
#: ``pass``: "forward" or "train" and ``device``: "cpu" or "cuda", docs/design.md section 9)
CELL_AXES = (
    "seqlen", "batch", "d", "dv", "input", "target_entropy", "value_corr", "local_share",
    "causal", "dtype", "threads", "seed", "qk", "layer", "head", "pass", "device",
)  # fmt: skip
#: the LSH configuration axes (None for backends that do not hash; ``oracle_k`` is set on
#: oracle tasks only; ``rotation_seed``: which draw of the rotations, :func:`rotation_seed`)
CONFIG_AXES = (
    "n_hashes", "n_buckets", "chunk_len", "chunks_before", "chunks_after", "method", "weighting",
    "oracle_k", "rotation_seed",
)  # fmt: skip
#: the method of the oracle baseline (docs/design.md section 2b): each query keeps its k
#: highest-scoring valid keys, weighted once; not a method a backend can run
ORACLE = "oracle"
#: what an oracle task's k matches in the LSH configuration it carries: the mean distinct
#: keys per query of its windows (rounded), or its window slots per query
ORACLE_BUDGETS = ("distinct", "slots")
#: the fields that identify a task (its id is a digest of them)
TASK_KEYS = ("backend", *CELL_AXES, *CONFIG_AXES)
#: what a task of a file input carries beyond them: the file's path and SHA-256
FILE_FIELDS = ("input_path", "input_sha256")

#: a task field's value as JSON holds it (``n_buckets`` factors: a list)
TaskValue = str | int | float | bool | list[int] | None
#: task fields whose column name is a Python keyword: column name -> attribute
_ATTRIBUTE = {"pass": "pass_"}


def _canonical(values: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    kept = {
        k: values.get(k) for k in keys if k not in ADDED_AXES or values.get(k) not in ADDED_AXES[k]
    }
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def _digest(values: Mapping[str, Any]) -> str:
    return hashlib.sha1(_canonical(values, TASK_KEYS).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    """One task of a sweep: one results row to measure (see the module docstring).

    ``n_buckets`` is an int, a tuple of factors, or None; a list given (JSON) becomes a
    tuple. :attr:`id` is the stable id of the task's parameters (16 hex digits): the same
    parameters give the same id in any run, and a section-2 LSH task the id it had before
    ``method`` and ``weighting`` existed (:data:`lshbench.results.upgrade.ADDED_AXES`).
    ``pass_`` is the ``pass`` column (a Python keyword): :meth:`as_dict` and
    :meth:`from_dict` use the column's name.
    """

    backend: str
    seqlen: int
    batch: int
    d: int
    dv: int
    input: str
    causal: bool
    dtype: str
    threads: int
    seed: int
    target_entropy: float | None = None
    value_corr: float | None = None
    local_share: float | None = None
    qk: str | None = None
    layer: int | None = None
    head: int | None = None
    pass_: str = "forward"
    device: str = "cpu"
    n_hashes: int | None = None
    n_buckets: int | tuple[int, ...] | None = None
    chunk_len: int | None = None
    chunks_before: int | None = None
    chunks_after: int | None = None
    method: str | None = None
    weighting: str | None = None
    oracle_k: str | None = None
    rotation_seed: int | None = None
    input_path: str | None = None
    input_sha256: str | None = None
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.n_buckets, list):
            object.__setattr__(self, "n_buckets", tuple(int(f) for f in self.n_buckets))
        object.__setattr__(self, "id", _digest(self.as_dict()))

    def as_dict(self) -> dict[str, TaskValue]:
        """The task as JSON-able values: :data:`TASK_KEYS`, then the :data:`FILE_FIELDS` it
        has (``n_buckets`` factors as a list)."""
        nb = self.n_buckets
        out: dict[str, TaskValue] = {k: getattr(self, _ATTRIBUTE.get(k, k)) for k in TASK_KEYS}
        out["n_buckets"] = list(nb) if isinstance(nb, tuple) else nb
        out.update({k: getattr(self, k) for k in FILE_FIELDS if getattr(self, k) is not None})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """A task from :meth:`as_dict`'s form (keys it does not know are ignored; missing
        optional fields are None; a missing or empty ``pass`` / ``device`` is forward /
        cpu)."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        values = {_ATTRIBUTE.get(k, k): v for k, v in data.items()}
        for name in ("pass_", "device"):
            if values.get(name) is None:  # an earlier table's empty column: the default
                values.pop(name, None)
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes: Any) -> Task:
        """A copy with ``changes`` (and its own id)."""
        return dataclasses.replace(self, **changes)

    @property
    def uses_hashing(self) -> bool:
        """Whether the task has an LSH configuration (``n_hashes`` set)."""
        return self.n_hashes is not None

    @property
    def is_oracle(self) -> bool:
        """Whether the task is the oracle baseline (a metrics-only row: no backend call)."""
        return self.method == ORACLE

    @property
    def cell_key(self) -> str:
        """The input the task runs on (tasks with equal keys share a worker and a
        reference)."""
        return _canonical(self.as_dict(), CELL_AXES)

    @property
    def group_key(self) -> str:
        """The LSH configuration of the task (equal keys are timed together, interleaved)."""
        return _canonical(self.as_dict(), CONFIG_AXES)

    def config(self) -> LSHConfig:
        """The :class:`LSHConfig` of the task (a placeholder one for backends that do not
        hash; ``method`` and ``weighting`` default to section 2's when None). An oracle
        task gives the LSH configuration whose key count its k matches (method lsh,
        count-once)."""
        return _config(self)


def task_id(values: Mapping[str, Any]) -> str:
    """The :attr:`Task.id` of a task given as a mapping (a row's or JSON's fields)."""
    return _digest(values)


#: buckets of the configuration of a task without any (method ``local``): the rotations
#: are drawn with one column per round, which ``local`` never reads
_NO_BUCKETS = 2


def _config(task: Task) -> LSHConfig:
    qk = task.qk or "shared"
    if task.n_hashes is None:
        return LSHConfig(causal=bool(task.causal), qk=qk)
    if task.chunk_len is None or task.chunks_before is None or task.chunks_after is None:
        fail("chunk_len", task.chunk_len, "a hashing task needs chunk_len, chunks_before and "
             "chunks_after")  # fmt: skip
    nb = _NO_BUCKETS if task.n_buckets is None else task.n_buckets
    return LSHConfig(
        n_hashes=task.n_hashes,
        n_buckets=nb,
        chunk_len=task.chunk_len,
        causal=bool(task.causal),
        chunks_before=task.chunks_before,
        chunks_after=task.chunks_after,
        method="lsh" if task.is_oracle else task.method or "lsh",
        weighting="count-once" if task.is_oracle else task.weighting or "multiplicity",
        qk=qk,
    )


def n_buckets_spec(n_buckets: int | list[int] | tuple[int, ...] | None) -> str | None:
    """``"128"`` for an int, ``"16x32"`` for factors, None for none."""
    return None if n_buckets is None else format_n_buckets(n_buckets)


def rotation_seed(seed: int, draw: int | None = 0) -> int:
    """Seed of the random rotations of a cell, independent of the input's stream.

    ``draw`` (a task's ``rotation_seed``; None or 0: the first draw, the rotations every
    earlier table was measured with) picks one of several independent draws for the same
    input (``--rotation-seeds``)."""
    words = [int(seed), 1] if not draw else [int(seed), 1, int(draw)]
    return int(np.random.SeedSequence(words).generate_state(1)[0])
