"""What one sweep cell measures: inputs, metrics, cost model, timing and memory phases,
machine facts, and the worker process that runs a cell.

Never imports the sweep, the report or the CLI (docs/design.md section 1).
"""
