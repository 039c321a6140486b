"""Small helpers shared by every layer: number formats, shortening, one-line errors, clocks.

The bottom of lshbench: standard library only, imports nothing of lshbench. Each helper
lives here once, so a byte count or a shortened message reads the same everywhere.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone

__all__ = [
    "fmt_bytes",
    "fmt_length",
    "fmt_num",
    "fmt_pct",
    "fmt_seconds",
    "load_average",
    "one_line",
    "os_error_reason",
    "shorten",
    "utc_now",
]


def _missing(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def _present(x: float | None) -> float | None:
    """``x`` when it is a finite number, else None (narrows the type for the formatters)."""
    return None if _missing(x) else x


def fmt_seconds(t: float | None) -> str:
    """Seconds with three significant digits in a readable unit: ``12.3 ms``; ``-`` if missing."""
    t = _present(t)
    if t is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(t) >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t * 1e9:.3g} ns"


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units with three significant digits: ``1.5 MiB``; ``-`` if missing."""
    n = _present(n)
    if n is None:
        return "-"
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(n) >= 1024**power:
            return f"{n / 1024**power:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_num(x: float | None, digits: int) -> str:
    """Fixed-point text, ``-`` when missing."""
    return "-" if _missing(x) else f"{x:.{digits}f}"


def fmt_length(x: float | None) -> str:
    """A sequence length as an integer, ``-`` when missing."""
    return "-" if _missing(x) else f"{x:.0f}"


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals, ``-`` when missing."""
    x = _present(x)
    return "-" if x is None else f"{100 * x:.2f}%"


def shorten(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters, ending in ``...`` when cut."""
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def one_line(exc: BaseException, width: int = 300) -> str:
    """``Type: message`` of an exception on one line, at most ``width`` characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return shorten(text, width)


def os_error_reason(exc: OSError) -> str:
    """An OS error as ``strerror (ERRNO)``, e.g. ``No space left on device (ENOSPC)``."""
    import errno

    code = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror or exc}" + (f" ({code})" if code else "")


def utc_now() -> str:
    """Current UTC time, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return list(os.getloadavg())
    except (OSError, AttributeError):
        return None
