"""The results store: row schema, cell ids, the SQLite store and :func:`load_results`.

``schema`` (columns, validation, :func:`make_row`), ``cells`` (task and cell ids),
``store`` (:class:`ResultStore`, SQLite), ``runs`` (per-run entries, metadata.json),
``load`` (:func:`load_results`) and ``files`` (legacy log and exports). The sweep writes it,
the report reads it; it never imports backends, measurement, sweep, report or the CLI
(docs/design.md sections 1 and 7).
"""

from lshbench.results.load import load_results

__all__ = ["load_results"]
