"""The sweep's spec: axes, settings, presets, and :func:`build_spec`, which checks them.

The grid is the product of the axes below; each point runs every backend. Values come from a
preset, then a ``--config`` TOML file, then the command line (later wins). Every value is
checked before anything runs; a bad one is one line ``field=value: rule`` and exit status 2.

Axes (lists): ``seqlen``, ``chunk_len``, ``n_hashes``, ``n_buckets`` (``rule`` = the
paper's 2L/chunk_len rounded to an even int >= 2; ``auto`` = Hugging Face's rule, a power of
two factorized in two when large; an even int; or factors ``16x32``), ``chunks_before``,
``chunks_after``, ``method`` (``lsh``, ``random``, ``local``, and ``oracle``, the k best
keys at each LSH configuration's key count: docs/design.md section 2b),
``weighting`` (``multiplicity``, ``count-once``), ``d``, ``batch`` (or ``tokens``: batch =
tokens // seqlen, the paper's fixed total tokens), ``backend``, ``input`` (a generator of
:data:`~lshbench.measurement.inputs.GENERATORS` or ``file:PATH``, loaded and checked here:
:class:`InputFileFacts`), ``target_entropy``, ``value_corr`` and ``local_share`` (only for
the inputs that take them, :data:`INPUT_KNOBS`), ``causal``, ``dtype`` (``float32``, ``float64``;
``bfloat16`` and ``float16`` on ``cuda`` for the torch backends), ``threads``, ``seed``,
``pass`` (``forward``; ``train``: forward and backward, for backends with a backward pass)
and ``device`` (``cpu``, ``cuda`` for the torch backends), docs/design.md section 9.
Settings: ``repeats`` (timed samples, >= 5), ``timeout`` (seconds without progress before a
cell's worker is killed), ``mem_budget`` (bytes; ``16G``, ``512M`` or ``80%`` of RAM),
``config_from_input`` (the one file input's stored configuration becomes the default of
the :data:`FROM_INPUT` axes; values given in the TOML file or options still win),
``rotation_seeds`` (N >= 1 independent draws of the rotations per hashing configuration,
inputs fixed: one row each, ``rotation_seed`` 0..N-1; default 1).

Presets: ``quick`` (default; is LSH worth it here: L <= 4096, gaussian, peaked and duplicate
input, LSH against random and local keys, numba and dense; table in docs/sweep.md),
``paper`` (the Reformer speed study: batch x L = 32768, L 1024..32768, n_hashes 1, 2, 4, 8
with ``auto`` buckets, and dense), ``full`` (L up to 65536, every axis). Unless ``backend``
is given, every preset also runs ``torch-sdpa`` where torch is installed (the ``peers``
extra; :data:`EXACT_PEERS`), so that the exact baseline is the fastest exact attention here.
Threads default to 1 (see :data:`PRESETS`).

Results go to ``--out`` (default ``results/<preset>``): see :mod:`lshbench.results.store`.
Planning the grid is :mod:`lshbench.sweep.plan`, running it :mod:`lshbench.sweep.run`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lshbench.core.config import METHODS, WEIGHTINGS, fail
from lshbench.core.options import (
    parse_bools,
    parse_choices,
    parse_floats,
    parse_int,
    parse_ints,
    parse_items,
    parse_n_buckets,
    parse_positive_float,
    read_toml,
)
from lshbench.measurement.input_files import FILE_PREFIX, load_input_file
from lshbench.measurement.inputs import GENERATORS, PEAKED_ENTROPY, POSITIONAL_SHARE
from lshbench.measurement.machine import usable_cpus
from lshbench.results.cells import ORACLE
from lshbench.sweep.parsing import parse_bytes

__all__ = [
    "AXES",
    "DEFAULT_BACKENDS",
    "DEVICES",
    "DTYPES",
    "EXACT_PEERS",
    "FROM_INPUT",
    "HALF_DTYPES",
    "INPUT_KNOBS",
    "PASSES",
    "PRESETS",
    "SETTINGS",
    "WORKER_BASE_BYTES",
    "InputFileFacts",
    "SweepSpec",
    "build_spec",
    "exact_peers",
    "load_config",
]

DTYPES = ("float32", "float64", "bfloat16", "float16")
#: half precisions: only on a CUDA device, for backends that run there (docs/design.md section 9)
HALF_DTYPES = ("bfloat16", "float16")
#: ``--pass``: forward alone, or forward + backward of sum(out * g)
PASSES = ("forward", "train")
#: ``--device``: where the torch backends run
DEVICES = ("cpu", "cuda")
#: resident bytes of a worker before it allocates anything (interpreter, NumPy, Numba)
WORKER_BASE_BYTES = 300 * 2**20
#: the longest --timeout, seconds (about 11.6 days)
MAX_TIMEOUT_S = 1e6
#: keys a TOML config may hold (dashes or underscores)
SETTINGS = (
    "repeats", "timeout", "mem_budget", "out", "preset", "config_from_input", "rotation_seeds",
)  # fmt: skip
#: the axes ``--config-from-input`` takes from the input file's stored configuration
FROM_INPUT = ("n_hashes", "n_buckets", "chunk_len", "chunks_before", "chunks_after", "causal")
AXES = (
    "seqlen",
    "chunk_len",
    "n_hashes",
    "n_buckets",
    "chunks_before",
    "chunks_after",
    "method",
    "weighting",
    "d",
    "batch",
    "tokens",
    "backend",
    "input",
    "target_entropy",
    "value_corr",
    "local_share",
    "causal",
    "dtype",
    "threads",
    "seed",
    "pass",
    "device",
)


_BASE = {
    "chunk_len": [64],
    "n_hashes": [1, 2, 4, 8],
    "n_buckets": ["rule"],
    "chunks_before": [1],
    "chunks_after": [0],
    "method": ["lsh"],
    "weighting": ["multiplicity"],
    "d": [64],
    "batch": [1],
    "tokens": None,
    "backend": None,
    "input": ["gaussian"],
    "target_entropy": None,
    "value_corr": None,
    "local_share": None,
    "causal": [False],
    "dtype": ["float32"],
    "threads": [1],
    "seed": [0],
    "pass": ["forward"],
    "device": ["cpu"],
    "repeats": 5,
    "timeout": 600.0,
    "mem_budget": "80%",
}

#: preset name -> axis and setting values (backend None = every available of numpy, numba,
#: dense; torch-sdpa, :data:`EXACT_PEERS`, joins every preset's list where installed).
#: Threads default to 1, as torch.utils.benchmark does "so that comparisons are
#: apples-to-apples": single-thread times are reproducible and robust to background load
#: (on a busy 2-core machine 2 threads per worker made the quick preset 3x slower and far
#: noisier); ``--threads all`` or a list like ``1,all`` measures the parallel scaling.
PRESETS: dict[str, dict[str, Any]] = {
    # "is LSH worth it here?" in a few minutes: the worst case (gaussian, near-uniform
    # attention), attention sharper than most trained heads at two sharpnesses (peaked at 1
    # and 4 nats), the paper's duplication task; LSH against random keys and a local window at the
    # same key budget, both weightings; numba (the fast backend; numpy computes the same
    # numbers, slower) and dense. The paper preset has the long sequences and numpy.
    "quick": {
        **_BASE,
        "seqlen": [1024, 2048, 4096],
        "n_hashes": [1, 4, 8],  # 1, 2, 4, 8 took 4m08s from a cold Numba cache on 2 cores
        "method": ["lsh", "random", "local"],
        "weighting": ["multiplicity", "count-once"],
        "input": ["gaussian", "peaked", "duplicate"],
        "target_entropy": [1.0, 4.0],
        "backend": ["numba", "dense"],
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
        "method": ["lsh", "random", "local"],
        "weighting": ["multiplicity", "count-once"],
        "input": list(GENERATORS),
        "target_entropy": [1.0, 4.0],
        "backend": ["numba", "dense"],  # numpy computes numba's numbers, about 5x slower
        "causal": [False, True],
        "dtype": ["float32", "float64"],
        "threads": "1,all",
        "timeout": 3600.0,
    },
}

DEFAULT_BACKENDS = ("numpy", "numba", "dense")
#: exact backends every sweep adds where they are installed and ``--backend`` is not given
#: (the preset's list or :data:`DEFAULT_BACKENDS` otherwise): the exact baseline of a
#: comparison is the fastest exact attention the machine runs (docs/design.md section 8)
EXACT_PEERS = ("torch-sdpa",)

#: the input axes each input takes (docs/design.md section 6), with the value a cell gets when the
#: axis is not given (None: not passed to the generator); other inputs get None, and the
#: grid is not multiplied for them. peaked's default target entropy is the generator's own.
INPUT_KNOBS: dict[str, dict[str, float | None]] = {
    "peaked": {
        "target_entropy": PEAKED_ENTROPY,
        "value_corr": 0.0,
    },
    "duplicate": {"target_entropy": None},
    "positional": {
        "target_entropy": PEAKED_ENTROPY,
        "value_corr": 0.0,
        "local_share": POSITIONAL_SHARE,
    },
}


@dataclass(frozen=True)
class InputFileFacts:
    """One ``--input file:PATH`` of a sweep, checked when the spec is built.

    item: the ``--input`` item as given (``file:PATH``); label: ``file:<name>``, the rows'
    ``input``; path and sha256 of the file (the sha256 is part of the rows' identity: a
    changed file is measured again); batch, seqlen (L), d, dv of its arrays; config: its
    stored LSH configuration (or None); qk: "separate" when it holds separate queries and
    keys, else "shared"; heads: the (layer, head) of each sequence when it names them (the
    sweep then runs one cell per head), else ()."""

    item: str
    label: str
    name: str
    path: str
    sha256: str
    batch: int
    seqlen: int
    d: int
    dv: int
    config: dict[str, Any] | None
    qk: str = "shared"
    heads: tuple[tuple[int, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for the run's metadata."""
        config = None
        if self.config is not None:
            config = {k: list(v) if isinstance(v, tuple) else v for k, v in self.config.items()}
        return {
            "name": self.name, "path": self.path, "sha256": self.sha256, "batch": self.batch,
            "seqlen": self.seqlen, "d": self.d, "dv": self.dv, "config": config,
            "qk": self.qk, "heads": len(self.heads),
        }  # fmt: skip


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: axis value lists and settings."""

    seqlen: tuple[int, ...]
    chunk_len: tuple[int, ...]
    n_hashes: tuple[int, ...]
    n_buckets: tuple[str | int | tuple[int, ...], ...]
    chunks_before: tuple[int, ...]
    chunks_after: tuple[int, ...]
    method: tuple[str, ...]
    weighting: tuple[str, ...]
    d: tuple[int, ...]
    batch: tuple[int, ...] | None
    tokens: int | None
    backend: tuple[str, ...]
    input: tuple[str, ...]
    target_entropy: tuple[float, ...] | None  # None: not given (INPUT_KNOBS' defaults)
    value_corr: tuple[float, ...] | None
    local_share: tuple[float, ...] | None
    causal: tuple[bool, ...]
    dtype: tuple[str, ...]
    threads: tuple[int, ...]
    seed: tuple[int, ...]
    passes: tuple[str, ...]  # the ``pass`` axis
    device: tuple[str, ...]
    repeats: int
    timeout: float
    mem_budget: int
    out: Path
    preset: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: the ``file:`` inputs, by their ``--input`` item
    input_files: dict[str, InputFileFacts] = field(default_factory=dict)
    #: whether ``seqlen`` was given (command line, TOML): file inputs then crop to each
    #: length not above theirs; otherwise they run at their own length
    seqlen_given: bool = True
    config_from_input: bool = False
    #: independent draws of the rotations per hashing configuration (inputs fixed)
    rotation_seeds: int = 1
    #: whether ``backend`` was given (config file or option); if not, :data:`EXACT_PEERS`
    #: that are installed joined the preset's list
    backend_given: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for metadata.json."""
        out: dict[str, Any] = {}
        for name in (*AXES, "repeats", "timeout", "mem_budget", "preset"):
            value = getattr(self, "passes" if name == "pass" else name)
            out[name] = list(value) if isinstance(value, tuple) else value
        if self.rotation_seeds > 1:
            out["rotation_seeds"] = self.rotation_seeds
        out["n_buckets"] = [list(v) if isinstance(v, tuple) else v for v in self.n_buckets]
        out["out"] = str(self.out)
        out["input_files"] = [f.as_dict() for f in self.input_files.values()]
        out["config_from_input"] = self.config_from_input
        return out


def exact_peers(spec: SweepSpec) -> dict[str, str]:
    """Each of :data:`EXACT_PEERS` -> whether the sweep runs it and, if not, why: ``"in the
    run"``, ``"not installed: ..."`` (the registry's reason) or ``"left out by --backend"``.
    Stored in the run's entry; the report and the dry run say it."""
    from lshbench.backends import list_backends

    known = list_backends()
    out = {}
    for name in EXACT_PEERS:
        if name in spec.backend:
            out[name] = "in the run"
        elif name in known and not known[name].available:
            out[name] = known[name].reason
        else:
            out[name] = "left out by --backend"
    return out


# ---------------------------------------------------------------- checking


def _threads(value: Any) -> tuple[int, ...]:
    cpus = usable_cpus()
    items = [cpus if str(v).strip().lower() == "all" else v for v in parse_items("threads", value)]
    return parse_ints("threads", items, 1)


def _backends(value: Any, given: bool = True) -> tuple[str, ...]:
    """The ``backend`` axis: ``value`` as given; when not given (``value`` the preset's list,
    or None for :data:`DEFAULT_BACKENDS`), its available backends plus the available
    :data:`EXACT_PEERS` (availability: :func:`~lshbench.backends.list_backends`, which
    imports no optional package)."""
    from lshbench.backends import list_backends

    known = list_backends()
    if not given:
        base = DEFAULT_BACKENDS if value is None else parse_items("backend", value)
        names = [n for n in (*base, *EXACT_PEERS) if n in known and known[n].available]
        return tuple(dict.fromkeys(names))
    names = parse_items("backend", value)
    for name in names:
        if not isinstance(name, str) or name not in known:
            fail("backend", name, f"unknown backend; choose from {', '.join(sorted(known))}")
    return tuple(dict.fromkeys(names))


def _knob(name: str, value: Any, inputs: tuple[str, ...], given: bool) -> tuple[float, ...] | None:
    """Values of the input axis ``name`` (None when not given); ConfigError when out of range
    or when the user gave it (``given``: config file or options) and no input of the grid
    takes it. A preset's value for inputs the grid dropped is simply unused."""
    if value is None:
        return None
    if name == "target_entropy":
        values = parse_floats(name, value, 0.0, open_minimum=True)
    else:
        values = parse_floats(name, value, 0.0, 1.0)
    takers = [inp for inp, knobs in INPUT_KNOBS.items() if name in knobs]
    if not set(takers) & set(inputs):
        if not given:
            return None
        fail(
            name,
            ",".join(f"{v:g}" for v in values),
            f"applies to --input {' and '.join(takers)} only; the grid's inputs are "
            f"{', '.join(inputs)}",
        )
    return values


def _timeout(value: Any) -> float:
    """Seconds of --timeout: a number > 0 and at most :data:`MAX_TIMEOUT_S` (a wait longer
    than that is no limit, and the OS cannot wait that long in one call)."""
    seconds = parse_positive_float("timeout", value)
    if seconds > MAX_TIMEOUT_S:
        fail("timeout", value, f"must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    return seconds


def _reachable_entropy(
    values: tuple[float, ...] | None, seqlen: tuple[int, ...], causal: tuple[bool, ...]
) -> tuple[float, ...] | None:
    """``values`` of --target-entropy, or ConfigError for one that no cell of the grid can
    reach: at or above the entropy of uniform attention at the grid's largest L (smaller
    cells that cannot reach it become error rows saying so)."""
    if values is None:
        return None
    from lshbench.measurement.sharpness import max_mean_entropy

    top = max(max_mean_entropy(L, c) for L in seqlen for c in causal)
    for value in values:
        if value >= top:
            fail(
                "target_entropy",
                f"{value:g}",
                f"must be below {top:.4g} nats, the entropy of uniform attention at the "
                f"grid's largest L={max(seqlen)}",
            )
    return values


def _mem_budget(value: Any) -> int:
    """Bytes of --mem-budget; at least a worker's own footprint (below it every row would be
    oom_predicted without running)."""
    budget = parse_bytes(value)
    if budget <= WORKER_BASE_BYTES:
        fail(
            "mem_budget",
            value,
            f"must be more than {WORKER_BASE_BYTES // 2**20} MiB, a worker's own memory "
            "(with less every row is oom_predicted)",
        )
    return budget


def _out_dir(value: Any, preset: str) -> Path:
    """The output directory: ``results/<preset>`` when not given, else a non-empty path."""
    if value is None:
        return Path("results", preset)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        fail("out", value, "must be a directory path (a string)")
    if not value.strip():
        fail("out", f'"{value}"', "must name a directory (the path is empty)")
    return Path(value)


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Keys of a TOML sweep config (dashes or underscores), checked for unknown names."""
    return read_toml(path, AXES + SETTINGS)


def _merge(
    preset: str | None, config: Any, options: dict[str, Any]
) -> tuple[str, dict[str, Any], set[str]]:
    """(preset name, values, the keys given in the config file or options): preset <
    config file < options (None = not given)."""
    values: dict[str, Any] = {}
    file_values = load_config(config) if config is not None else {}
    file_preset = file_values.pop("preset", None)
    preset = preset or file_preset or "quick"
    if not isinstance(preset, str) or preset not in PRESETS:
        fail("preset", preset, f"must be one of {', '.join(PRESETS)}")
    values.update(PRESETS[preset])
    values.update(file_values)
    given = set(file_values)
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
            given.add(key)
    return preset, values, given


def _inputs(value: Any) -> tuple[tuple[str, ...], dict[str, InputFileFacts]]:
    """The ``--input`` items (generator names and ``file:PATH``) and the files, each loaded
    and checked now (:func:`~lshbench.measurement.input_files.load_input_file`: one
    ConfigError line naming the file and the rule)."""
    items = parse_items("input", value)
    names: list[str] = []
    files: dict[str, InputFileFacts] = {}
    labels: dict[str, str] = {}
    for item in items:
        if isinstance(item, str) and item.strip().startswith(FILE_PREFIX):
            item = item.strip()
            path = item[len(FILE_PREFIX) :]
            if not path:
                fail("input", item, "must name a file: file:PATH")
            f = load_input_file(path)
            if f.qk_mode == "separate" and (f.config or {}).get("causal"):
                fail(
                    "input",
                    item,
                    "holds causal attention (captured from a causal model); LSH over "
                    "separate queries and keys is non-causal only",
                )
            if labels.setdefault(f.input_label, item) != item:
                fail(
                    "input",
                    item,
                    f"has the same name as {labels[f.input_label]} (rows carry "
                    f"input={f.input_label}); rename one",
                )
            B, L, d = f.qk.shape
            heads: tuple[tuple[int, int], ...] = ()
            if f.layer is not None and f.head is not None:
                heads = tuple(zip(f.layer.tolist(), f.head.tolist(), strict=True))
            files[item] = InputFileFacts(
                item, f.input_label, f.name, f.path, f.sha256, B, L, d, int(f.v.shape[2]),
                f.config, qk=f.qk_mode, heads=heads,
            )  # fmt: skip
            names.append(item)
        else:
            names.extend(parse_choices("input", [item], GENERATORS))
    return tuple(dict.fromkeys(names)), files


def _config_from_input(values: dict[str, Any], given: set[str], files: dict) -> None:
    """``--config-from-input``: the one file input's stored configuration becomes the
    default of the :data:`FROM_INPUT` axes (those given in the config file or options win)."""
    if len(files) != 1:
        fail(
            "config_from_input",
            "true",
            f"needs exactly one --input file:PATH, the grid has {len(files)}",
        )
    (facts,) = files.values()
    if facts.config is None:
        fail(
            "config_from_input",
            "true",
            f"{facts.label} stores no LSH configuration (n_hashes, n_buckets, chunk_len, ...)",
        )
    for key, stored in facts.config.items():
        if key in FROM_INPUT and key not in given:
            values[key] = ["x".join(map(str, stored)) if isinstance(stored, tuple) else stored]


def build_spec(
    preset: str | None = "quick",
    config: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SweepSpec:
    """Merge preset < config file < ``options`` (None = not given) and check every value.

    Raises :class:`lshbench.ConfigError` (one line ``field=value: rule``) on a bad value."""
    preset, values, given = _merge(preset, config, options)
    inputs, files = _inputs(values["input"])
    from_input = parse_bools("config_from_input", values.get("config_from_input") or False)[0]
    if from_input:
        _config_from_input(values, given, files)
    tokens = values.get("tokens")
    if tokens is not None:
        tokens = parse_int("tokens", tokens, 1)
    batch = None if tokens is not None else parse_ints("batch", values.get("batch") or [1], 1)
    seqlen = parse_ints("seqlen", values["seqlen"], 1)
    if tokens is not None:
        for L in seqlen:
            if L > tokens or tokens % L:
                fail("tokens", tokens, f"must be a multiple of every seqlen (seqlen={L})")
    if "seqlen" in given:
        for facts in files.values():
            if min(seqlen) > facts.seqlen:
                fail(
                    "seqlen",
                    ",".join(map(str, seqlen)),
                    f"no length fits {facts.label}, whose L is {facts.seqlen} (a file is "
                    "cropped to each --seqlen not above its L)",
                )
    repeats = parse_int("repeats", values["repeats"], 5)
    dtypes = parse_choices("dtype", values["dtype"], DTYPES)
    devices = parse_choices("device", values.get("device") or ["cpu"], DEVICES)
    half = [t for t in dtypes if t in HALF_DTYPES]
    if half and "cuda" not in devices:
        fail("dtype", half[0], "runs on --device cuda only (half precision on a GPU)")
    out = _out_dir(values.get("out"), preset)
    return SweepSpec(
        seqlen=seqlen,
        chunk_len=parse_ints("chunk_len", values["chunk_len"], 1),
        n_hashes=parse_ints("n_hashes", values["n_hashes"], 1),
        n_buckets=parse_n_buckets(values["n_buckets"]),
        chunks_before=parse_ints("chunks_before", values["chunks_before"], 0),
        chunks_after=parse_ints("chunks_after", values["chunks_after"], 0),
        method=parse_choices("method", values["method"], (*METHODS, ORACLE)),
        weighting=parse_choices("weighting", values["weighting"], WEIGHTINGS),
        d=parse_ints("d", values["d"], 1),
        batch=batch,
        tokens=tokens,
        backend=_backends(values.get("backend"), "backend" in given),
        input=inputs,
        target_entropy=_reachable_entropy(
            _knob(
                "target_entropy", values.get("target_entropy"), inputs, "target_entropy" in given
            ),
            seqlen,
            parse_bools("causal", values["causal"]),
        ),
        value_corr=_knob("value_corr", values.get("value_corr"), inputs, "value_corr" in given),
        local_share=_knob("local_share", values.get("local_share"), inputs, "local_share" in given),
        causal=parse_bools("causal", values["causal"]),
        dtype=dtypes,
        threads=_threads(values["threads"] if values.get("threads") is not None else 1),
        seed=parse_ints("seed", values["seed"], 0),
        passes=parse_choices("pass", values.get("pass") or ["forward"], PASSES),
        device=devices,
        repeats=repeats,
        rotation_seeds=parse_int("rotation_seeds", values.get("rotation_seeds", 1), 1),
        timeout=_timeout(values["timeout"]),
        mem_budget=_mem_budget(values["mem_budget"]),
        out=out,
        preset=preset,
        input_files=files,
        seqlen_given="seqlen" in given,
        config_from_input=from_input,
        backend_given="backend" in given,
    )
