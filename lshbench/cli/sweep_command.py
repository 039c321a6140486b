"""``lshbench sweep``: parse the options, run :mod:`lshbench.sweep`, print the summary.

A thin layer: every check and every step is a plain function of :mod:`lshbench.sweep`
(:func:`~lshbench.sweep.spec.build_spec`, :func:`~lshbench.sweep.run.prepare`,
:func:`~lshbench.sweep.executors.open_executor`, :func:`~lshbench.sweep.run.execute`).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from typing import Any

import click

from lshbench.core.config import METHODS, WEIGHTINGS
from lshbench.measurement.inputs import GENERATORS
from lshbench.sweep.spec import PRESETS

__all__ = ["sweep"]


def _opt(name: str, help_text: str, **kwargs: Any) -> Any:
    return click.option(name, default=None, help=help_text, **kwargs)


@click.command()
@_opt("--seqlen", "Sequence lengths L, comma list (e.g. 1024,2048).")
@_opt("--chunk-len", "Chunk lengths, comma list.")
@_opt("--n-hashes", "Hash rounds, comma list.")
@_opt(
    "--n-buckets",
    "Buckets, comma list of: rule (2L/chunk_len), auto (HF), an even int, or factors 16x32.",
)
@_opt("--chunks-before", "Chunks looked back at, comma list.")
@_opt("--chunks-after", "Chunks looked ahead at, comma list.")
@_opt("--method", f"How buckets are chosen: {', '.join(METHODS)} (comma list; default lsh).")
@_opt(
    "--weighting",
    f"How a key in several windows counts: {', '.join(WEIGHTINGS)} (default multiplicity).",
)
@_opt("--d", "Head dimension (d = dv), comma list.")
@_opt("--batch", "Batch sizes, comma list.")
@_opt("--tokens", "Fixed total tokens: batch = tokens // seqlen (replaces --batch).")
@_opt("--backend", "Backends, comma list (default: every available of numpy, numba, dense).")
@_opt(
    "--input",
    f"Inputs, comma list: {', '.join(GENERATORS)}, or file:PATH (an .npz with qk and v; "
    "see docs/inputs.md).",
)
@click.option(
    "--config-from-input",
    is_flag=True,
    help="Take n_hashes, n_buckets, chunk_len, chunks before/after and causal from the one "
    "file input's stored configuration (options given still win).",
)
@_opt("--target-entropy", "Mean exact row entropy, nats (> 0; peaked, duplicate), comma list.")
@_opt("--value-corr", "Correlation of values with the token's cluster, in [0, 1] (peaked).")
@click.option("--causal/--no-causal", default=None, help="Causal masking (default: no).")
@_opt("--dtype", "float32, float64; bfloat16, float16 on --device cuda (comma list).")
@click.option(
    "--pass",
    "pass_",
    default=None,
    help="forward, train (forward + backward of sum(out * g); backends with a backward pass), "
    "comma list (default forward).",
)
@_opt("--device", "cpu, cuda (the torch backends on a GPU), comma list (default cpu).")
@_opt("--threads", "Threads per worker, comma list; 'all' = every usable CPU (default 1).")
@_opt("--seed", "Seeds, comma list.")
@click.option("--out", default=None, help="Output directory (default results/<preset>).")
@click.option("--preset", default=None, help=f"Starting grid: {', '.join(PRESETS)} (quick).")
@click.option("--config", "config", default=None, help="TOML file with the same keys.")
@_opt("--repeats", "Timed samples per row (>= 5).")
@_opt("--timeout", "Seconds without progress before a cell's worker is killed.")
@_opt("--mem-budget", "Skip rows predicted above this (16G, 512M, 80%).")
@click.option("--force", is_flag=True, help="Redo rows already in --out.")
@click.option("--retry-failed", is_flag=True, help="Redo rows of --out that are not ok.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--executor",
    "executor_name",
    default=None,
    help="local (default: one cell at a time, timing-grade) or dask.",
)
@click.option("--scheduler", default=None, help="Dask scheduler address (--executor dask).")
@click.option("--workers", default=None, help="Start a Dask LocalCluster of N workers.")
@click.option("--mem-limit", default=None, help="Memory limit of each cell process (4G, 25%).")
def sweep(
    force: bool,
    retry_failed: bool,
    quiet: bool,
    config: str | None,
    preset: str | None,
    executor_name: str | None,
    scheduler: str | None,
    workers: str | None,
    mem_limit: str | None,
    config_from_input: bool,
    **options: Any,
) -> None:
    """Measure time, memory and error against dense over a grid; write tables to --out.

    Every cell runs in a fresh worker process; finished rows are stored at once, so an
    interrupted sweep resumes where it stopped when run again with the same --out (on the
    same machine with the same code: rows of other machines are kept, never reused).
    """
    from lshbench.sweep.executors import open_executor
    from lshbench.sweep.plan import not_planned
    from lshbench.sweep.run import ResultsWriteError, execute, prepare
    from lshbench.sweep.spec import build_spec

    options["config_from_input"] = True if config_from_input else None
    if options.get("causal") is not None:
        options["causal"] = [options["causal"]]
    options["pass"] = options.pop("pass_", None)
    spec = build_spec(preset, config, **options)
    runner = click.get_current_context().with_resource(
        open_executor(spec, executor_name, scheduler, workers, mem_limit)
    )
    n_tasks = len(prepare(spec, runner)[0])
    click.echo(
        f"lshbench sweep: preset {spec.preset}, {n_tasks} rows, backends "
        f"{', '.join(spec.backend)}, threads {','.join(map(str, spec.threads))} -> {spec.out}",
        err=True,
    )
    for note in not_planned(spec):
        click.echo(f"note: {note}", err=True)
    if "cuda" in spec.device:
        from lshbench.measurement.devices import cuda_unavailable_reason

        no_cuda = cuda_unavailable_reason()
        if no_cuda is not None:
            click.echo(f"note: --device cuda rows are skipped: {no_cuda}", err=True)
    if hasattr(runner, "describe"):
        click.echo(runner.describe(), err=True)
    try:
        frame = execute(spec, executor=runner, force=force, retry_failed=retry_failed, quiet=quiet)
    except OSError as exc:  # ResultsWriteError, the store's StoreError: one line, exit 1
        error = exc if isinstance(exc, ResultsWriteError) else ResultsWriteError(spec.out, exc)
        raise click.ClickException(str(error)) from exc
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (SweepInterrupted)
        _stopped(getattr(exc, "signum", signal.SIGINT), spec.out)
    _print_summary(frame, spec.out)


def _stopped(signum: int, out: Any) -> None:
    """One line on how the sweep stopped, then exit 128 + the signal's number (as a shell
    reports a process the signal ended). The run is closed and its exports written by then."""
    name = signal.Signals(signum).name
    with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
        click.echo(
            f"lshbench sweep: stopped by {name}; the rows finished so far are stored and "
            f"exported in {out}; run the same command again to resume",
            err=True,
        )
    sys.exit(128 + signum)


def _print_summary(frame: Any, out: Any) -> None:
    """Row counts by status, the first failures, and where the results are."""
    counts = frame["status"].value_counts().to_dict()
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    click.echo(f"{len(frame)} rows ({summary})")
    for _, row in frame[frame["status"] != "ok"].head(10).iterrows():
        click.echo(f"  {row['status']}: {row['backend']} L={row['seqlen']}: {row['message']}")
    click.echo(
        f"Results: {out / 'results.parquet'}, {out / 'results.csv'} (store results.sqlite, "
        f"metadata.json)"
    )
    click.echo(f"Load them with lshbench.load_results({str(out)!r}); render the report with:")
    click.echo(f"  lshbench report {shlex.quote(str(out))}")  # runs as printed, in a shell
