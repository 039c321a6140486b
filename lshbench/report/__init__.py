"""``lshbench report``'s engine: analysis (fits, crossovers, Pareto, budgets), figures and
the document. Reads the results store only; never imports the sweep, backends or numba.
"""
