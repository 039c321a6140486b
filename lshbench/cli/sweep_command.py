"""``lshbench sweep`` (placeholder: the command moves here from lshbench.sweep.spec)."""

from lshbench.sweep.spec import sweep

__all__ = ["sweep"]
