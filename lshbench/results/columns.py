"""The results table's columns, declared once (docs/design.md section 7).

:data:`COLUMN_TABLE` gives every column its name, kind, unit, one-line meaning and the
schema version that added it. Everything that knows a column derives from it: the row
checks and the store (:mod:`lshbench.results.schema`), the exports' dtypes
(:func:`lshbench.results.schema.rows_to_frame`), the CSV reader, the report's column lists
(:mod:`lshbench.report.columns`), the upgrade of older tables
(:mod:`lshbench.results.upgrade`) and the column list of docs/columns.md
(:func:`columns_markdown`, checked by a test).

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COLUMN_TABLE",
    "TRACEMALLOC_BLIND",
    "TRAIN_FLOPS_FACTOR",
    "Column",
    "ColumnKind",
    "columns_markdown",
    "names",
]

ColumnKind = Literal["int", "float", "bool", "str", "list"]

#: A train row's FLOPs over its forward pass's: the backward pass of attention does twice the
#: forward's products (the score gradient ``dP = dO V^T`` and ``dV = P^T dO`` on the value
#: side, ``dQ = dS K`` and ``dK = dS^T Q`` on the score side), with no recomputation counted.
TRAIN_FLOPS_FACTOR = 3

#: The words a row's ``message`` carries when the backend allocates outside Python's
#: allocator (torch on the CPU), so tracemalloc cannot see its memory: such a row has no
#: ``mem_alloc_peak_bytes`` (rows written before it was left empty have the peak of the
#: NumPy conversions around the call, which the report ignores); its memory is
#: ``mem_rss_peak_bytes``.
TRACEMALLOC_BLIND = "allocator is invisible to tracemalloc"


@dataclass(frozen=True)
class Column:
    """One column of the results table."""

    name: str
    kind: ColumnKind
    unit: str  #: "" for labels and plain counts without a unit
    meaning: str  #: one line
    since: int = 0  #: schema version that added it (0: the first tables, results.jsonl)
    required: bool = False  #: every valid row has a value (else None is allowed)
    minimum: int | None = None  #: integers: the smallest valid value
    extra: bool = False  #: after the design's columns (an addition of this implementation)


#: every column, in table order: the design's columns, then this implementation's extras
COLUMN_TABLE: tuple[Column, ...] = (
    Column("run_id", "str", "", "the run that measured the row (metadata.json's entry)"),
    Column(
        "machine_id",
        "str",
        "",
        "fingerprint of what decides a timing (CPU, memory, OS, libraries)",
        since=1,
    ),
    Column(
        "code_id", "str", "", "fingerprint of the lshbench source that measured the row", since=1
    ),
    Column(
        "backend",
        "str",
        "",
        "backend name (numpy, numba, dense, hf, torch-sdpa, ...)",
        required=True,
    ),
    Column(
        "method",
        "str",
        "",
        "how buckets are chosen: lsh, random or local; oracle: the k best keys (empty: no hashing)",
        since=1,
    ),
    Column("weighting", "str", "", "multiplicity or count-once (empty: no hashing)", since=1),
    Column("seqlen", "int", "tokens", "sequence length L", required=True, minimum=1),
    Column("batch", "int", "sequences", "batch size B", required=True, minimum=1),
    Column("d", "int", "", "query/key size", required=True, minimum=1),
    Column("dv", "int", "", "value size", required=True, minimum=1),
    Column("n_hashes", "int", "", "hash rounds H (empty: no hashing)", minimum=1),
    Column(
        "n_buckets",
        "int",
        "",
        "buckets per round, the product of the factors (empty: none)",
        minimum=1,
    ),
    Column("chunk_len", "int", "tokens", "chunk length m", minimum=1),
    Column("chunks_before", "int", "chunks", "chunks each chunk looks back at", minimum=0),
    Column("chunks_after", "int", "chunks", "chunks each chunk looks ahead at", minimum=0),
    Column("causal", "bool", "", "keys after the query are masked", required=True),
    Column("input", "str", "", "input generator, or file:<name>", required=True),
    Column(
        "target_entropy",
        "float",
        "nats",
        "exact attention entropy the input was made with (empty: the input takes none)",
        since=1,
    ),
    Column(
        "value_corr",
        "float",
        "",
        "how much values follow the token's cluster (empty: the input takes none)",
        since=1,
    ),
    Column(
        "local_share",
        "float",
        "",
        "share of exact attention mass the input puts on each query's neighbours (empty: the "
        "input takes none)",
        since=4,
    ),
    Column("dtype", "str", "", "compute dtype (float32, float64)", required=True),
    Column("threads", "int", "", "threads of every pool in the worker", required=True, minimum=1),
    Column("seed", "int", "", "seed of the input and the rotations", required=True, minimum=0),
    Column("status", "str", "", "ok, oom, oom_predicted, timeout, error or skipped", required=True),
    Column("message", "str", "", "why a row is not ok (empty when ok)"),
    Column("compile_s", "float", "s", "backend compile plus the first call"),
    Column("time_median_s", "float", "s", "median seconds per call (positive in an ok row)"),
    Column("time_iqr_s", "float", "s", "interquartile range of the per-call seconds"),
    Column("time_min_s", "float", "s", "fastest sample, seconds per call"),
    Column("n_samples", "int", "", "timed samples"),
    Column("unstable", "bool", "", "IQR / median > 10%"),
    Column(
        "mem_alloc_peak_bytes",
        "int",
        "bytes",
        "tracemalloc peak of one call (empty where tracemalloc cannot see the allocator)",
    ),
    Column("mem_rss_peak_bytes", "int", "bytes", "resident-set peak of one call"),
    Column("mem_model_bytes", "int", "bytes", "the backend's analytic memory model of one call"),
    Column(
        "flops",
        "int",
        "FLOP",
        "nominal floating-point operations of one call (train: 3x the forward's)",
    ),
    Column("gflops", "float", "GFLOP/s", "flops / time_median_s"),
    Column("tokens_per_s", "float", "tokens/s", "batch * seqlen / time_median_s"),
    Column(
        "attn_tv",
        "float",
        "",
        "mean total-variation distance to the exact attention (the headline error)",
        since=1,
    ),
    Column("mass_recall", "float", "", "share of exact softmax mass on keys the windows contain"),
    Column(
        "top1_recall",
        "float",
        "",
        "share of queries whose heaviest exact key is in their windows",
        since=1,
    ),
    Column(
        "keys_slots",
        "int",
        "keys",
        "window slots per query over all rounds, repeats included (exact: L)",
        since=3,
        minimum=0,
    ),
    Column(
        "keys_distinct",
        "float",
        "keys",
        "mean distinct keys in a query's windows, masks not applied (exact: L)",
        since=3,
    ),
    Column("attn_entropy", "float", "nats", "mean exact row entropy of the input", since=1),
    Column("out_err_v", "float", "", "||out - ref|| / ||v - mean(v)||", since=1),
    Column(
        "task_acc",
        "float",
        "",
        "duplicate input: share of queries decoded to their copy's value",
        since=1,
    ),
    Column("rel_err", "float", "", "relative Frobenius error of the output"),
    Column("max_abs_err", "float", "", "largest absolute output error"),
    Column("cos_sim", "float", "", "mean row cosine between output and reference"),
    # this implementation's extras
    Column(
        "cell_id",
        "str",
        "",
        "the task's id (Task.id): a digest of the row's backend, input and configuration; "
        "with machine_id and code_id, the row's key",
        required=True,
        extra=True,
    ),
    Column("n_buckets_spec", "str", "", "n_buckets as written: 128, or factors 16x32", extra=True),
    Column("first_call_s", "float", "s", "the first call alone", extra=True),
    Column("time_mean_s", "float", "s", "mean seconds per call", extra=True),
    Column("number", "int", "calls", "calls per timing sample", extra=True),
    Column("time_samples_s", "list", "s", "raw seconds per call of every sample", extra=True),
    Column("tokens", "int", "tokens", "batch * seqlen", extra=True),
    Column(
        "kernel",
        "str",
        "",
        "the backend's kernel variant (numba: blas, tiled or mixed)",
        since=1,
        extra=True,
    ),
    Column(
        "host",
        "str",
        "",
        "host name where the row was measured (a label, not an identity)",
        extra=True,
    ),
    Column("executor", "str", "", "local or dask", extra=True),
    Column("concurrency", "int", "cells", "cells running at once on the executor", extra=True),
    Column("finished_at", "str", "", "UTC ISO time the row was written", extra=True),
    Column(
        "calib_gflops",
        "float",
        "GFLOP/s",
        "float32 GEMM rate of the row's host at its threads (Dask executor; empty: local)",
        extra=True,
    ),
    Column(
        "qk",
        "str",
        "",
        "shared or separate queries and keys (docs/design.md section 2c)",
        since=2,
        extra=True,
    ),
    Column(
        "layer",
        "int",
        "",
        "model layer of a captured head (empty: no head)",
        since=2,
        minimum=0,
        extra=True,
    ),
    Column(
        "head",
        "int",
        "",
        "head within that layer (empty: no head)",
        since=2,
        minimum=0,
        extra=True,
    ),
    Column(
        "oracle_k",
        "str",
        "",
        "method oracle: k is the configuration's distinct keys per query (rounded mean) or its "
        "slots (empty: not the oracle)",
        since=3,
        extra=True,
    ),
    Column(
        "rotation_seed",
        "int",
        "",
        "draw of the rotations for the same input: 0 the first, 1..N-1 with --rotation-seeds N "
        "(empty: no hashing)",
        since=3,
        minimum=0,
        extra=True,
    ),
    # training step and devices (docs/design.md section 9)
    Column(
        "pass",
        "str",
        "",
        "forward, or train: forward plus the backward pass of sum(out * g)",
        since=3,
        extra=True,
    ),
    Column("device", "str", "", "cpu or cuda: where the cell ran", since=3, extra=True),
    Column(
        "grad_err_qk",
        "float",
        "",
        "train rows: relative error of d sum(out * g) / d qk against exact attention's",
        since=3,
        extra=True,
    ),
    Column(
        "grad_err_v",
        "float",
        "",
        "train rows: relative error of d sum(out * g) / d v against exact attention's",
        since=3,
        extra=True,
    ),
)


def names(*, kind: ColumnKind | None = None, extra: bool | None = None) -> tuple[str, ...]:
    """Column names in table order, optionally only of one ``kind`` or group."""
    return tuple(
        c.name
        for c in COLUMN_TABLE
        if (kind is None or c.kind == kind) and (extra is None or c.extra == extra)
    )


def columns_markdown() -> str:
    """The column table as the Markdown table of docs/columns.md."""
    lines = [
        "| column | kind | unit | since | meaning |",
        "|---|---|---|---|---|",
    ]
    for c in COLUMN_TABLE:
        need = " (always set)" if c.required else ""
        lines.append(f"| `{c.name}` | {c.kind} | {c.unit} | {c.since} | {c.meaning}{need} |")
    return "\n".join(lines) + "\n"
