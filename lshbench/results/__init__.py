"""The results store: row schema, cell ids, the crash-safe store and :func:`load_results`.

The sweep writes it, the report reads it; it never imports backends, measurement, sweep,
report or the CLI (DESIGN.md sections 1 and 7).
"""

from lshbench.results.store import load_results

__all__ = ["load_results"]
