"""``lshbench report``'s engine: the results store read into tidy points (``analysis``, with
``columns`` for what older tables lack and ``machines`` for provenance: one run per directory
and machine, the newest code's rows), fits and crossovers (``scaling``), Pareto front and
error budgets on ``attn_tv`` (``tradeoffs``), LSH against its random and local baselines
(``baselines``), metadata (``metadata``), figures (``plotting``, ``figures_cost``,
``figures_accuracy``, ``figures_task``) and the document (``sections``,
``document.render_report``). Reads the results store only; never imports the sweep,
backends or numba, nor click (the command is :mod:`lshbench.cli.report_command`).
"""
