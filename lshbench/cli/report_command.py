"""``lshbench report``: a thin layer over :func:`lshbench.report.document.render_report`."""

from __future__ import annotations

import click

from lshbench.report.document import ReportWriteError, render_report

__all__ = ["report"]


@click.command("report")
@click.argument("dirs", nargs=-1, required=True, metavar="DIR [DIR ...]")
@click.option(
    "--out",
    "out",
    type=click.Path(),
    default=None,
    help="Report folder (default: reports/<DIR name>/).",
)
def report(dirs: tuple[str, ...], out: str | None) -> None:
    """Render sweep results (DIR from `lshbench sweep --out DIR`) as figures and a report.

    Writes report.md, a self-contained index.html and PNG figures. Several DIRs are
    overlaid in one report, labelled by directory and machine; a DIR holding several
    machines' rows gives one series per machine. Metrics and how to read the accuracy
    tables: docs/metrics.md.
    """
    try:
        written = render_report(dirs, out)
    except ReportWriteError as exc:  # the environment (disk full, permissions): exit 1
        raise click.ClickException(str(exc)) from exc
    n = len(written.figures)
    click.echo(f"wrote {written.markdown} and {written.html} ({n} figures)")
