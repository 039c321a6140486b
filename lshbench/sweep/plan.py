"""The sweep's plan: the grid's tasks in run order, and what each is predicted to cost.

:func:`plan_tasks` expands a checked :class:`~lshbench.sweep.spec.SweepSpec` into tasks
(:class:`~lshbench.results.cells.Task`, one results row each) and the invalid ones with the reason;
:func:`predicted_bytes` is the memory a task's worker is predicted to need (checked against
``--mem-budget`` before it runs); :func:`estimate_seconds` a rough time for the progress bar.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lshbench.core.config import ConfigError, fail
from lshbench.core.options import INT64_MAX
from lshbench.results.cells import ORACLE, ORACLE_BUDGETS, Task
from lshbench.results.upgrade import SECTION_2
from lshbench.sweep.spec import HALF_DTYPES, INPUT_KNOBS, WORKER_BASE_BYTES, SweepSpec

if TYPE_CHECKING:
    from lshbench.backends import BackendSpec

__all__ = [
    "ASSUMED_FLOPS",
    "EXTRA_CALLS",
    "LSHAxes",
    "estimate_seconds",
    "input_cells",
    "lsh_configs",
    "not_planned",
    "oracle_backend",
    "plan_tasks",
    "predicted_bytes",
    "resolve_n_buckets",
    "task_seconds",
]

#: the LSH configuration axes of a task (:data:`~lshbench.results.cells.CONFIG_AXES`), as
#: :func:`lsh_configs` gives them (``n_buckets`` factors as a list)
LSHAxes = dict[str, int | str | list[int] | None]


def resolve_n_buckets(
    item: str | int | tuple[int, ...], seqlen: int, chunk_len: int
) -> int | tuple[int, ...]:
    """Buckets per round for one (seqlen, chunk_len).

    ``rule``: the paper's ``2 L / chunk_len`` rounded to an even int >= 2
    (Reformer paper, section 2).
    ``auto``: Hugging Face's rule: the largest power of two ``2**p <= 2 (L // chunk_len)``
    (at least 2), factorized as ``(2**(p//2), 2**(p - p//2))`` when it exceeds
    ``2 * max(int(sqrt(L // chunk_len)), chunk_len)`` (max_position_embeddings = L).
    """
    if item == "rule":
        return max(2, 2 * round(seqlen / chunk_len))
    if item == "auto":
        target = 2 * (seqlen // chunk_len)
        p = max(1, target.bit_length() - 1)
        if 2**p > 2 * max(int(math.sqrt(seqlen // chunk_len)), chunk_len) and p >= 2:
            return (2 ** (p // 2), 2 ** (p - p // 2))
        return 2**p
    assert not isinstance(item, str), item  # the spec allows only rule and auto as text
    return item


def plan_tasks(spec: SweepSpec) -> tuple[list[Task], list[tuple[Task, str]]]:
    """Every task of the grid, in run order, and the invalid ones with the reason.

    Cells (inputs) vary slowest in the order input (with its :data:`INPUT_AXES`,
    :func:`input_cells`), causal, dtype, threads, seed, pass, device, d, seqlen; inside a
    cell, the non-hashing backends come first, then each configuration (:func:`lsh_configs`). A
    backend without variants (its registry entry's ``variants``) gets only section 2's
    configurations (method lsh, weighting multiplicity); the others are not planned for it.
    Method ``oracle`` is planned once per configuration and budget (:func:`lsh_configs`), on
    one hashing backend (:func:`oracle_backend`): its rows are metrics only. Every hashing
    task is planned once per rotation draw (``rotation_seed`` 0..N-1 of
    ``--rotation-seeds N``; method ``local`` and the oracle's slots budget once, draw 0).
    A backend is not planned either for a pass, device or dtype it cannot run
    (:func:`not_planned` says which).
    Raises ConfigError when a derived value (batch x seqlen tokens, resolved buckets) would
    not fit the results tables' int64 columns, or when a hashing backend would get no task
    at all because it has no variants.
    """
    from lshbench.backends import backend_spec

    facts = {name: backend_spec(name) for name in spec.backend}
    _check_variants(spec, facts)
    oracle = oracle_backend(spec, facts)
    tasks: list[Task] = []
    invalid: list[tuple[Task, str]] = []
    seen: set[str] = set()
    for cell in _cells(spec):
        L = cell.seqlen
        names = [n for n in spec.backend if _runs_cell(facts[n], cell) is None]
        for name in names:
            if not facts[name].uses_hashing:
                _add_checked(tasks, invalid, seen, cell.replace(backend=name), facts[name])
        for config in lsh_configs(spec, L):
            for draw in _draws(spec, config):
                if config["method"] == ORACLE:
                    assert oracle is not None  # oracle_backend fails without one
                    if oracle not in names:
                        continue  # metrics only: not for a pass or device its backend skips
                    task = cell.replace(backend=oracle, rotation_seed=draw, **config)
                    _add_checked(tasks, invalid, seen, task, facts[oracle])
                    continue
                for name in names:
                    if not facts[name].uses_hashing:
                        continue
                    if not facts[name].variants and not _is_section_2(config):
                        continue
                    task = cell.replace(backend=name, rotation_seed=draw, **config)
                    _add_checked(tasks, invalid, seen, task, facts[name])
    return tasks, invalid


def _draws(spec: SweepSpec, config: LSHAxes) -> range:
    """The rotation draws of a configuration: ``--rotation-seeds`` of them; one for method
    ``local``, which reads no rotation (its windows are the same in every draw), and for the
    oracle at k = the slots (the same k in every draw)."""
    fixed = config["method"] == "local" or config.get("oracle_k") == "slots"
    return range(1 if fixed else spec.rotation_seeds)


def oracle_backend(spec: SweepSpec, facts: dict[str, BackendSpec]) -> str | None:
    """The backend whose rows carry the oracle baseline: ``numpy`` (the reference) when the
    sweep has it, else the first hashing backend with variants; None without ``--method
    oracle``. ConfigError when the sweep has no hashing backend with variants."""
    if ORACLE not in spec.method:
        return None
    usable = [n for n in spec.backend if facts[n].uses_hashing and facts[n].variants]
    if not usable:
        fail(
            "method",
            ",".join(spec.method),
            "oracle needs a hashing backend with variants (numpy or numba) in --backend",
        )
    return "numpy" if "numpy" in usable else usable[0]


def _add_checked(
    tasks: list[Task],
    invalid: list[tuple[Task, str]],
    seen: set[str],
    task: Task,
    facts: BackendSpec,
) -> None:
    """Add a task, or record it as invalid with the reason: a configuration the sequence
    length cannot be chunked into, separate queries and keys with a causal cell or a
    backend that computes shared QK only."""
    try:
        config = task.config()
        if config.separate and not facts.separate_qk:
            fail("backend", facts.name, "computes shared queries/keys only (qk=separate input)")
        if facts.uses_hashing:
            config.check_seqlen(task.seqlen)
    except ConfigError as exc:
        if task.id not in seen:
            seen.add(task.id)
            invalid.append((task, str(exc)))
        return
    _add(tasks, seen, task)


def _runs_cell(facts: BackendSpec, cell: Task) -> str | None:
    """None when the backend runs the cell's pass, device and dtype; else why it is not
    planned there (docs/design.md section 9)."""
    if cell.pass_ == "train" and not facts.backward:
        return "has no backward pass: not planned for --pass train"
    if cell.device == "cuda" and not facts.cuda:
        return "does not run on CUDA: not planned for --device cuda"
    if cell.dtype in HALF_DTYPES and cell.device != "cuda":
        return f"{cell.dtype} runs on --device cuda only"
    return None


def not_planned(spec: SweepSpec) -> list[str]:
    """One note per (backend, reason) the grid leaves out by pass, device or dtype, e.g.
    ``numba has no backward pass: not planned for --pass train`` (no rows are written)."""
    from lshbench.backends import backend_spec

    notes: dict[str, None] = {}
    for cell in _cells(spec):
        for name in spec.backend:
            why = _runs_cell(backend_spec(name), cell)
            if why is not None:
                notes[f"{name} {why}"] = None
    return list(notes)


def _cells(spec: SweepSpec) -> Iterator[Task]:
    """The cells (inputs) of the grid in run order (see :func:`plan_tasks`), each as a task
    without a backend or a configuration. A file input (``file:PATH``) takes its file's
    batch, d and dv, and its L or each given seqlen not above it (``spec.seqlen_given``);
    its cells carry ``input_path`` and ``input_sha256``. A file naming its heads (a capture
    of a BERT or GPT-2 model) gives one cell per head, batch 1."""
    axes = itertools.product(
        input_cells(spec), spec.causal, spec.dtype, spec.threads, spec.seed, spec.passes,
        spec.device,
    )  # fmt: skip
    for (inp, entropy, rho, share), causal, dtype, threads, seed, pass_, device in axes:
        facts = spec.input_files.get(inp)
        heads = list(facts.heads) if facts is not None and facts.heads else [(None, None)]
        qk = facts.qk if facts is not None else "shared"
        for (d, dv, L, B), (layer, head) in itertools.product(_shapes(spec, inp), heads):
            yield Task(
                backend="",
                seqlen=L,
                batch=B if layer is None else 1,
                d=d,
                dv=dv,
                input=inp if facts is None else facts.label,
                input_path=None if facts is None else facts.path,
                input_sha256=None if facts is None else facts.sha256,
                target_entropy=entropy,
                value_corr=rho,
                local_share=share,
                causal=causal,
                dtype=dtype,
                threads=threads,
                seed=seed,
                qk=qk,
                layer=layer,
                head=head,
                pass_=pass_,
                device=device,
            )


def _shapes(spec: SweepSpec, inp: str) -> Iterator[tuple[int, int, int, int]]:
    """``(d, dv, seqlen, batch)`` of each cell of input ``inp``, d slowest."""
    facts = spec.input_files.get(inp)
    if facts is not None:
        lengths = [L for L in spec.seqlen if L <= facts.seqlen] if spec.seqlen_given else []
        for L in lengths or [facts.seqlen]:
            yield facts.d, facts.dv, L, facts.batch
        return
    for d, L, batch in itertools.product(spec.d, spec.seqlen, spec.batch or (None,)):
        B = spec.tokens // L if spec.tokens is not None else batch
        assert B is not None  # the spec sets batch or tokens
        _check_int64("batch", B, B * L, f"batch x seqlen = {B}x{L} tokens")
        yield d, d, L, B


#: the input axes of a cell, in the order :func:`input_cells` gives them
INPUT_AXES = ("target_entropy", "value_corr", "local_share")


def input_cells(spec: SweepSpec) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(input, target_entropy, value_corr, local_share)`` of every input of the grid: the
    product of
    the axes an input takes (:data:`~lshbench.sweep.spec.INPUT_KNOBS`; its default where the
    axis is not given), None for the axes it does not take."""
    out: list[tuple[str, float | None, float | None, float | None]] = []
    for inp in spec.input:
        knobs = INPUT_KNOBS.get(inp, {})
        axes: list[tuple[float | None, ...]] = []
        for name in INPUT_AXES:
            given = getattr(spec, name)
            if name not in knobs:
                axes.append((None,))
            else:
                axes.append(given if given is not None else (knobs[name],))
        for entropy, rho, share in itertools.product(*axes):
            out.append((inp, entropy, rho, share))
    return out


def lsh_configs(spec: SweepSpec, seqlen: int) -> list[LSHAxes]:
    """The LSH configurations of the grid at ``seqlen`` (the :data:`CONFIG_AXES` of a task),
    in order, each once: method ``local`` has no buckets (``n_buckets`` None), so it gives
    one configuration per (chunk_len, n_hashes, chunks_before, chunks_after, weighting).
    Method ``oracle`` gives, per LSH configuration, one per budget of
    :data:`~lshbench.results.cells.ORACLE_BUDGETS` (``oracle_k``), weighting count-once
    whatever ``--weighting`` lists (the oracle weights each key once)."""
    out: dict[str, LSHAxes] = {}
    axes = itertools.product(
        spec.chunk_len,
        spec.n_hashes,
        spec.n_buckets,
        spec.chunks_before,
        spec.chunks_after,
        spec.method,
        spec.weighting,
    )
    for m, H, nb_item, before, after, method, weighting in axes:
        nb: int | tuple[int, ...] | None = None
        if method != "local":
            nb = resolve_n_buckets(nb_item, seqlen, m)
            total = math.prod(nb) if isinstance(nb, tuple) else nb
            where = f"{total} buckets at L={seqlen}, chunk_len={m}"
            _check_int64("n_buckets", nb_item, total, where)
        config: LSHAxes = {
            "n_hashes": H,
            "n_buckets": list(nb) if isinstance(nb, tuple) else nb,
            "chunk_len": m,
            "chunks_before": before,
            "chunks_after": after,
            "method": method,
            "weighting": "count-once" if method == ORACLE else weighting,
        }
        budgets = ORACLE_BUDGETS if method == ORACLE else (None,)
        for budget in budgets:
            entry = config if budget is None else {**config, "oracle_k": budget}
            out.setdefault(json.dumps(entry, sort_keys=True), entry)
    return list(out.values())


def _is_section_2(config: LSHAxes) -> bool:
    return all(config[k] == v for k, v in SECTION_2.items())


def _check_variants(spec: SweepSpec, facts: dict[str, BackendSpec]) -> None:
    """Fail when a hashing backend without variants would get no task at all."""
    if all(v in getattr(spec, k) for k, v in SECTION_2.items()):
        return
    for name, entry in facts.items():
        if entry.uses_hashing and not entry.variants:
            fail(
                "backend",
                name,
                "computes only method lsh with weighting multiplicity (no docs/design.md section "
                f"2b variants), which --method {','.join(spec.method)} --weighting "
                f"{','.join(spec.weighting)} leaves out: add lsh and multiplicity, or drop it",
            )


def _check_int64(field_name: str, value: Any, derived: int, what: str) -> None:
    """Reject a value whose derived row value (a results column) does not fit in int64."""
    if derived > INT64_MAX:
        fail(field_name, value, f"gives {what}; must be <= 2**63-1 (results store int64)")


def _add(tasks: list[Task], seen: set[str], task: Task) -> None:
    if task.id not in seen:
        seen.add(task.id)
        tasks.append(task)


def predicted_bytes(task: Task, facts: BackendSpec) -> tuple[int, int | None]:
    """(predicted peak bytes of the worker for this task, the backend's model or None).

    A worker's own footprint, the input and reference it holds all along
    (:func:`~lshbench.measurement.cost_model.reference_bytes`), plus the largest of the
    phases that follow each other: computing the reference, one call of the backend (its
    memory model), the accuracy metrics of the task's configuration."""
    from lshbench.measurement.cost_model import (
        coverage_bytes,
        memory_model,
        reference_bytes,
        reference_work_bytes,
    )

    B, L, d, dv = task.batch, task.seqlen, task.d, task.dv
    itemsize = {"float64": 8, "float32": 4}.get(task.dtype, 2)
    config = task.config()  # an exact backend's model reads only its qk
    model = memory_model(facts.memory_model, B, L, d, dv, itemsize, config, task.threads)
    work = max(model or 0, reference_work_bytes(B, L, d, dv))
    if facts.uses_hashing:
        work = max(work, coverage_bytes(B, L, d, itemsize, config))
    return WORKER_BASE_BYTES + reference_bytes(B, L, d, dv, itemsize) + work, model


#: calls of one measurement besides the timed samples (warm-up and accuracy), for estimates
EXTRA_CALLS = 5
#: the speed the rough estimate assumes, FLOP/s
ASSUMED_FLOPS = 10e9


def task_seconds(seconds_per_call: float, repeats: int) -> float:
    """Rough seconds of a task whose backend call takes ``seconds_per_call``."""
    return 0.05 + seconds_per_call * (repeats + EXTRA_CALLS)


def estimate_seconds(task: Task, repeats: int, uses_hashing: bool) -> float:
    """Rough seconds of a task from the cost model's flops at :data:`ASSUMED_FLOPS` (for the
    progress bar's ETA and the dry run's estimate)."""
    from lshbench.measurement.cost_model import attention_flops

    config = task.config() if uses_hashing else None
    flops = attention_flops(uses_hashing, task.batch, task.seqlen, task.d, task.dv, config)
    return task_seconds(flops / ASSUMED_FLOPS, repeats)
