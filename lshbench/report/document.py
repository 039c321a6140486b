"""``lshbench report``: sweep results rendered as figures, tables, Markdown and HTML.

``lshbench report DIR [DIR ...] [--out REPORT_DIR]`` (:func:`render_report`; the command is
:mod:`lshbench.cli.report_command`) reads each ``DIR`` written by ``lshbench sweep``
(``results.parquet``, or its log ``results.jsonl``, plus ``metadata.json``) and writes
``report.md``, a self-contained ``index.html`` (figures embedded as base64 data URIs) and the
PNG figures into ``REPORT_DIR`` (default ``reports/<DIR name>/``). Several DIRs overlay in one
report, labelled by run. The numbers come from :mod:`lshbench.report.analysis`,
:mod:`~lshbench.report.scaling`, :mod:`~lshbench.report.tradeoffs` and
:mod:`~lshbench.report.metadata`, the pictures from :mod:`~lshbench.report.figures_cost` and
:mod:`~lshbench.report.figures_accuracy`; this module lays them out. Output depends only on the
tables: no clock, no host name, sorted rows, fixed number formats.

This module imports pandas and matplotlib only when a report is rendered.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lshbench.report.labels import plain
from lshbench.util import fmt_length, fmt_num, os_error_reason, shorten

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Doc", "ReportWriteError", "default_out", "render_report"]


# --------------------------------------------------------------------------- document


@dataclass
class Doc:
    """The report as blocks, rendered to Markdown and HTML alike.

    Blocks: ``("h", level, text)``, ``("p", text)``, ``("skip", text)`` (a figure left out),
    ``("table", header, rows)``, ``("figure", file, caption)``.
    """

    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "p":
                out.append(block[1])
            elif kind == "skip":
                out.append(f"*Figure left out: {block[1]}*")
            elif kind == "figure":
                out.append(f"![{Path(block[1]).stem}]({block[1]})\n\n{block[2]}")
            elif kind == "table":
                lines = ["| " + " | ".join(_md_cell(c) for c in block[1]) + " |"]
                lines.append("|" + "|".join("---" for _ in block[1]) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in block[2]]
                out.append("\n".join(lines))
        return "\n\n".join(out) + "\n"

    def html(self, folder: Path, title: str) -> str:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
        ]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                parts.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "skip":
                parts.append(f'<p class="skip">Figure left out: {_inline(block[1])}</p>')
            elif kind == "figure":
                data = base64.b64encode((folder / block[1]).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(block[1])}" '
                    f'src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline(block[2])}</figcaption></figure>"
                )
            elif kind == "table":
                head = "".join(f"<th>{html.escape(c)}</th>" for c in block[1])
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                    for r in block[2]
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%}figcaption{font-size:13px;color:#444}.skip{color:#a33;font-style:italic}"
    "code{background:#f3f3f3;padding:0 3px}"
)


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _inline(text: str) -> str:
    """Markdown ``code`` spans and a wholly ``*emphasized*`` text to HTML; the rest escaped."""
    emphasized = len(text) > 2 and text.startswith("*") and text.endswith("*")
    pieces = html.escape(text[1:-1] if emphasized else text).split("`")
    out = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
    return f"<em>{out}</em>" if emphasized else out


# --------------------------------------------------------------------------- sections


def _run_labels(dirs: Sequence[str]) -> list[str]:
    """Run labels from the directory names, made unique with their parents when needed."""
    paths = [Path(d).resolve() for d in dirs]
    names = [p.name for p in paths]
    labels = list(names)
    for i, p in enumerate(paths):
        if names.count(p.name) > 1:
            labels[i] = "/".join(p.parts[-2:])
    for i in range(len(labels)):  # still equal (same directory twice): number them
        if labels.count(labels[i]) > 1:
            labels[i] = f"{labels[i]}#{labels[:i].count(labels[i]) + 1}"
    return labels


def default_out(dirs: Sequence[str]) -> Path:
    """``reports/<name>/`` for one run; ``reports/<name1>-vs-<name2>/`` for several, with
    the names of the run labels (a parent joined with ``-`` where two directories share a
    name: ``results/quick results/reference/quick`` -> ``reports/quick-vs-reference-quick``),
    so a report of several runs never lands in (and overwrites) a single run's folder."""
    if len(dirs) == 1:
        return Path("reports") / Path(dirs[0]).resolve().name
    labels = [label.replace("/", "-") for label in _run_labels(dirs)]
    return Path("reports") / "-vs-".join(labels)


def _section_runs(doc: Doc, runs: Sequence[Any], df: pd.DataFrame) -> None:
    rows = []
    for label, g in df.groupby("run", sort=False):
        ok = int((g["status"] == "ok").sum())
        lengths = f"{fmt_length(g['seqlen'].min())}..{fmt_length(g['seqlen'].max())}"
        backends = ", ".join(sorted(set(g["backend"])))
        ids = ", ".join(sorted(set(g["run_id"]) - {""}))
        rows.append([str(label), str(g["dir_path"].iloc[0]), str(g["machine"].iloc[0]),
                     str(len(g)), str(ok), str(len(g) - ok), lengths, backends, ids])  # fmt: skip
    header = ["run", "directory", "machine", "rows", "ok", "not ok", "L", "backends", "run_id"]
    doc.table(header, rows)
    fixed = []
    for col in ("d", "dv", "dtype", "causal", "threads", "input", "batch", "chunk_len",
                "chunks_before", "chunks_after", "nb", "method", "weighting"):  # fmt: skip
        values = set(df[col].dropna().map(plain)) - {""}
        if len(values) == 1:
            fixed.append(f"{col}={next(iter(values))}")
    if fixed:
        doc.p("Same in every row: " + ", ".join(fixed) + ".")
    doc.p(
        "Times are per sequence (`time_median_s / batch`, median of the timed samples). "
        "Labels name the backend, the method when it varies (lsh, or its random / local "
        "baselines), H = n_hashes, m = chunk_len, nb = n_buckets (`2L/m` when it follows the "
        "default rule), the weighting when it varies, and the other axes that vary. The "
        "headline error is `attn_tv`, the share of attention mass put in the wrong place "
        "(0 = exact; `docs/metrics.md`); a table written before it existed is shown with "
        "`rel_err`, and the report says so where it does."
    )


def _figure(doc: Doc, result: Any) -> None:
    from lshbench.report.plotting import Drawn

    if isinstance(result, Drawn):
        doc.blocks.append(("figure", result.file, result.caption))
    else:
        doc.blocks.append(("skip", result.reason))


def _table_crossover(doc: Doc, cross: pd.DataFrame, df: pd.DataFrame) -> None:
    doc.h(3, "Crossover L versus the exact baseline")
    if not df["exact"].any():
        doc.p("*Left out: no exact rows (dense, torch-sdpa), so there is no baseline to cross.*")
        return
    if df["exact"].all():
        doc.p("*Left out: no LSH rows.*")
        return
    if cross.empty:
        doc.p("*Left out: no LSH configuration shares an L (and batch) with an exact row.*")
        return
    doc.p(
        "Where LSH becomes faster than exact attention done as fast as this machine ran it: "
        "the exact baseline of each L is the fastest exact backend (attention over all L "
        "keys) measured in the same run on the same machine, input, causal flag, dtype, "
        "threads, d, L and batch. The crossover is the start of the last stretch of measured "
        "L where `t_lsh / t_exact < 1`, interpolated in (log L, log ratio) between the "
        "bracketing L. `<= L` means faster at every measured L, `> L` never faster; the trend "
        "column extrapolates a line fitted to log ratio versus log L. Speedup = exact "
        "baseline's time / LSH time at the largest common L, where the baseline ran at the "
        "GFLOP/s given (4 B L^2 d nominal FLOPs)."
    )
    rows = []
    for _, r in cross.iterrows():
        if r["kind"] == "measured":
            value = fmt_length(r["crossover_L"])
            bracket = f"{fmt_length(r['slower_L'])} -> {fmt_length(r['faster_L'])}"
        elif r["kind"] == "below":
            value, bracket = f"<= {fmt_length(r['faster_L'])}", "-"
        else:
            value, bracket = f"> {fmt_length(r['L_max'])}", "-"
        rows.append(
            [
                r["series"],
                value,
                bracket,
                fmt_length(r["trend_L"]),
                str(r["n_common"]),
                f"{fmt_num(r['speedup_at_max'], 2)}x",
                fmt_length(r["L_max"]),
                str(r["baseline"]),
                fmt_num(r["baseline_gflops_at_max"], 1),
            ]
        )
    header = [
        "configuration",
        "crossover L",
        "bracket",
        "trend L",
        "common L",
        "speedup at L max",
        "L max",
        "exact baseline",
        "baseline GFLOP/s at L max",
    ]
    doc.table(header, rows)


def _table_fits(doc: Doc, fits: pd.DataFrame) -> None:
    doc.h(3, "Fitted scaling exponents")
    if fits.empty:
        doc.p("*Left out: no configuration has ok timings at two or more L.*")
        return
    doc.p(
        "Least-squares fit of `log(time per sequence) = a + k log L` over the ok points "
        "(LSH points with L <= chunk_len run the exact path and are left out). "
        "R^2 is given from three points on. GFLOP/s and tokens/s are the sweep's, at the "
        "largest L."
    )
    rows = [
        [
            r["series"],
            str(r["n"]),
            f"{fmt_length(r['L_min'])}..{fmt_length(r['L_max'])}",
            fmt_num(r["exponent"], 3),
            fmt_num(r["r2"], 4),
            fmt_num(r["gflops_at_max"], 2),
            fmt_num(r["tokens_per_s_at_max"], 0),
        ]
        for _, r in fits.iterrows()
    ]
    doc.table(
        [
            "configuration",
            "points",
            "L range",
            "exponent k",
            "R^2",
            "GFLOP/s at L max",
            "tokens/s at L max",
        ],
        rows,
    )


def _table_failed(doc: Doc, failed: pd.DataFrame) -> None:
    doc.h(3, "Failed cells")
    if failed.empty:
        doc.p("None: every row has status `ok`.")
        return
    doc.p("Every row whose status is not `ok` (drawn as markers on the top edge of the plots).")
    rows = []
    for _, r in failed.iterrows():
        message = shorten(" ".join(str(r["message"]).split()), 100)
        rows.append(
            [
                r["series"],
                fmt_length(r["seqlen"]),
                plain(r["batch"]),
                plain(r["seed"]),
                r["status"],
                message,
            ]
        )
    doc.table(["configuration", "L", "batch", "seed", "status", "message"], rows)


def _table_metadata(doc: Doc, runs: Sequence[Any]) -> None:
    from lshbench.report.metadata import metadata_table

    doc.h(3, "Machine and versions")
    table = metadata_table(runs)
    if table.empty:
        doc.p("*No metadata.json in the results directories.*")
        return
    doc.table(list(table.columns), table.astype(str).to_numpy().tolist())


# --------------------------------------------------------------------------- entry point


def render_report(dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write ``report.md``, ``index.html`` and the figures for the runs in ``dirs``.

    Returns the report folder (``out``, default :func:`default_out`). Raises ConfigError
    (one line) for a missing or empty DIR or a table lacking required columns, before
    anything is written.
    """
    from lshbench.core.config import fail
    from lshbench.report import analysis as ra
    from lshbench.report import sections
    from lshbench.report.plotting import FIGURE_FILES

    names = [str(d) for d in dirs]
    if not names:
        fail("DIR", "", "give at least one results directory")
    runs = [ra.load_run(d, label) for d, label in zip(names, _run_labels(names), strict=True)]
    folder = Path(out) if out is not None else default_out(names)
    _check_out(folder)
    df = ra.prepare(runs)
    title = "lshbench report: " + ", ".join(run.label for run in runs)
    doc = Doc()
    doc.h(1, title)
    _section_runs(doc, runs, df)
    sections.section_columns(doc, runs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FIGURE_FILES.values():
            (folder / name).unlink(missing_ok=True)  # a figure left out now leaves no file
        _sections_figures_and_tables(doc, runs, df, folder)
        _write_text(folder / "report.md", doc.markdown())
        _write_text(folder / "index.html", doc.html(folder, title))
    except OSError as exc:
        raise ReportWriteError(folder, exc) from exc
    return folder


class ReportWriteError(OSError):
    """Writing the report folder failed (disk full, permissions, ...): one line naming the
    folder and the OS error. Every file is written to a temporary name and renamed, so a
    file of the report is either the previous one or complete, never truncated."""

    def __init__(self, folder: Path, exc: OSError) -> None:
        super().__init__(f"cannot write the report in {folder}: {os_error_reason(exc)}")
        self.errno = exc.errno


def _check_out(folder: Path) -> None:
    """ConfigError unless ``folder`` is a directory or can become one: no part of the path
    may be an existing file."""
    from lshbench.core.config import fail

    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                what = "is" if path == folder else f"is under {path}, which is"
                fail("out", str(folder), f"must be a directory, but it {what} a file")
            return


def _write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    from lshbench.results.files import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _sections_figures_and_tables(
    doc: Doc, runs: Sequence[Any], df: pd.DataFrame, folder: Path
) -> None:
    """Sections 1-9: the figures (written into ``folder``) with the accuracy sections, then
    the tables."""
    from lshbench.report import analysis as ra
    from lshbench.report import figures_accuracy as fa
    from lshbench.report import figures_cost as fc
    from lshbench.report import heads as hd
    from lshbench.report import sections as sc
    from lshbench.report.figures_task import figure_task
    from lshbench.report.plotting import Palette, save
    from lshbench.report.scaling import crossovers, fit_exponents

    points = ra.series_points(df)
    fits = fit_exponents(points)
    cross = crossovers(points)
    varying = ra.varying_axes(df)
    palette = Palette(points)
    several = points["run"].nunique() > 1

    def figure(heading: str, result: Any) -> None:
        doc.h(2, heading)
        _figure(doc, save(result, folder))

    figure("1. Time versus sequence length", fc.figure_time(points, fits, cross, palette, varying))
    figure("2. Peak memory versus sequence length", fc.figure_memory(points, palette, varying))
    figure(
        "3. Error versus number of hash rounds, by method and weighting",
        fa.figure_error(
            points, "n_hashes", ("method", "weighting"), "error_hashes", palette, varying
        ),
    )
    figure(
        "4. Error versus chunk length",
        fa.figure_error(points, "chunk_len", "n_hashes", "error_chunk", palette, varying),
    )
    figure("5. Accuracy against cost", fa.figure_pareto(points, palette, varying))
    doc.h(2, "6. What hashing buys")
    sc.section_hashing(doc, points, several)
    figure("7. Copy retrieval on the duplication input", figure_task(points, palette, varying))
    sc.table_task(doc, points, several)
    figure(
        "8. Time per token at fixed total tokens (the Reformer paper's view)",
        fc.figure_time_per_token(points, palette, varying),
    )
    heads = hd.head_table(df)
    if not heads.empty:  # a sweep of captured model heads: their distribution
        doc.h(2, "9. Captured model heads")
        budget = hd.reference_budget(heads)
        winners = hd.head_winners(heads, budget)
        _figure(doc, save(hd.figure_heads(heads, budget), folder))
        hd.section_heads(doc, heads, budget, winners)
        _figure(doc, save(hd.figure_lsh_vs_local(winners, budget), folder))
    doc.h(2, "10. Tables" if not heads.empty else "9. Tables")
    _table_crossover(doc, cross, df)
    _table_fits(doc, fits)
    sc.table_budgets(doc, points, several)
    sc.table_passes(doc, points, several)
    _table_failed(doc, ra.failed_cells(df))
    sc.table_machines(doc, runs, df)
    _table_metadata(doc, runs)
