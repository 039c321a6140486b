"""The ``lshbench`` command line (Click).

Bad input, whether Click's own parameter checks or :class:`lshbench.ConfigError` raised
by the code, is printed as ONE line on stderr with exit status 2, no traceback and no usage
block. Every click command lives in this package (one module per command group), as a thin
layer over functions that take plain arguments; they are attached at the bottom.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

import lshbench
from lshbench.core.config import ConfigError

__all__ = ["main"]


class _Group(click.Group):
    """A group that reports bad input as one line and exit status 2."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(2)
        except ConfigError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        # without standalone mode, Click returns ctx.exit(n)'s status instead of exiting
        sys.exit(status if isinstance(status, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(lshbench.__version__, prog_name="lshbench")
def main() -> None:
    """Benchmark and scaling study of Reformer LSH self-attention."""


@main.command()
def backends() -> None:
    """List every backend and whether it is available here (and why not)."""
    for info in lshbench.list_backends().values():
        state = "available" if info.available else f"unavailable ({info.reason})"
        click.echo(f"{info.name:<12} {state}  - {info.description}")


def _add_subcommands() -> None:
    """Attach the subcommands of the modules of this package."""
    from lshbench.cli.bench_command import bench_compare
    from lshbench.cli.capture_command import capture_command as capture
    from lshbench.cli.explain_command import explain
    from lshbench.cli.report_command import report
    from lshbench.cli.sweep_command import sweep

    for command in (sweep, report, explain, bench_compare, capture):
        main.add_command(command)


_add_subcommands()
