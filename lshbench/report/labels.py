"""Text forms of table values: ``n_buckets`` labels, plain numbers.

Formatting ``n_buckets`` as text is :func:`lshbench.results.cells.n_buckets_spec` (the
sweep's ``n_buckets_spec`` column); this module reads the many spellings a value stored by
any version of the sweep can take (:func:`read_stored_n_buckets`) and hands the result to it.
Options typed by a user are parsed by :mod:`lshbench.core.options`, not here.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from lshbench.results.cells import n_buckets_spec

__all__ = [
    "METHOD_NAMES",
    "METRIC_NAMES",
    "bucket_label",
    "bucket_total",
    "metric_axis",
    "plain",
    "read_stored_n_buckets",
]

_MISSING = ("", "nan", "none", "<na>")

#: What each accuracy column measures, in a few words (docs/design.md section 6; docs/metrics.md).
METRIC_NAMES = {
    "attn_tv": "attention distance",
    "mass_recall": "exact mass on keys seen",
    "top1_recall": "exact top key seen",
    "attn_entropy": "exact row entropy, nats",
    "out_err_v": "output error on the scale of v",
    "task_acc": "copy retrieved, duplicate input",
    "rel_err": "relative output error",
}
#: The methods of docs/design.md section 2b as legends name them.
METHOD_NAMES = {
    "lsh": "LSH (hashed buckets)",
    "random": "random keys, same budget",
    "local": "local window, same budget",
}


def metric_axis(metric: str) -> str:
    """Axis text for a metric column: ``"attn_tv (attention distance)"``."""
    words = METRIC_NAMES.get(metric)
    return f"{metric} ({words})" if words else metric


def read_stored_n_buckets(text: str) -> int | tuple[int, ...] | None:
    """A stored ``n_buckets`` value, as any table writer spelled it: ``"64"`` -> 64;
    ``"16x32"``, a Python or JSON sequence ``"(16, 32)"``, ``"[16, 32]"``, ``"16,32"`` or
    ``"[16 32]"`` -> (16, 32); None when the text is not integers. Only for values read
    back from tables (one value each, so a comma here cannot mean a list).

    Signs are kept (``"-4"`` -> -4), so a bad stored value is not silently changed.
    """
    body = str(text).strip().strip("()[]").strip()
    parts = re.split(r"\s*[,xX]\s*|\s+", body)
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        return None
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def bucket_label(value: Any) -> str:
    """``n_buckets`` as text: ``"64"``, ``"16x32"`` for a factorized value, ``""`` if missing.

    Accepts an int, a float from CSV, a list/tuple/array, or text such as ``"(16, 32)"``,
    ``"[16, 32]"`` or ``"16x32"``; text that is not integers (``"auto"``) is kept as it is.
    """
    if value is None:
        return ""
    if isinstance(value, list | tuple | np.ndarray):
        return n_buckets_spec(tuple(int(v) for v in value)) or ""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return n_buckets_spec(int(value)) or ""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else plain(float(value))
    text = str(value).strip()
    if text.lower() in _MISSING:
        return ""
    try:
        number = float(text)
    except ValueError:
        parsed = read_stored_n_buckets(text)
        return text if parsed is None else n_buckets_spec(parsed) or ""
    return str(int(number)) if number == int(number) else text


def bucket_total(label: str) -> float:
    """Total bucket count of a label (``"16x32"`` -> 512.0); NaN when it is not factors."""
    parts = label.split("x")
    if not label or not all(p.isdigit() for p in parts):
        return math.nan
    return float(math.prod(int(p) for p in parts))


def plain(value: Any) -> str:
    """A value as short text: an integral float without its ``.0`` (``64.0`` -> ``"64"``)."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)
