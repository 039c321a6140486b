"""The sweep's ``metadata.json`` of every run, flattened into one ``key -> value`` table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lshbench.report.analysis import Run
from lshbench.util import shorten

__all__ = ["metadata_table", "run_entries"]

#: Metadata keys shown first, in this order; the rest follow sorted.
_META_FIRST = (
    "run_id", "start_time", "end_time", "command_line", "git", "host", "platform", "cpu",
    "versions", "workers", "executor",
)  # fmt: skip


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key in value:
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = " ".join(str(v) for v in value)
    else:
        out[prefix] = "" if value is None else str(value)


def _meta_key(key: str) -> tuple[int, str]:
    top = re.split(r"[.\[]", key, maxsplit=1)[0]
    return (_META_FIRST.index(top) if top in _META_FIRST else len(_META_FIRST), key)


def metadata_table(runs: Sequence[Run], width: int = 200) -> pd.DataFrame:
    """Metadata flattened to ``key -> value`` with one column per run.

    Nested keys are joined with dots and list items indexed (``workers.1.blas[0].version``);
    values are cut at ``width`` characters. The ``runs`` history the sweep keeps (one entry
    per invocation, the latest repeated at the top level) is summarized as a count.
    """
    flat = []
    for run in runs:
        out: dict[str, str] = {}
        meta = dict(run.metadata)
        history = meta.pop("runs", None)
        _flatten(meta, "", out)
        if isinstance(history, list):
            out["sweep invocations"] = str(len(history))
        flat.append({k: shorten(v, width) for k, v in out.items()})
    keys = sorted(set().union(*flat), key=_meta_key) if flat else []
    table = pd.DataFrame({"key": keys})
    labels = [run.label for run in runs]
    for label, values in zip(labels, flat, strict=True):
        table[label] = [values.get(k, "") for k in keys]
    return table


def run_entries(metadata: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """run_id -> run entry of a directory's metadata: its ``runs`` history and the top
    level (the latest entry, which fills in what its history entry lacks); {} for metadata
    without run ids (older tables)."""
    history = metadata.get("runs")
    out: dict[str, dict[str, Any]] = {}
    for entry in [*(history if isinstance(history, list) else []), metadata]:
        if isinstance(entry, Mapping) and entry.get("run_id"):
            merged = out.setdefault(str(entry["run_id"]), {})
            for key, value in entry.items():
                merged.setdefault(key, value)
    return dict(out)
