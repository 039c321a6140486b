"""``lshbench explain`` (placeholder: the command moves here from lshbench.explain)."""

from lshbench.explain import explain

__all__ = ["explain"]
