"""Small helpers shared by test modules."""

from __future__ import annotations

import pytest

import lshbench

#: the small sweep grid the sweep and Dask executor tests share (a few seconds per backend)
SMALL_GRID = {
    "seqlen": [64, 128],
    "chunk_len": [32],
    "n_hashes": [1, 2],
    "threads": 1,
    "input": "gaussian",
}


def backend_params(*names: str) -> list:
    """pytest params for backends, each skipped with the reason when not available here."""
    infos = lshbench.list_backends()
    params = []
    for name in names:
        info = infos.get(name)
        why = f"backend {name!r} not available here" + (f": {info.reason}" if info else "")
        params.append(
            pytest.param(
                name, marks=pytest.mark.skipif(info is None or not info.available, reason=why)
            )
        )
    return params
