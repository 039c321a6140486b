"""``lshbench bench-compare`` (placeholder: the command moves here from lshbench.bench_compare)."""

from lshbench.bench_compare import bench_compare

__all__ = ["bench_compare"]
