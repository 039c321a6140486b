"""The columns the report reads, which of them a table may lack, and what that means.

Results tables grow columns over time (docs/design.md sections 6 and 7): provenance
(``machine_id``, ``code_id``), the variants (``method``, ``weighting``), the input's
parameters (``target_entropy``, ``value_corr``) and the accuracy metrics (``attn_tv``,
``top1_recall``, ``attn_entropy``, ``out_err_v``, ``task_acc``). A table written by an
older lshbench lacks them; the report still renders it (:func:`with_optional_columns` adds
them, empty) and says what is missing (:func:`missing_columns`). ``top1_agree``, dropped from
the schema, is ignored when an old table has it.

pandas only; no plotting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ACCURACY_COLUMNS",
    "DEFAULT_METHOD",
    "DEFAULT_WEIGHTING",
    "ENTROPY_INPUTS",
    "METHOD_ORDER",
    "OPTIONAL_NUMERIC",
    "OPTIONAL_TEXT",
    "REQUIRED_COLUMNS",
    "VALUE_CORR_INPUTS",
    "input_label",
    "missing_columns",
    "with_optional_columns",
]

#: Columns without which a table cannot be reported (a ConfigError names the missing ones).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "run_id", "backend", "seqlen", "batch", "d", "dv", "n_hashes", "n_buckets", "chunk_len",
    "chunks_before", "chunks_after", "causal", "input", "dtype", "threads", "seed", "status",
    "message", "time_median_s",
)  # fmt: skip
#: Accuracy metrics (docs/design.md section 6), headline first.
ACCURACY_COLUMNS = (
    "attn_tv", "mass_recall", "top1_recall", "attn_entropy", "out_err_v", "task_acc",
    "rel_err", "max_abs_err", "cos_sim",
)  # fmt: skip
#: Numeric columns a table may lack (older lshbench): added as NaN.
OPTIONAL_NUMERIC = (
    "compile_s", "time_iqr_s", "time_min_s", "n_samples", "mem_alloc_peak_bytes",
    "mem_rss_peak_bytes", "mem_model_bytes", "flops", "gflops", "tokens_per_s",
    "target_entropy", "value_corr", *ACCURACY_COLUMNS, "grad_err_qk", "grad_err_v",
)  # fmt: skip
#: Text columns a table may lack: added as "" (``pass`` and ``device``: read as forward, cpu).
OPTIONAL_TEXT = (
    "machine_id", "code_id", "method", "weighting", "finished_at", "unstable", "pass", "device",
)  # fmt: skip
#: The variants of docs/design.md section 2b; section 2 (the default) is lsh with multiplicity.
DEFAULT_METHOD = "lsh"
DEFAULT_WEIGHTING = "multiplicity"
#: Order of the methods in tables and legends: LSH first, then its baselines.
METHOD_ORDER = {"lsh": 0, "random": 1, "local": 2}


def _filled(series: pd.Series) -> pd.Series:
    """True where a value is present (not NA, not NaN, not empty text)."""
    text = series.astype(object).map(lambda v: "" if v is None or v is pd.NA else str(v))
    return series.notna() & ~text.str.strip().str.lower().isin(("", "nan", "none", "<na>"))


def with_optional_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every optional column present (NaN or ""), ``top1_agree`` dropped."""
    out = table.drop(columns=["top1_agree"], errors="ignore").copy()
    for col in OPTIONAL_NUMERIC:
        if col not in out:
            out[col] = math.nan
    for col in OPTIONAL_TEXT:
        if col not in out:
            out[col] = ""
    return out


def missing_columns(table: pd.DataFrame) -> list[str]:
    """Columns of the newer schema this table holds no value of, where it should.

    Provenance and variants: no row has a value. ``attn_tv``, ``top1_recall``,
    ``out_err_v``: no ok LSH row (one with ``n_hashes``) has one. ``attn_entropy``: no ok
    row has one. ``task_acc``: there are ``duplicate`` rows but none has it;
    ``target_entropy``: there are ``peaked`` rows but none has it.
    """

    def lacks(col: str, rows: pd.Series | None = None) -> bool:
        if col not in table:
            return True
        values = table[col] if rows is None else table.loc[rows, col]
        return not _filled(values).any()

    ok = table["status"].astype(str).str.strip().str.lower() == "ok"
    lsh_ok = ok & pd.to_numeric(table["n_hashes"], errors="coerce").notna()
    kind = table["input"].astype(str).str.split(":").str[0].str.strip()
    missing = [c for c in ("machine_id", "code_id", "method", "weighting") if lacks(c)]
    if lsh_ok.any():
        missing += [c for c in ("attn_tv", "top1_recall", "out_err_v") if lacks(c, lsh_ok)]
    if ok.any() and lacks("attn_entropy", ok):
        missing.append("attn_entropy")
    if (kind == "duplicate").any() and lacks("task_acc", kind == "duplicate"):
        missing.append("task_acc")
    if (kind == "peaked").any() and lacks("target_entropy", kind == "peaked"):
        missing.append("target_entropy")
    return missing


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if np.isfinite(number) else math.nan


#: Which generators take which parameter (docs/design.md section 6): a value stored for another
#: input (a sweep axis's default) names nothing and is left out of the label.
ENTROPY_INPUTS = ("peaked", "duplicate")
VALUE_CORR_INPUTS = ("peaked",)


def input_label(kind: Any, target_entropy: Any = None, value_corr: Any = None) -> str:
    """The input as the report names it: the generator or file, with the parameters it
    takes: ``"gaussian"``, ``"peaked (entropy 1 nats, rho 0.5)"``,
    ``"duplicate (entropy 0.5 nats)"``, ``"file:heads.npz"``."""
    params = []
    entropy, rho = _number(target_entropy), _number(value_corr)
    if math.isfinite(entropy) and kind in ENTROPY_INPUTS:
        params.append(f"entropy {entropy:g} nats")
    if math.isfinite(rho) and kind in VALUE_CORR_INPUTS:
        params.append(f"rho {rho:g}")
    return f"{kind} ({', '.join(params)})" if params else str(kind)
