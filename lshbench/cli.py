"""The ``lshbench`` command line (Click).

Every command turns :class:`lshbench.ConfigError` into one line on stderr and exit status 2.
Subcommands live next to the code they drive and are attached here.
"""

from __future__ import annotations

import sys

import click

import lshbench
from lshbench.config import ConfigError

__all__ = ["main"]


class _Group(click.Group):
    """A group that reports ConfigError as one line, exit status 2, no traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(lshbench.__version__, prog_name="lshbench")
def main() -> None:
    """Benchmark and scaling study of Reformer LSH self-attention."""


@main.command()
def backends() -> None:
    """List every backend and whether it is available here (and why not)."""
    for info in lshbench.list_backends().values():
        state = "available" if info.available else f"unavailable: {info.reason}"
        click.echo(f"{info.name:<12} {state:<12}  {info.description}")
