"""``lshbench report`` (placeholder: the command moves here from lshbench.report.document)."""

from lshbench.report.document import report

__all__ = ["report"]
