"""One parser per option type, shared by every command and by config files.

Every parser takes the field name for its error message and a value as it comes from the
command line (a string), a TOML file (a scalar or a list) or Python (anything), and either
returns the checked value or raises :class:`lshbench.ConfigError` through
:func:`lshbench.core.config.fail`: one line ``field=value: rule``.

The rules are the same everywhere: **a comma separates the values of a list option**
(``--seqlen 1024,2048`` is two lengths; a TOML list ``[1024, 2048]`` the same), and a
factorized ``n_buckets`` is written with ``x`` (``16x32``; in TOML also a nested list
``[[16, 32]]``). An option that takes one value (``explain --n-buckets``) refuses a comma
list with a line that shows the ``x`` form.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

from lshbench.core.config import fail

__all__ = [
    "INT64_MAX",
    "N_BUCKETS_FORMS",
    "format_n_buckets",
    "parse_bools",
    "parse_choices",
    "parse_floats",
    "parse_int",
    "parse_ints",
    "parse_items",
    "parse_n_buckets",
    "parse_n_buckets_value",
    "parse_positive_float",
    "parse_positive_int",
    "read_toml",
]

#: the largest integer the results tables' int64 columns (pandas Int64) hold
INT64_MAX = 2**63 - 1
#: how one ``n_buckets`` value is written (CLI help and error messages)
N_BUCKETS_FORMS = "an even integer >= 2, or even factors like 16x32"


def parse_items(field_name: str, value: Any) -> list[Any]:
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


def parse_int(field_name: str, item: Any, minimum: int, maximum: int = INT64_MAX) -> int:
    """One integer in ``[minimum, maximum]`` (a string of digits is accepted; a bool is not).

    The default ``maximum`` is what the results tables' int64 columns can hold."""
    rule = f"must be an integer >= {minimum}"
    if isinstance(item, bool):
        fail(field_name, item, rule)
    if isinstance(item, str):
        if not re.fullmatch(r"[+-]?\d+", item.strip()):
            fail(field_name, item, rule)
        item = int(item)
    if not isinstance(item, int) or item < minimum:
        fail(field_name, item, rule)
    if item > maximum:
        top = "2**63-1] (results store it as int64)" if maximum == INT64_MAX else f"{maximum}]"
        fail(field_name, item, f"must be an integer in [{minimum}, {top}")
    return int(item)


def parse_ints(
    field_name: str, value: Any, minimum: int, maximum: int = INT64_MAX
) -> tuple[int, ...]:
    """A list of integers (see :func:`parse_int`), duplicates dropped, order kept."""
    items = parse_items(field_name, value)
    return tuple(dict.fromkeys(parse_int(field_name, v, minimum, maximum) for v in items))


def parse_n_buckets_value(item: Any, field_name: str = "n_buckets") -> int | tuple[int, ...]:
    """One ``n_buckets`` value: an even int >= 2 (``64``, ``"64"``) or even factors whose
    product fits in int64 (text ``"16x32"``, or a list ``[16, 32]`` from TOML or Python)
    -> 64 or (16, 32).

    A comma is never a factor separator: ``"16,32"`` (two values) is refused with a line
    that shows ``16x32``.
    """
    return _n_buckets_value(field_name, item, f"must be {N_BUCKETS_FORMS}")


def parse_n_buckets(value: Any) -> tuple[str | int | tuple[int, ...], ...]:
    """The ``n_buckets`` list axis: comma-separated (or TOML list) items, each ``rule``,
    ``auto`` or one value of :func:`parse_n_buckets_value` (``64``, ``16x32``, TOML
    ``[16, 32]`` inside the list); duplicates dropped, order kept."""
    rule = f"must be 'rule', 'auto', {N_BUCKETS_FORMS}"
    out: list[str | int | tuple[int, ...]] = []
    for item in parse_items("n_buckets", value):
        if isinstance(item, str) and item.strip().lower() in ("rule", "auto"):
            out.append(item.strip().lower())
        else:
            out.append(_n_buckets_value("n_buckets", item, rule))
    return tuple(dict.fromkeys(out))


def format_n_buckets(value: int | list[int] | tuple[int, ...]) -> str:
    """One ``n_buckets`` value as :func:`parse_n_buckets_value` reads it: ``"64"``, or
    ``"16x32"`` for factors."""
    if isinstance(value, list | tuple):
        return "x".join(str(int(f)) for f in value)
    return str(int(value))


def _n_buckets_value(field_name: str, item: Any, rule: str) -> int | tuple[int, ...]:
    if isinstance(item, str) and "," in item:
        parts = [p.strip() for p in item.strip().strip("()[]").split(",")]
        factors = "x".join(parts) if all(p.isdigit() for p in parts) else "16x32"
        fail(field_name, item, f"takes one value (a comma separates list values); "
             f"write factors as {factors}")  # fmt: skip
    if isinstance(item, list | tuple):  # TOML [16, 32]
        numbers = tuple(parse_int(field_name, f, 2) for f in item)
    elif isinstance(item, str) and "x" in item.lower():
        numbers = tuple(parse_int(field_name, f, 2) for f in item.lower().split("x"))
    else:
        numbers = (parse_int(field_name, item, 2),)
    if not numbers or any(f % 2 for f in numbers):
        fail(field_name, item, rule)
    if math.prod(numbers) > INT64_MAX:
        fail(field_name, item, "the product of the factors must be <= 2**63-1 (int64)")
    return numbers[0] if len(numbers) == 1 else numbers


def parse_floats(
    field_name: str,
    value: Any,
    minimum: float,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
) -> tuple[float, ...]:
    """A list of finite numbers in ``[minimum, maximum]`` (``(minimum, ...`` with
    ``open_minimum``), duplicates dropped, order kept; a bool is not a number."""
    low = f"> {minimum:g}" if open_minimum else f">= {minimum:g}"
    rule = f"must be a number {low}" if maximum is None else (
        f"must be a number in {'(' if open_minimum else '['}{minimum:g}, {maximum:g}]"
    )  # fmt: skip
    out = []
    for item in parse_items(field_name, value):
        try:
            number = float(item.strip() if isinstance(item, str) else item)
        except (TypeError, ValueError, OverflowError):
            fail(field_name, item, rule)
        below = number <= minimum if open_minimum else number < minimum
        above = maximum is not None and number > maximum
        if isinstance(item, bool) or not math.isfinite(number) or below or above:
            fail(field_name, item, rule)
        out.append(number)
    return tuple(dict.fromkeys(out))


def parse_bools(field_name: str, value: Any) -> tuple[bool, ...]:
    """A list of booleans (``true``/``false``, ``yes``/``no``, ``1``/``0``)."""
    out = []
    for item in parse_items(field_name, value):
        if isinstance(item, bool):
            out.append(item)
        elif isinstance(item, str) and item.lower() in ("true", "false", "yes", "no", "1", "0"):
            out.append(item.lower() in ("true", "yes", "1"))
        else:
            fail(field_name, item, "must be true or false")
    return tuple(dict.fromkeys(out))


def parse_choices(field_name: str, value: Any, allowed: Iterable[str]) -> tuple[str, ...]:
    """A list of names, each one of ``allowed``."""
    allowed = tuple(allowed)
    out = []
    for item in parse_items(field_name, value):
        if not isinstance(item, str) or item not in allowed:
            fail(field_name, item, f"must be one of {', '.join(allowed)}")
        out.append(item)
    return tuple(dict.fromkeys(out))


def parse_positive_float(field_name: str, value: Any) -> float:
    """A finite number > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        fail(field_name, value, "must be a number > 0")
    return number


def parse_positive_int(field_name: str, value: Any) -> int:
    """An integer >= 1 written with digits only (``"4"``, 4)."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        fail(field_name, value, "must be an integer >= 1")
    return int(text)


def read_toml(path: str | os.PathLike[str], known: Iterable[str]) -> dict[str, Any]:
    """Keys of a TOML file (dashes become underscores), each one of ``known``.

    A file that cannot be read, is not UTF-8 or is not TOML is one ConfigError line."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    known = tuple(known)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        fail("config", str(path), f"cannot read: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail("config", str(path), f"not UTF-8 text (byte {exc.start}); TOML files are UTF-8")
    except tomllib.TOMLDecodeError as exc:
        fail("config", str(path), f"not valid TOML: {exc}")
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            fail("config", key, f"unknown key; use {', '.join(known)}")
        out[name] = value
    return out
