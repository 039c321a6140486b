"""``lshbench sweep``'s engine, by responsibility:

- :mod:`~lshbench.sweep.parsing`: generic value parsers (lists, ints, bytes, TOML);
- :mod:`~lshbench.sweep.spec`: the axes, settings and presets, :func:`build_spec`;
- :mod:`~lshbench.sweep.plan`: the grid's tasks, predicted memory and time;
- :mod:`~lshbench.sweep.run`: :func:`run_sweep` and :func:`execute` into a results store;
- :mod:`~lshbench.sweep.executors`: :func:`open_executor`, local or Dask;
- :mod:`~lshbench.sweep.local_executor`, :mod:`~lshbench.sweep.dask_executor` (dask is
  imported only there, and only when a Dask executor starts);
- :mod:`~lshbench.sweep.oom_kills`: the kernel's OOM-kill counters, to tell an OOM kill
  from another SIGKILL of a worker.

Never imports the report or the CLI (docs/design.md section 1).
"""

from lshbench.sweep.run import run_sweep

__all__ = ["run_sweep"]
