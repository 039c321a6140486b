"""Option values that depend on the machine: sizes such as ``16G`` or ``80%`` of RAM.

Every other option type (integers, numbers, booleans, choices, ``n_buckets``, TOML files)
is parsed by :mod:`lshbench.core.options`, shared with every command.
"""

from __future__ import annotations

import re
from typing import Any

from lshbench.core.config import fail
from lshbench.measurement.machine import physical_memory

__all__ = ["parse_bytes"]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def parse_bytes(value: Any, field_name: str = "mem_budget") -> int:
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
            fail(field_name, value, "a share of RAM must be in (0%, 100%]")
        return int(physical_memory() * share / 100)
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        fail(field_name, value, "must be bytes > 0 like 16G, 512M, 2.5GiB or a share like 80%")
    unit = (match.group(2) or "b")[0].lower()
    scale = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit]
    return int(float(match.group(1)) * scale)
