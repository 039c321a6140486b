"""The columns the report reads, which of them may hold no value, and what that means.

The column names and kinds come from :data:`lshbench.results.columns.COLUMN_TABLE`. Results
tables grew columns over time (provenance, the variants, the input's parameters, the newer
accuracy metrics); a table written by an older lshbench is upgraded when it is read
(:mod:`lshbench.results.upgrade`: the columns it lacks come back empty), and the report
says which of them hold no value (:func:`missing_columns`). :func:`with_optional_columns`
adds, empty, any optional column a table handed to the report directly lacks.

pandas only; no plotting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lshbench.results.columns import COLUMN_TABLE
from lshbench.results.upgrade import SECTION_2

__all__ = [
    "ACCURACY_COLUMNS",
    "DEFAULT_METHOD",
    "DEFAULT_WEIGHTING",
    "ENTROPY_INPUTS",
    "GRADIENT_COLUMNS",
    "LOCAL_SHARE_INPUTS",
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
#: The gradient errors of train rows (docs/design.md section 9), read by the report although
#: they are extras of the column table.
GRADIENT_COLUMNS = ("grad_err_qk", "grad_err_v")
#: Numeric columns of the design's table, and the gradient errors, the report reads when
#: they hold values: NaN if absent.
OPTIONAL_NUMERIC = tuple(
    c.name
    for c in COLUMN_TABLE
    if c.kind in ("int", "float")
    and (not c.extra or c.name in GRADIENT_COLUMNS)
    and c.name not in REQUIRED_COLUMNS
)
#: Text and flag columns the report reads when they hold values: "" if absent.
OPTIONAL_TEXT = tuple(
    c.name for c in COLUMN_TABLE if c.kind in ("str", "bool") and c.name not in REQUIRED_COLUMNS
)
#: The variants of docs/design.md section 2b; section 2 (the default) is lsh with multiplicity.
DEFAULT_METHOD = SECTION_2["method"]
DEFAULT_WEIGHTING = SECTION_2["weighting"]
#: Order of the methods in tables and legends: LSH first, then its baselines, the oracle
#: (the best k keys) last.
METHOD_ORDER = {"lsh": 0, "random": 1, "local": 2, "oracle": 3}


def _filled(series: pd.Series) -> pd.Series:
    """True where a value is present (not NA, not NaN, not empty text)."""
    text = series.astype(object).map(lambda v: "" if v is None or v is pd.NA else str(v))
    return series.notna() & ~text.str.strip().str.lower().isin(("", "nan", "none", "<na>"))


def with_optional_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every optional column present (NaN or "")."""
    out = table.copy()
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
ENTROPY_INPUTS = ("peaked", "positional", "duplicate")
VALUE_CORR_INPUTS = ("peaked", "positional")
LOCAL_SHARE_INPUTS = ("positional",)


def input_label(
    kind: Any, target_entropy: Any = None, value_corr: Any = None, local_share: Any = None
) -> str:
    """The input as the report names it: the generator or file, with the parameters it
    takes: ``"gaussian"``, ``"peaked (entropy 1 nats, rho 0.5)"``,
    ``"positional (local share 0.8, entropy 1 nats, rho 0)"``,
    ``"duplicate (entropy 0.5 nats)"``, ``"file:heads.npz"``."""
    params = []
    entropy, rho, share = _number(target_entropy), _number(value_corr), _number(local_share)
    if math.isfinite(share) and kind in LOCAL_SHARE_INPUTS:
        params.append(f"local share {share:g}")
    if math.isfinite(entropy) and kind in ENTROPY_INPUTS:
        params.append(f"entropy {entropy:g} nats")
    if math.isfinite(rho) and kind in VALUE_CORR_INPUTS:
        params.append(f"rho {rho:g}")
    return f"{kind} ({', '.join(params)})" if params else str(kind)
