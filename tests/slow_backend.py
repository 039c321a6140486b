"""A deliberately slowed backend for the benchmark gate's end-to-end test.

``tests/test_bench_compare.py`` registers it under the name ``numpy`` inside one benchmark
run only (``LSHBENCH_BENCH_REGISTER="numpy=slow_backend:SlowNumpyBackend"``, with this
folder on ``PYTHONPATH``), so the run's ``numpy`` benchmarks measure it instead.
"""

from __future__ import annotations

import numpy as np

from lshbench.backends.numpy_lsh import NumpyBackend
from lshbench.core.config import LSHConfig


class SlowNumpyBackend(NumpyBackend):
    """The numpy backend doing its work twice: same output and peak memory, ~2x the time."""

    def _attend(
        self, qk: np.ndarray, v: np.ndarray, config: LSHConfig, rotations: np.ndarray | None
    ) -> np.ndarray:
        super()._attend(qk, v, config, rotations)  # the extra work; result dropped at once
        return super()._attend(qk, v, config, rotations)  # (B, L, dv)
