"""``lshbench sweep``'s engine: the grid's spec (axes, presets, parsing), the plan, the run
and the executors (local; Dask only inside :mod:`lshbench.sweep.dask_executor`).

Never imports the report or the CLI (DESIGN.md section 1).
"""

from lshbench.sweep.spec import run_sweep

__all__ = ["run_sweep"]
