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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lshbench.report.labels import plain
from lshbench.util import fmt_length, fmt_num, os_error_reason, shorten

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Doc",
    "RenderedReport",
    "ReportWriteError",
    "anchor",
    "crossover_rows",
    "default_out",
    "render_report",
]


# --------------------------------------------------------------------------- document


@dataclass
class Doc:
    """The report as blocks, rendered to Markdown and HTML alike.

    Blocks: ``("h", level, text)``, ``("p", text)``, ``("skip", text)`` (a figure left out),
    ``("table", header, rows)``, ``("figure", file, caption)``, ``("appendix", title)``: an
    appendix section, ``## Appendix: title`` in Markdown and a collapsed
    ``<details><summary>`` in HTML, holding the blocks up to the next appendix or level-2
    heading. In HTML every heading and appendix carries an ``id`` made from its text
    (:func:`anchor`: ``<h2 id="summary">Summary</h2>``).
    """

    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def appendix(self, title: str) -> None:
        self.blocks.append(("appendix", title))

    def figures(self) -> tuple[str, ...]:
        """The figure files the document shows, in order."""
        return tuple(block[1] for block in self.blocks if block[0] == "figure")

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "appendix":
                out.append(f"## {APPENDIX}{block[1]}")
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
        ids: set[str] = set()
        in_details = False
        for block in self.blocks:
            kind = block[0]
            if in_details and (kind == "appendix" or (kind == "h" and block[1] <= 2)):
                parts.append("</details>")
                in_details = False
            if kind == "h":
                level, text = block[1], block[2]
                ident = anchor(text, ids)
                parts.append(f'<h{level} id="{ident}">{html.escape(text)}</h{level}>')
            elif kind == "appendix":
                ident = anchor(APPENDIX + block[1], ids)
                parts.append(
                    f'<details id="{ident}"><summary>{html.escape(APPENDIX + block[1])}</summary>'
                )
                in_details = True
            elif kind == "p":
                parts.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "skip":
                parts.append(f'<p class="skip">Figure left out: {_inline(block[1])}</p>')
            elif kind == "figure":
                data = base64.b64encode((folder / block[1]).read_bytes()).decode("ascii")
                mime = "image/svg+xml" if block[1].endswith(".svg") else "image/png"
                parts.append(
                    f'<figure><img alt="{html.escape(block[1])}" '
                    f'src="data:{mime};base64,{data}">'
                    f"<figcaption>{_inline(block[2])}</figcaption></figure>"
                )
            elif kind == "table":
                head = "".join(f"<th>{_html_cell(c)}</th>" for c in block[1])
                body = "".join(
                    "<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in r) + "</tr>"
                    for r in block[2]
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if in_details:
            parts.append("</details>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


#: What an appendix heading starts with.
APPENDIX = "Appendix: "


def anchor(text: str, taken: set[str]) -> str:
    """An HTML id from a heading: lower case, runs of other characters as ``-``
    (``"1. Time versus L"`` -> ``"1-time-versus-l"``), made unique with ``-2``, ``-3``;
    added to ``taken``."""
    base = "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "section"
    ident, n = base, 1
    while ident in taken:
        n += 1
        ident = f"{base}-{n}"
    taken.add(ident)
    return ident


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%}figcaption{font-size:13px;color:#444}.skip{color:#a33;font-style:italic}"
    "code{background:#f3f3f3;padding:0 3px}"
    "details{margin:.8em 0}summary{font-size:1.2em;font-weight:600;cursor:pointer}"
)


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


#: A word of a table cell longer than this many characters gets places to break
LONG_WORD = 20
#: Where a long word may break: after a path, name or list separator
_SEPARATOR_END = re.compile(r"(?<=[/\\._,;:=)\]-])")


def _html_cell(text: str) -> str:
    """A table cell's text as HTML: escaped, and each word longer than :data:`LONG_WORD`
    characters given places to break (``<wbr>`` after ``/ . _ , ; : = ) ] -`` and every
    :data:`LONG_WORD` characters of a stretch without them), so that a path, a file name or
    an identifier wraps inside its column instead of widening the table past the page."""
    out = []
    for word in re.split(r"(\s+)", text):
        if len(word) <= LONG_WORD:
            out.append(html.escape(word))
            continue
        pieces = [p for p in _SEPARATOR_END.split(word) if p]
        chunks = [p[i : i + LONG_WORD] for p in pieces for i in range(0, len(p), LONG_WORD)]
        out.append("<wbr>".join(html.escape(c) for c in chunks))
    return "".join(out)


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


def _table_crossover(doc: Doc, cross: pd.DataFrame, points: pd.DataFrame, df: pd.DataFrame) -> None:
    doc.appendix("Crossover L versus the exact baseline")
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
        "bracketing L. One row per configuration: its inputs (time does not depend on the "
        "input) are pooled, and a value that differs between them is given as its range, "
        "with the number of inputs of each kind when they disagree. 'below the grid' means "
        "faster at every measured L (the crossover is at or below the smallest L), 'not in "
        "range' never faster; the trend column extrapolates a line fitted to log ratio "
        "versus log L. Speedup = exact baseline's time / LSH time at the largest common L, "
        "where the baseline ran at the GFLOP/s given (4 B L^2 d nominal FLOPs)."
    )
    doc.table(*crossover_rows(cross, points))


def crossover_rows(cross: pd.DataFrame, points: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The condensed crossover table: header and rows, one row per configuration (the
    series of :func:`lshbench.report.scaling.crossovers` that differ only by input share a
    row, named without the input)."""
    from lshbench.report.analysis import compact_labels

    floor_column = "floor_kind" in cross and bool(cross["floor_kind"].notna().any())
    names = compact_labels(points, drop=("input",))
    inputs = points.drop_duplicates("series").set_index("series")["input"]
    table = cross.assign(config=cross["series"].map(names), input=cross["series"].map(inputs))
    rows = []
    for config, g in table.groupby("config", sort=False):
        n = g["input"].nunique()
        rows.append(
            [
                str(config),
                str(n),
                _crossover_text(g, _CROSSOVER_WORDS),
                _span(g["slower_L"], g["faster_L"]),
                _range(g["trend_L"], fmt_length),
                _range(g["n_common"], lambda x: f"{x:.0f}"),
                _range(g["speedup_at_max"], lambda x: fmt_num(x, 2), "x"),
                _range(g["L_max"], fmt_length),
                "/".join(dict.fromkeys(str(b) for b in g["baseline"])),
                _range(g["baseline_gflops_at_max"], lambda x: fmt_num(x, 1)),
                *([_crossover_text(g, _FLOOR_WORDS, "floor_")] if floor_column else []),
            ]
        )
    header = [
        "configuration",
        "inputs",
        "crossover L",
        "bracket",
        "trend L",
        "common L",
        "speedup at L max",
        "L max",
        "exact baseline",
        "baseline GFLOP/s at L max",
        *(["beats the exact floor from L"] if floor_column else []),
    ]
    return header, rows


def _range(values: pd.Series, fmt: Any, suffix: str = "") -> str:
    """``lo-hi`` of the finite values as text (one value when they agree) followed by
    ``suffix``; ``-`` when there is none."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return "-"
    lo, hi = fmt(min(finite)), fmt(max(finite))
    return (lo if lo == hi else f"{lo}-{hi}") + suffix


def _span(slower: pd.Series, faster: pd.Series) -> str:
    """The distinct brackets ``1024 -> 2048`` of measured crossovers, ``-`` when none."""
    pairs = [(a, b) for a, b in zip(slower, faster, strict=True) if math.isfinite(a)]
    text = [f"{fmt_length(a)} -> {fmt_length(b)}" for a, b in sorted(set(pairs))]
    return ", ".join(text) or "-"


#: How a crossover of each kind reads, given its L (or range of L) as text
_CROSSOVER_WORDS = {
    "measured": "{}",
    "below": "below the grid (<= {})",
    "above": "not in range (> {})",
}
#: The same for the exact floor's column, whose header already says "beats ... from L"
_FLOOR_WORDS = {"measured": "{}", "below": "<= {}", "above": "no (> {})"}


def _crossover_text(g: pd.DataFrame, words: Mapping[str, str], prefix: str = "") -> str:
    """The crossover of one configuration over its inputs, from the columns ``kind``,
    ``crossover_L``, ``faster_L`` and ``L_max`` (each with ``prefix``): the measured L,
    at or below the smallest L, above the largest, each worded by ``words`` with the L as a
    range when the inputs differ, and with the number of inputs of each kind when they
    disagree; ``-`` when no input has one."""
    kinds = g[prefix + "kind"]
    parts = []
    for kind, column in (("measured", "crossover_L"), ("below", "faster_L"), ("above", "L_max")):
        h = g[kinds == kind]
        if h.empty:
            continue
        text = words[kind].format(_range(h[prefix + column], fmt_length))
        if len(h) < len(g):
            text += f" ({len(h)} of {len(g)} inputs)"
        parts.append(text)
    return "; ".join(parts) or "-"


def _floor_and_peer_notes(
    doc: Doc, runs: Sequence[Any], df: pd.DataFrame, points: pd.DataFrame, cross: pd.DataFrame
) -> None:
    """Below the crossover table: where LSH beats even a perfect exact attention (the exact
    floor, docs/design.md section 8), the runs without a floor, and why a run's exact
    baseline has no torch-sdpa."""
    from lshbench.report import floor
    from lshbench.report.peers import exact_peer_notes

    if df["exact"].all():
        return
    lines = floor.floor_sentences(cross, points, points["run"].nunique() > 1)
    if lines:
        doc.p(
            f"The last column compares with the exact floor instead: {floor.FLOOR_FLOPS} at "
            "the SGEMM rate the sweep measured at the same threads, the time no exact "
            "implementation can beat. " + " ".join(lines)
        )
    note = floor.missing_rate_note(points)
    if note:
        doc.p(note)
    for line in exact_peer_notes(runs, df):
        doc.p(line)


def _table_fits(doc: Doc, fits: pd.DataFrame) -> None:
    doc.appendix("Fitted scaling exponents")
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
    doc.appendix("Failed cells")
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

    doc.appendix("Machine and versions")
    table = metadata_table(runs)
    if table.empty:
        doc.p("*No metadata.json in the results directories.*")
        return
    doc.table(list(table.columns), table.astype(str).to_numpy().tolist())


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class RenderedReport:
    """What :func:`render_report` wrote: the folder, its ``report.md`` and ``index.html``,
    and the figure files of the figures the report shows, in the order it shows them (each
    in every format written)."""

    folder: Path
    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def render_report(
    dirs: Sequence[str | Path],
    out: str | Path | None = None,
    formats: str | Sequence[str] = ("png",),
) -> RenderedReport:
    """Write ``report.md``, ``index.html`` and the figures for the runs in ``dirs``, each
    figure in each of ``formats`` (:data:`~lshbench.report.plotting.FORMATS`, or their
    comma list ``"png,svg"``).

    The report opens with the summary (:mod:`lshbench.report.summary`), then the runs, the
    figures, and the long tables as appendices. Returns what it wrote
    (:class:`RenderedReport`) into the report folder (``out``, default
    :func:`default_out`). Raises ConfigError (one line) for a missing or empty DIR or a
    table lacking required columns, before anything is written.
    """
    from lshbench.core.config import fail
    from lshbench.report import analysis as ra
    from lshbench.report.plotting import FIGURE_FILES, FORMATS, figure_file, parse_formats

    formats = parse_formats(formats if isinstance(formats, str) else ",".join(formats))
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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FIGURE_FILES:
            for fmt in FORMATS:  # a figure or format left out now leaves no file
                (folder / figure_file(name, fmt)).unlink(missing_ok=True)
        _sections(doc, runs, df, folder, formats)
        _write_text(folder / "report.md", doc.markdown())
        _write_text(folder / "index.html", doc.html(folder, title))
    except OSError as exc:
        raise ReportWriteError(folder, exc) from exc
    shown = [Path(name).stem for name in doc.figures()]
    figures = tuple(
        folder / f"{stem}.{fmt}"
        for stem in shown
        for fmt in FORMATS
        if (folder / f"{stem}.{fmt}").is_file()
    )
    return RenderedReport(folder, folder / "report.md", folder / "index.html", figures)


def _head_inputs(df: pd.DataFrame) -> frozenset[str]:
    """Inputs whose rows name a captured model head (``layer`` and ``head``)."""
    if "layer" not in df or "head" not in df:
        return frozenset()
    import pandas as pd

    named = pd.to_numeric(df["layer"], errors="coerce").notna()
    named &= pd.to_numeric(df["head"], errors="coerce").notna()
    return frozenset(str(x) for x in df.loc[named, "input"])


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


def _sections(
    doc: Doc, runs: Sequence[Any], df: pd.DataFrame, folder: Path, formats: Sequence[str]
) -> None:
    """The summary, the runs, sections 1-9: the figures (written into ``folder``, in each of
    ``formats``) with the accuracy sections, then the tables as appendices."""
    from lshbench.report import analysis as ra
    from lshbench.report import figures_accuracy as fa
    from lshbench.report import figures_cost as fc
    from lshbench.report import floor
    from lshbench.report import heads as hd
    from lshbench.report import sections as sc
    from lshbench.report.figures_task import figure_task
    from lshbench.report.plotting import Palette, save
    from lshbench.report.scaling import crossovers, fit_exponents
    from lshbench.report.summary import section_summary

    points = floor.with_exact_floor(ra.series_points(df), floor.sgemm_rates(runs, df))
    fits = fit_exponents(points)
    cross = crossovers(points).merge(floor.floor_crossovers(points), on="series", how="left")
    varying = ra.varying_axes(df)
    palette = Palette(points)
    several = points["run"].nunique() > 1
    doc.h(2, "Summary")
    section_summary(doc, points, several, _head_inputs(df))
    doc.h(2, "Runs")
    _section_runs(doc, runs, df)
    sc.section_columns(doc, runs)

    def figure(heading: str, result: Any) -> None:
        doc.h(2, heading)
        _figure(doc, save(result, folder, formats))

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
    hashing = sc.section_hashing(doc, points, several)
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
        _figure(doc, save(hd.figure_heads(heads, budget), folder, formats))
        hd.section_heads(doc, heads, budget, winners)
        _figure(doc, save(hd.figure_lsh_vs_local(winners, budget), folder, formats))
    sc.table_budgets(doc, points, several)
    sc.table_hashing(doc, hashing, several)
    _table_crossover(doc, cross, points, df)
    _floor_and_peer_notes(doc, runs, df, points, cross)
    _table_fits(doc, fits)
    sc.table_passes(doc, points, several)
    _table_failed(doc, ra.failed_cells(df))
    sc.table_machines(doc, runs, df)
    _table_metadata(doc, runs)
