"""``lshbench bench-compare``: a thin layer over :func:`lshbench.bench_compare.bench_compare`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lshbench.bench_compare import ALPHA, THRESHOLD
from lshbench.bench_compare import bench_compare as compare_benchmarks

__all__ = ["bench_compare"]


@click.command("bench-compare")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=THRESHOLD,
    show_default=True,
    help="Relative slowdown of the calibrated median that fails (0.25 = 25% slower).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=ALPHA,
    show_default=True,
    help="Significance level of the one-sided Mann-Whitney U test on the raw samples.",
)
def bench_compare(baseline: Path, current: Path, threshold: float, alpha: float) -> None:
    """Fail (exit 1) when CURRENT's benchmarks regressed against BASELINE's.

    Both are pytest-benchmark JSON files (pytest bench/ --benchmark-json=FILE); BASELINE may
    be a folder of them, one per CPU, and the one recorded on CURRENT's CPU is used (with a
    warning, the first by name when none was). Times are
    divided by each file's own calibration benchmark (the one that ran just before them); a
    benchmark fails when its median is slower by more than --threshold AND a one-sided
    Mann-Whitney U test on the samples says so (p < --alpha), when its FLOPs or config
    changed, its allocated bytes grew by more than 10% + 64 KiB, or its error against dense
    moved by more than 1e-6 + 1e-6 x baseline; or when it is missing from CURRENT. A
    missing BASELINE file (or a folder without one) passes. Exit 0 pass, 1 regression, 2 bad input.
    """
    verdict = compare_benchmarks(baseline, current, threshold, alpha)
    click.echo(verdict.text)
    if verdict.status:
        sys.exit(verdict.status)  # SystemExit: passes through the group (a click Exit is returned)
