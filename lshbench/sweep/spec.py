"""``lshbench sweep``: time, memory and approximation error against dense, into tables.

The grid is the product of the axes below; each point runs every backend. Values come from a
preset, then a ``--config`` TOML file, then the command line (later wins). Every value is
checked before anything runs; a bad one is one line ``field=value: rule`` and exit status 2.

Axes (lists): ``seqlen``, ``chunk_len``, ``n_hashes``, ``n_buckets`` (``rule`` = the
paper's 2L/chunk_len rounded to an even int >= 2; ``auto`` = Hugging Face's rule, a power of
two factorized in two when large; an even int; or factors ``16x32``), ``chunks_before``,
``chunks_after``, ``d``, ``batch`` (or ``tokens``: batch = tokens // seqlen, the paper's
fixed total tokens), ``backend``, ``input``, ``causal``, ``dtype``, ``threads``, ``seed``.
Settings: ``repeats`` (timed samples, >= 5), ``timeout`` (seconds without progress before a
cell's worker is killed), ``mem_budget`` (bytes; ``16G``, ``512M`` or ``80%`` of RAM).

Presets: ``quick`` (default; the headline questions at L <= 8192, gaussian and clustered
input, in one to two minutes on two cores), ``paper`` (the Reformer speed study: batch x L =
32768, L 1024..32768, n_hashes 1, 2, 4, 8 with ``auto`` buckets, and dense), ``full`` (L up
to 65536, every axis).
Threads default to 1 (see :data:`PRESETS`).

Results go to ``--out`` (default ``results/<preset>``): see :mod:`lshbench.results.store`.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lshbench.core.config import ConfigError, LSHConfig, fail
from lshbench.measurement.inputs import INPUTS
from lshbench.measurement.machine import physical_memory, usable_cpus
from lshbench.results.cells import cell_key, task_config, task_id

if TYPE_CHECKING:
    import pandas as pd

    from lshbench.backends import BackendSpec
    from lshbench.sweep.local_executor import Executor

__all__ = ["PRESETS", "SweepSpec", "build_spec", "plan_tasks", "run_sweep", "sweep"]

DTYPES = ("float32", "float64")
#: statuses of rows that ran; a re-run skips them (unless --force; --retry-failed: non-ok)
RAN = ("ok", "error", "timeout", "oom")
#: resident bytes of a worker before it allocates anything (interpreter, NumPy, Numba)
WORKER_BASE_BYTES = 300 * 2**20
#: keys a TOML config may hold (dashes or underscores)
SETTINGS = ("repeats", "timeout", "mem_budget", "out", "preset")
AXES = (
    "seqlen",
    "chunk_len",
    "n_hashes",
    "n_buckets",
    "chunks_before",
    "chunks_after",
    "d",
    "batch",
    "tokens",
    "backend",
    "input",
    "causal",
    "dtype",
    "threads",
    "seed",
)


_BASE = {
    "chunk_len": [64],
    "n_hashes": [1, 2, 4, 8],
    "n_buckets": ["rule"],
    "chunks_before": [1],
    "chunks_after": [0],
    "d": [64],
    "batch": [1],
    "tokens": None,
    "backend": None,
    "input": ["gaussian"],
    "causal": [False],
    "dtype": ["float32"],
    "threads": [1],
    "seed": [0],
    "repeats": 5,
    "timeout": 600.0,
    "mem_budget": "80%",
}

#: preset name -> axis and setting values (backend None = every available of numpy, numba,
#: dense). Threads default to 1, as torch.utils.benchmark does "so that comparisons are
#: apples-to-apples": single-thread times are reproducible and robust to background load
#: (on a busy 2-core machine 2 threads per worker made the quick preset 3x slower and far
#: noisier); ``--threads all`` or a list like ``1,all`` measures the parallel scaling.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        **_BASE,
        "seqlen": [1024, 2048, 4096, 8192],
        "chunk_len": [32, 64],
        "input": ["gaussian", "clustered"],
        "timeout": 300.0,
    },
    # n_buckets "auto": factorized like Hugging Face and Trax do at these lengths; with the
    # unfactorized 2L/chunk_len rule hashing costs O(L) per token and LSH is not flat
    "paper": {
        **_BASE,
        "seqlen": [1024, 2048, 4096, 8192, 16384, 32768],
        "tokens": 32768,
        "batch": None,
        "n_buckets": ["auto"],
    },
    "full": {
        **_BASE,
        "seqlen": [2**k for k in range(10, 17)],
        "chunk_len": [32, 64, 128],
        "n_buckets": ["rule", "auto"],
        "input": list(INPUTS),
        "causal": [False, True],
        "dtype": list(DTYPES),
        "threads": "1,all",
        "timeout": 3600.0,
    },
}

DEFAULT_BACKENDS = ("numpy", "numba", "dense")


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: axis value lists and settings."""

    seqlen: tuple[int, ...]
    chunk_len: tuple[int, ...]
    n_hashes: tuple[int, ...]
    n_buckets: tuple[str | int | tuple[int, ...], ...]
    chunks_before: tuple[int, ...]
    chunks_after: tuple[int, ...]
    d: tuple[int, ...]
    batch: tuple[int, ...] | None
    tokens: int | None
    backend: tuple[str, ...]
    input: tuple[str, ...]
    causal: tuple[bool, ...]
    dtype: tuple[str, ...]
    threads: tuple[int, ...]
    seed: tuple[int, ...]
    repeats: int
    timeout: float
    mem_budget: int
    out: Path
    preset: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for metadata.json."""
        out: dict[str, Any] = {}
        for name in (*AXES, "repeats", "timeout", "mem_budget", "preset"):
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["n_buckets"] = [list(v) if isinstance(v, tuple) else v for v in self.n_buckets]
        out["out"] = str(self.out)
        return out


# ---------------------------------------------------------------- parsing and checking


def _items(field_name: str, value: Any) -> list[Any]:
    """A comma string, a scalar or a list, as a non-empty list of items."""
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    if not items:
        fail(field_name, value, "must name at least one value")
    return items


def _int(field_name: str, item: Any, minimum: int) -> int:
    if isinstance(item, bool):
        fail(field_name, item, f"must be an integer >= {minimum}")
    if isinstance(item, str):
        if not re.fullmatch(r"[+-]?\d+", item.strip()):
            fail(field_name, item, f"must be an integer >= {minimum}")
        item = int(item)
    if not isinstance(item, int) or item < minimum:
        fail(field_name, item, f"must be an integer >= {minimum}")
    return int(item)


def _ints(field_name: str, value: Any, minimum: int) -> tuple[int, ...]:
    return tuple(dict.fromkeys(_int(field_name, v, minimum) for v in _items(field_name, value)))


def _threads(value: Any) -> tuple[int, ...]:
    cpus = usable_cpus()
    items = [cpus if str(v).strip().lower() == "all" else v for v in _items("threads", value)]
    return _ints("threads", items, 1)


def _n_buckets(value: Any) -> tuple[str | int | tuple[int, ...], ...]:
    rule = "must be 'rule', 'auto', an even integer >= 2, or even factors like 16x32"
    out: list[str | int | tuple[int, ...]] = []
    for item in _items("n_buckets", value):
        if isinstance(item, str) and item.strip().lower() in ("rule", "auto"):
            out.append(item.strip().lower())
            continue
        if isinstance(item, list):  # TOML [16, 32]
            factors = tuple(_int("n_buckets", f, 2) for f in item)
        elif isinstance(item, str) and "x" in item.lower():
            factors = tuple(_int("n_buckets", f, 2) for f in item.lower().split("x"))
        else:
            factors = (_int("n_buckets", item, 2),)
        if not factors or any(f % 2 for f in factors):
            fail("n_buckets", item, rule)
        out.append(factors[0] if len(factors) == 1 else factors)
    return tuple(dict.fromkeys(out))


def _bools(field_name: str, value: Any) -> tuple[bool, ...]:
    out = []
    for item in _items(field_name, value):
        if isinstance(item, bool):
            out.append(item)
        elif isinstance(item, str) and item.lower() in ("true", "false", "yes", "no", "1", "0"):
            out.append(item.lower() in ("true", "yes", "1"))
        else:
            fail(field_name, item, "must be true or false")
    return tuple(dict.fromkeys(out))


def _choices(field_name: str, value: Any, allowed: Iterable[str]) -> tuple[str, ...]:
    allowed = tuple(allowed)
    out = []
    for item in _items(field_name, value):
        if not isinstance(item, str) or item not in allowed:
            fail(field_name, item, f"must be one of {', '.join(allowed)}")
        out.append(item)
    return tuple(dict.fromkeys(out))


def _backends(value: Any) -> tuple[str, ...]:
    from lshbench.backends import list_backends

    known = list_backends()
    if value is None:
        names = [n for n in DEFAULT_BACKENDS if n in known and known[n].available]
        return tuple(names)
    names = _items("backend", value)
    for name in names:
        if name not in known:
            fail("backend", name, f"unknown backend; choose from {', '.join(sorted(known))}")
    return tuple(dict.fromkeys(names))


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def parse_bytes(value: Any) -> int:
    """Bytes from an int, ``"16G"``, ``"512MiB"`` (powers of 1024) or ``"80%"`` of RAM."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = -1.0
        if not 0 < share <= 100:
            fail("mem_budget", value, "a share of RAM must be in (0%, 100%]")
        return int(physical_memory() * share / 100)
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        fail("mem_budget", value, "must be bytes > 0 like 16G, 512M, 2.5GiB or a share like 80%")
    unit = (match.group(2) or "b")[0].lower()
    scale = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit]
    return int(float(match.group(1)) * scale)


def _positive_float(field_name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        fail(field_name, value, "must be a number > 0")
    return number


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Keys of a TOML sweep config (dashes or underscores), checked for unknown names."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        fail("config", str(path), f"cannot read: {exc.strerror or exc}")
    except tomllib.TOMLDecodeError as exc:
        fail("config", str(path), f"not valid TOML: {exc}")
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in AXES and name not in SETTINGS:
            fail("config", key, f"unknown key; use {', '.join(AXES + SETTINGS)}")
        out[name] = value
    return out


def build_spec(
    preset: str = "quick",
    config: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SweepSpec:
    """Merge preset < config file < ``options`` (None = not given) and check every value."""
    values: dict[str, Any] = {}
    file_values = load_config(config) if config is not None else {}
    file_preset = file_values.pop("preset", None)
    preset = preset or file_preset or "quick"
    if preset not in PRESETS:
        fail("preset", preset, f"must be one of {', '.join(PRESETS)}")
    values.update(PRESETS[preset])
    values.update(file_values)
    unknown = set(options) - set(AXES) - set(SETTINGS)
    if unknown:
        name = sorted(unknown)[0]
        fail(name, options[name], f"unknown option; use {', '.join(AXES + SETTINGS)}")
    for key, value in options.items():
        if value is not None and key != "preset":
            if key == "batch":
                values["tokens"] = None
            if key == "tokens":
                values["batch"] = None
            values[key] = value
    tokens = values.get("tokens")
    if tokens is not None:
        tokens = _int("tokens", tokens, 1)
    batch = None if tokens is not None else _ints("batch", values.get("batch") or [1], 1)
    seqlen = _ints("seqlen", values["seqlen"], 1)
    if tokens is not None:
        for L in seqlen:
            if L > tokens or tokens % L:
                fail("tokens", tokens, f"must be a multiple of every seqlen (seqlen={L})")
    repeats = _int("repeats", values["repeats"], 5)
    out = values.get("out") or os.path.join("results", preset)
    return SweepSpec(
        seqlen=seqlen,
        chunk_len=_ints("chunk_len", values["chunk_len"], 1),
        n_hashes=_ints("n_hashes", values["n_hashes"], 1),
        n_buckets=_n_buckets(values["n_buckets"]),
        chunks_before=_ints("chunks_before", values["chunks_before"], 0),
        chunks_after=_ints("chunks_after", values["chunks_after"], 0),
        d=_ints("d", values["d"], 1),
        batch=batch,
        tokens=tokens,
        backend=_backends(values.get("backend")),
        input=_choices("input", values["input"], INPUTS),
        causal=_bools("causal", values["causal"]),
        dtype=_choices("dtype", values["dtype"], DTYPES),
        threads=_threads(values["threads"] if values.get("threads") is not None else 1),
        seed=_ints("seed", values["seed"], 0),
        repeats=repeats,
        timeout=_positive_float("timeout", values["timeout"]),
        mem_budget=parse_bytes(values["mem_budget"]),
        out=Path(out),
        preset=preset,
    )


# ---------------------------------------------------------------- the grid


def resolve_n_buckets(
    item: str | int | tuple[int, ...], seqlen: int, chunk_len: int
) -> int | tuple[int, ...]:
    """Buckets per round for one (seqlen, chunk_len).

    ``rule``: the paper's ``2 L / chunk_len`` rounded to an even int >= 2 (research note A.3).
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
    return item


def plan_tasks(spec: SweepSpec) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """Every task of the grid, in run order, and the invalid ones with the reason.

    Cells (inputs) vary slowest in the order input, causal, dtype, threads, seed, d, seqlen;
    inside a cell, the non-hashing backends come first, then each configuration.
    """
    from lshbench.backends import backend_spec

    hashes = {name: backend_spec(name).uses_hashing for name in spec.backend}
    tasks: list[dict[str, Any]] = []
    invalid: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    cells = itertools.product(
        spec.input,
        spec.causal,
        spec.dtype,
        spec.threads,
        spec.seed,
        spec.d,
        spec.seqlen,
        spec.batch or (None,),
    )
    for inp, causal, dtype, threads, seed, d, L, batch in cells:
        B = spec.tokens // L if spec.tokens is not None else batch
        cell = {
            "seqlen": L,
            "batch": B,
            "d": d,
            "dv": d,
            "input": inp,
            "causal": causal,
            "dtype": dtype,
            "threads": threads,
            "seed": seed,
        }
        none = dict.fromkeys(
            ("n_hashes", "n_buckets", "chunk_len", "chunks_before", "chunks_after")
        )
        for name in spec.backend:
            if not hashes[name]:
                _add(tasks, seen, {"backend": name, **cell, **none})
        configs = itertools.product(
            spec.chunk_len, spec.n_hashes, spec.n_buckets, spec.chunks_before, spec.chunks_after
        )
        for m, H, nb_item, before, after in configs:
            nb = resolve_n_buckets(nb_item, L, m)
            for name in spec.backend:
                if not hashes[name]:
                    continue
                task = {
                    "backend": name,
                    **cell,
                    "n_hashes": H,
                    "n_buckets": list(nb) if isinstance(nb, tuple) else nb,
                    "chunk_len": m,
                    "chunks_before": before,
                    "chunks_after": after,
                }
                try:
                    task_config(task).check_seqlen(L)
                except ConfigError as exc:
                    if task_id(task) not in seen:
                        seen.add(task_id(task))
                        invalid.append((task, str(exc)))
                    continue
                _add(tasks, seen, task)
    return tasks, invalid


def _add(tasks: list[dict[str, Any]], seen: set[str], task: dict[str, Any]) -> None:
    ident = task_id(task)
    if ident not in seen:
        seen.add(ident)
        tasks.append(task)


def predicted_bytes(task: dict[str, Any], facts: BackendSpec) -> tuple[int, int | None]:
    """(predicted peak bytes of the worker for this task, the backend's model or None)."""
    from lshbench.measurement.cost_model import coverage_bytes, memory_model, reference_bytes

    B, L, d, dv = task["batch"], task["seqlen"], task["d"], task["dv"]
    itemsize = 4 if task["dtype"] == "float32" else 8
    config: LSHConfig | None = task_config(task) if facts.uses_hashing else None
    model = memory_model(facts.memory_model, B, L, d, dv, itemsize, config, task["threads"])
    work = model or 0
    if config is not None:
        work = max(work, coverage_bytes(L, d, config))
    return WORKER_BASE_BYTES + reference_bytes(B, L, d, dv, itemsize) + work, model


def _estimate_s(task: dict[str, Any], repeats: int, uses_hashing: bool) -> float:
    """Rough seconds of a task (for the progress bar's ETA only)."""
    from lshbench.measurement.cost_model import attention_flops

    config = task_config(task) if uses_hashing else None
    flops = attention_flops(
        uses_hashing, task["batch"], task["seqlen"], task["d"], task["dv"], config
    )
    return 0.05 + flops * (repeats + 5) / 10e9


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---------------------------------------------------------------- running


def _progress(total: float, quiet: bool) -> Any:
    from tqdm import tqdm

    disable = quiet or bool(os.environ.get("CI")) or None  # None: off when not a terminal
    return tqdm(
        total=total,
        disable=disable,
        unit="s",
        bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
        desc="sweep",
        file=sys.stderr,
    )


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
    """Run a checked :class:`SweepSpec` into its directory; returns the grid's rows."""
    import secrets

    from lshbench.backends import backend_spec, list_backends
    from lshbench.measurement.machine import host_metadata
    from lshbench.results.store import ResultStore, make_row
    from lshbench.sweep.local_executor import CellSpec, LocalExecutor
    from lshbench.util import load_average, utc_now

    executor = executor or LocalExecutor(timeout_s=spec.timeout)
    tasks, invalid = plan_tasks(spec)
    facts = {name: backend_spec(name) for name in spec.backend}
    available = list_backends()
    run_id = f"{utc_now().replace(':', '').replace('-', '')[:15]}-{secrets.token_hex(3)}"
    grid_ids = [task_id(t) for t in tasks] + [task_id(t) for t, _ in invalid]

    with ResultStore(spec.out) as store:
        meta_path = store.dir / "metadata.json"
        meta = _read_json(meta_path)
        run_meta = {
            "run_id": run_id,
            "start_time": utc_now(),
            "end_time": None,
            "executor": executor.name,
            "spec": spec.as_dict(),
            **host_metadata(),
        }
        runs = [r for r in meta.get("runs", []) if isinstance(r, dict)]
        runs.append(run_meta)
        workers: dict[str, Any] = dict(meta.get("workers", {}))
        store.write_json("metadata.json", {**run_meta, "workers": workers, "runs": runs})

        here = run_meta["host"]

        def record(row: dict[str, Any]) -> None:
            row["run_id"] = run_id
            row["sweep_host"] = here
            for key, value in (("executor", executor.name), ("host", here),
                               ("concurrency", executor.concurrency)):  # fmt: skip
                if row.get(key) is None:
                    row[key] = value
            if row.get("finished_at") is None:
                row["finished_at"] = utc_now()
            store.append(row)

        def previous(task: dict[str, Any]) -> dict[str, Any] | None:
            """This machine's row of ``task`` in the store (rows measured elsewhere, e.g. a
            committed reference sweep, are measured again here and then replace them)."""
            old = store.rows.get(task_id(task))
            return old if old is not None and old.get("sweep_host") == here else None

        def record_once(task: dict[str, Any], status: str, message: str) -> None:
            """Rows decided here (never ran): appended only when they changed."""
            old = previous(task)
            if old is not None and old["status"] == status and old["message"] == message:
                return
            record(make_row(task, status, message))

        foreign = {r.get("sweep_host") for r in store.rows.values()} - {here}
        if foreign and not quiet:
            print(
                f"note: {spec.out} holds rows measured on {', '.join(sorted(map(str, foreign)))};"
                f" this machine ({here}) measures its own, which replace them in the tables",
                file=sys.stderr,
            )

        for task, reason in invalid:
            record_once(task, "skipped", f"invalid configuration: {reason}")
        done = ("ok",) if retry_failed else RAN
        to_run: list[dict[str, Any]] = []
        for task in tasks:
            old = previous(task)
            if not force and old is not None and old["status"] in done:
                continue
            info = available[task["backend"]]
            if not info.available:
                record_once(task, "skipped", f"backend not available: {info.reason}")
                continue
            need, model = predicted_bytes(task, facts[task["backend"]])
            if need > spec.mem_budget:
                what = f"backend model {format_bytes(model)}" if model else "no backend model"
                record_once(
                    task,
                    "oom_predicted",
                    f"predicted {format_bytes(need)} > --mem-budget "
                    f"{format_bytes(spec.mem_budget)} ({what}; worker, input and reference "
                    "included)",
                )
                continue
            to_run.append(task)

        cells: dict[str, list[dict[str, Any]]] = {}
        for task in to_run:
            cells.setdefault(cell_key(task), []).append(task)
        registry = {name: facts[name].as_dict() for name in spec.backend}
        estimate = {
            task_id(t): _estimate_s(t, spec.repeats, facts[t["backend"]].uses_hashing)
            for t in to_run
        }
        cell_specs = [CellSpec(ts, spec.repeats, registry) for ts in cells.values()]
        bar = _progress(sum(estimate.values()) + 1.5 * len(cell_specs), quiet)
        counts: Counter[str] = Counter()

        def on_row(row: dict[str, Any]) -> None:
            record(row)
            counts[row["status"]] += 1
            bar.update(estimate.get(row["cell_id"], 0.0))
            bar.set_postfix_str(
                f"{sum(counts.values())}/{len(to_run)} rows "
                + " ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                refresh=False,
            )

        def on_env(threads: int, env: dict[str, Any]) -> None:
            workers[str(threads)] = env

        def cell_iter() -> Iterable[CellSpec]:
            for cs in cell_specs:
                yield cs
                bar.update(1.5)
                store.export()

        try:
            executor.run_cells(cell_iter(), on_row, on_env)
        finally:
            bar.close()
            frame = store.export()
            run_meta.update(end_time=utc_now(), load_avg_end=load_average(), rows_run=dict(counts))
            store.write_json("metadata.json", {**run_meta, "workers": workers, "runs": runs})
    by_id = frame.set_index("cell_id", drop=False)
    return by_id.loc[[i for i in grid_ids if i in by_id.index]].reset_index(drop=True)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        with open(path) as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- command line


def _opt(name: str, help_text: str, **kwargs: Any) -> Any:
    return click.option(name, default=None, help=help_text, **kwargs)


@click.command()
@_opt("--seqlen", "Sequence lengths L, comma list (e.g. 1024,2048).")
@_opt("--chunk-len", "Chunk lengths, comma list.")
@_opt("--n-hashes", "Hash rounds, comma list.")
@_opt("--n-buckets", "Buckets: rule (2L/chunk_len), auto (HF), an even int or 16x32; list.")
@_opt("--chunks-before", "Chunks looked back at, comma list.")
@_opt("--chunks-after", "Chunks looked ahead at, comma list.")
@_opt("--d", "Head dimension (d = dv), comma list.")
@_opt("--batch", "Batch sizes, comma list.")
@_opt("--tokens", "Fixed total tokens: batch = tokens // seqlen (replaces --batch).")
@_opt("--backend", "Backends, comma list (default: every available of numpy, numba, dense).")
@_opt("--input", f"Input distributions: {', '.join(INPUTS)}.")
@click.option("--causal/--no-causal", default=None, help="Causal masking (default: no).")
@_opt("--dtype", "float32, float64 (comma list).")
@_opt("--threads", "Threads per worker, comma list; 'all' = every usable CPU (default 1).")
@_opt("--seed", "Seeds, comma list.")
@click.option("--out", default=None, help="Output directory (default results/<preset>).")
@click.option("--preset", default=None, help=f"Starting grid: {', '.join(PRESETS)} (quick).")
@click.option("--config", "config", default=None, help="TOML file with the same keys.")
@_opt("--repeats", "Timed samples per row (>= 5).")
@_opt("--timeout", "Seconds without progress before a cell's worker is killed.")
@_opt("--mem-budget", "Skip rows predicted above this (16G, 512M, 80%).")
@click.option("--force", is_flag=True, help="Redo rows already in --out.")
@click.option("--retry-failed", is_flag=True, help="Redo rows of --out that are not ok.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--executor",
    "executor_name",
    default=None,
    help="local (default: one cell at a time, timing-grade) or dask.",
)
@click.option("--scheduler", default=None, help="Dask scheduler address (--executor dask).")
@click.option("--workers", default=None, help="Start a Dask LocalCluster of N workers.")
@click.option("--mem-limit", default=None, help="Memory limit of each cell process (4G, 25%).")
def sweep(
    force: bool,
    retry_failed: bool,
    quiet: bool,
    config: str | None,
    preset: str | None,
    executor_name: str | None,
    scheduler: str | None,
    workers: str | None,
    mem_limit: str | None,
    **options: Any,
) -> None:
    """Measure time, memory and error against dense over a grid; write tables to --out.

    Every cell runs in a fresh worker process; finished rows are logged at once, so an
    interrupted sweep resumes where it stopped when run again with the same --out.
    """
    if options.get("causal") is not None:
        options["causal"] = [options["causal"]]
    spec = build_spec(preset, config, **options)
    from lshbench.sweep.dask_executor import open_executor

    runner = click.get_current_context().with_resource(
        open_executor(spec, executor_name, scheduler, workers, mem_limit)
    )
    n_tasks = len(plan_tasks(spec)[0])
    click.echo(
        f"lshbench sweep: preset {spec.preset}, {n_tasks} rows, backends "
        f"{', '.join(spec.backend)}, threads {','.join(map(str, spec.threads))} -> {spec.out}",
        err=True,
    )
    if hasattr(runner, "describe"):
        click.echo(runner.describe(), err=True)
    frame = execute(spec, executor=runner, force=force, retry_failed=retry_failed, quiet=quiet)
    counts = frame["status"].value_counts().to_dict()
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    click.echo(f"{len(frame)} rows ({summary})")
    for _, row in frame[frame["status"] != "ok"].head(10).iterrows():
        click.echo(f"  {row['status']}: {row['backend']} L={row['seqlen']}: {row['message']}")
    out = spec.out
    click.echo(
        f"Results: {out / 'results.parquet'}, {out / 'results.csv'} (log results.jsonl, "
        f"metadata.json)"
    )
    click.echo(f"Load them with lshbench.load_results({str(out)!r}); render the report with:")
    click.echo(f"  lshbench report {out}")
