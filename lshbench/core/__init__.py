"""The algorithm: configuration, input checks, hashing, sorting and attention math.

The bottom layer of lshbench (DESIGN.md section 1): NumPy only, never pandas, matplotlib,
click, numba, torch or dask, and nothing of lshbench above it.
"""
