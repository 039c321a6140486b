"""The algorithm: configuration, input checks, hashing, sorting and attention math.

The bottom layer of lshbench (docs/design.md section 1): NumPy only, never pandas, matplotlib,
click, numba, torch or dask, and nothing of lshbench above it.
"""
