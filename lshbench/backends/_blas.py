"""BLAS at one thread while Numba kernels that call it inside ``prange`` loops run
(imported by the Numba backends only; threadpoolctl and SciPy load on first use)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

__all__ = ["BlasOneThread"]


class BlasOneThread:
    """Keep every loaded BLAS at one thread while the kernels run (they call it per block):
    ``with blas.limit(): kernel(...)``."""

    def __init__(self) -> None:
        self._controller: Any = None  # threadpoolctl.ThreadpoolController, made on first use

    def limit(self) -> AbstractContextManager:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            return nullcontext()
        if self._controller is None:
            import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls)

            self._controller = ThreadpoolController()  # sees NumPy's and SciPy's BLAS
        return self._controller.limit(limits=1, user_api="blas")
