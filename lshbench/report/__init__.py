"""``lshbench report``'s engine: the results store read into tidy points (``analysis``), fits
and crossovers (``scaling``), Pareto front and error budgets (``tradeoffs``), metadata
(``metadata``), figures (``plotting``, ``figures_cost``, ``figures_accuracy``) and the document
(``document.render_report``). Reads the results store only; never imports the sweep, backends
or numba, nor click (the command is :mod:`lshbench.cli.report_command`).
"""
