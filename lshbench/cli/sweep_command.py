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
from collections.abc import Callable, Iterable
from typing import Any

import click

from lshbench.backends import list_backends
from lshbench.core.config import METHODS, WEIGHTINGS, fail
from lshbench.core.options import parse_int
from lshbench.measurement.inputs import GENERATORS
from lshbench.results.cells import ORACLE
from lshbench.sweep.executors import EXECUTORS
from lshbench.sweep.spec import (
    AXES,
    DEFAULT_BACKENDS,
    DEVICES,
    DTYPES,
    EXACT_PEERS,
    PASSES,
    PRESETS,
    SETTINGS,
)

__all__ = ["preset_lines", "sweep"]

#: every registered backend (``lshbench backends`` says which are available here)
BACKEND_NAMES = tuple(list_backends())
#: the preset whose values are the options' defaults
DEFAULT_PRESET = "quick"


class _OneOf(click.Choice):
    """A choice of one value; a refusal is the project's one line ``field=value: rule``."""

    def __init__(self, field_name: str, choices: Iterable[str]) -> None:
        super().__init__(tuple(choices))
        self.field_name = field_name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value in self.choices:
            return value
        fail(self.field_name, value, f"must be one of {', '.join(map(str, self.choices))}")


class _Option(click.Option):
    """An option whose ``show_default`` text is shown as written (Click puts a text in
    parentheses)."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):
            extra["default"] = self.show_default
        return extra


class _Parsed(click.ParamType):
    """One value checked by the option's parser (:mod:`lshbench.core.options`)."""

    def __init__(self, name: str, parse: Callable[[Any], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return self.parse(value)


def _value_text(key: str, value: Any) -> str:
    """A preset's value of ``key`` as an option would take it."""
    if key == "backend":
        names = ", ".join(DEFAULT_BACKENDS) if value is None else ",".join(value)
        listed = f"every available of {names}" if value is None else names
        return f"{listed}, and {', '.join(EXACT_PEERS)} where installed"
    if value is None:
        return {
            "tokens": "none (--batch)",
            "batch": "none (--tokens)",
            "target_entropy": "the input's own",
            "value_corr": "the input's own",
            "local_share": "the input's own",
        }.get(key, "none")
    if isinstance(value, list | tuple):
        return ",".join(_value_text(key, v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _default(key: str) -> str:
    """The shown default of the option of ``key``: the default preset's value, and a
    pointer to ``--list-presets`` when the presets differ."""
    texts = {name: _value_text(key, values.get(key)) for name, values in PRESETS.items()}
    if len(set(texts.values())) == 1:
        return texts[DEFAULT_PRESET]
    return f"{texts[DEFAULT_PRESET]} (preset {DEFAULT_PRESET})"


def preset_lines() -> list[str]:
    """Each preset's axes and settings, one line each (``lshbench sweep --list-presets``)."""
    lines = []
    for name, values in PRESETS.items():
        default = " (the default)" if name == DEFAULT_PRESET else ""
        lines.append(f"{name}{default}:")
        for key in (*AXES, *SETTINGS):
            if key in values and (values[key] is not None or key == "backend"):
                lines.append(f"  {key:<15} {_value_text(key, values[key])}")
    known = list_backends()
    for peer in EXACT_PEERS:
        here = "installed here" if known[peer].available else known[peer].reason
        lines.append(f"{peer} ({here}) joins every preset unless --backend is given")
    return lines


def _list_presets(ctx: click.Context, param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for line in preset_lines():
        click.echo(line)
    ctx.exit(0)


def _opt(name: str, metavar: str, help_text: str, **kwargs: Any) -> Any:
    """An axis or setting option: not given = the preset's value (shown as the default)."""
    key = name.lstrip("-").replace("-", "_")
    return click.option(
        name,
        cls=_Option,
        default=None,
        metavar=metavar,
        show_default=_default(key),
        help=help_text,
        **kwargs,
    )


@click.command()
@_opt("--seqlen", "INT,...", "Sequence lengths L, comma list (e.g. 1024,2048).")
@_opt("--chunk-len", "INT,...", "Chunk lengths, comma list.")
@_opt("--n-hashes", "INT,...", "Hash rounds, comma list.")
@_opt(
    "--n-buckets",
    "NB,...",
    "Buckets, comma list of: rule (2L/chunk_len), auto (HF), an even int, or factors 16x32.",
)
@_opt("--chunks-before", "INT,...", "Chunks looked back at, comma list.")
@_opt("--chunks-after", "INT,...", "Chunks looked ahead at, comma list.")
@_opt(
    "--method",
    "NAME,...",
    f"How buckets are chosen, comma list of: {', '.join(METHODS)}; {ORACLE}: the k best keys "
    "of each query at each LSH configuration's key count (metrics only).",
)
@_opt(
    "--weighting",
    "NAME,...",
    f"How a key in several windows counts, comma list of: {', '.join(WEIGHTINGS)}.",
)
@_opt("--d", "INT,...", "Head dimension (d = dv), comma list.")
@_opt("--batch", "INT,...", "Batch sizes, comma list.")
@_opt(
    "--tokens",
    "INT",
    "Fixed total tokens: batch = tokens // seqlen (replaces --batch).",
    type=_Parsed("INT", lambda v: parse_int("tokens", v, 1)),
)
@_opt(
    "--backend",
    "NAME,...",
    f"Backends, comma list of: {', '.join(BACKEND_NAMES)} (`lshbench backends` says which "
    f"are available here). Not given: the preset's, plus {', '.join(EXACT_PEERS)} where "
    "torch is installed (the fastest exact backend is the baseline of every speed-up).",
)
@_opt(
    "--input",
    "NAME,...",
    f"Inputs, comma list of: {', '.join(GENERATORS)}, or file:PATH (an .npz with qk and v; "
    "see docs/inputs.md).",
)
@click.option(
    "--config-from-input",
    is_flag=True,
    help="Take n_hashes, n_buckets, chunk_len, chunks before/after and causal from the one "
    "file input's stored configuration (options given still win).",
)
@_opt(
    "--target-entropy",
    "NATS,...",
    "Mean exact row entropy, nats (> 0; peaked, positional, duplicate), comma list.",
)
@_opt(
    "--value-corr",
    "RHO,...",
    "Correlation of values with the token's cluster, in [0, 1] (peaked, positional), list.",
)
@_opt(
    "--local-share",
    "SHARE,...",
    "Share of exact attention mass on each query's neighbours (within 32 tokens), in "
    "[0, 1] (positional), comma list.",
)
@click.option(
    "--causal/--no-causal",
    cls=_Option,
    default=None,
    show_default=_default("causal"),
    help="Causal masking (the full preset measures both).",
)
@_opt(
    "--dtype",
    "NAME,...",
    f"Float types, comma list of: {', '.join(DTYPES)} (half precision on --device cuda only).",
)
@click.option(
    "--pass",
    "pass_",
    cls=_Option,
    default=None,
    metavar="NAME,...",
    show_default=_default("pass"),
    help=f"Passes, comma list of: {', '.join(PASSES)} (train: forward + backward of "
    "sum(out * g), for backends with a backward pass).",
)
@_opt(
    "--device",
    "NAME,...",
    f"Devices, comma list of: {', '.join(DEVICES)} (cuda: the torch backends on a GPU).",
)
@_opt("--threads", "INT|all,...", "Threads per worker, comma list; all = every usable CPU.")
@_opt("--seed", "INT,...", "Seeds, comma list.")
@click.option(
    "--out",
    cls=_Option,
    default=None,
    type=click.Path(),
    show_default="results/<preset>",
    help="Output directory.",
)
@click.option(
    "--preset",
    cls=_Option,
    default=None,
    type=_OneOf("preset", PRESETS),
    show_default=DEFAULT_PRESET,
    help="Starting grid (--list-presets prints each one's values).",
)
@click.option(
    "--list-presets",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_presets,
    help="Print each preset's axes and settings, and exit.",
)
@click.option(
    "--config", "config", default=None, type=click.Path(), help="TOML file with the same keys."
)
@_opt(
    "--repeats",
    "INT",
    "Timed samples per row (>= 5).",
    type=_Parsed("INT", lambda v: parse_int("repeats", v, 5)),
)
@_opt(
    "--rotation-seeds",
    "INT",
    "Independent rotation draws per hashing configuration, inputs fixed.",
)
@_opt("--timeout", "SECONDS", "Seconds without progress before a cell's worker is killed.")
@_opt("--mem-budget", "SIZE", "Skip rows predicted above this (16G, 512M, 80% of RAM).")
@click.option("--force", is_flag=True, help="Redo rows already in --out.")
@click.option("--retry-failed", is_flag=True, help="Redo rows of --out that are not ok.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the rows it would measure (per backend), those already in --out, each "
    "cell's predicted peak memory and the estimated time; measure and write nothing.",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No progress (a bar on a terminal, else a plain line on stderr every 10 s).",
)
@click.option(
    "--executor",
    "executor_name",
    cls=_Option,
    default=None,
    type=_OneOf("executor", EXECUTORS),
    show_default="local",
    help="local: one cell at a time, timing-grade; dask: cells on a Dask cluster.",
)
@click.option(
    "--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler (--executor dask)."
)
@click.option(
    "--workers",
    cls=_Option,
    default=None,
    metavar="INT",
    show_default="usable CPUs // the largest --threads",
    help="Start a Dask LocalCluster of this many workers (--executor dask).",
)
@click.option(
    "--mem-limit",
    default=None,
    metavar="SIZE",
    help="Memory limit of each cell process (4G, 25%).",
)
def sweep(
    *,
    force: bool,
    retry_failed: bool,
    dry_run: bool,
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
    Options not given take the preset's values (--list-presets prints them); --dry-run
    shows what a run would do, and runs nothing.
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
    if dry_run:
        _dry_run(spec, executor_name, scheduler, workers, mem_limit, force, retry_failed)
        return
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


def _dry_run(
    spec: Any,
    executor_name: str | None,
    scheduler: str | None,
    workers: str | None,
    mem_limit: str | None,
    force: bool,
    retry_failed: bool,
) -> None:
    """What the sweep would do (:mod:`lshbench.sweep.preview`), on stdout; nothing is run,
    and nothing written. A Dask cluster is not started: its thread budgets are checked when
    the sweep runs."""
    from lshbench.sweep.preview import preview, preview_lines

    name = executor_name or "local"
    if name == "local":
        from lshbench.sweep.executors import open_executor

        with open_executor(spec, name, scheduler, workers, mem_limit) as runner:
            p = preview(spec, runner, force=force, retry_failed=retry_failed)
    else:
        p = preview(spec, object(), force=force, retry_failed=retry_failed)
    for line in preview_lines(p, name):
        click.echo(line)


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
    """Row counts by status, how many were measured now and how many reused, the first
    failures, and where the results are."""
    counts = frame["status"].value_counts().to_dict()
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    measured = int(frame.attrs.get("measured", 0))
    reused = int(frame.attrs.get("reused", 0))
    rest = len(frame) - measured - reused
    decided = f", {rest} recorded without running" if rest else ""
    click.echo(
        f"{len(frame)} rows ({summary}): {measured} measured now, {reused} reused from "
        f"{out}{decided}"
    )
    for _, row in frame[frame["status"] != "ok"].head(10).iterrows():
        click.echo(f"  {row['status']}: {row['backend']} L={row['seqlen']}: {row['message']}")
    click.echo(
        f"Results: {out / 'results.parquet'}, {out / 'results.csv'} (store results.sqlite, "
        f"metadata.json)"
    )
    click.echo(f"Load them with lshbench.load_results({str(out)!r}); render the report with:")
    click.echo(f"  lshbench report {shlex.quote(str(out))}")  # runs as printed, in a shell
