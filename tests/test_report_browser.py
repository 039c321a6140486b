"""The report's ``index.html`` read in a real browser (headless Chromium, ``tests/browser.py``).

A small real sweep and the synthetic tables of ``tests/test_report.py`` are rendered with
:func:`lshbench.report.document.render_report`; Chromium opens each ``index.html`` at 1280 px
and finds every figure loaded, no horizontal overflow and every internal link resolving. The
checker is shown to fail: a deleted figure file, a corrupt embedded image, an element wider
than the window and links to nothing are each reported, and nothing else is.

Skipped, with the reason, where ``chromium``, ``chromedriver`` or the ``selenium`` package is
missing; ``.ci/run`` installs them, and a skip fails the run there.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from browser import WIDTH, browser_unavailable_reason, chromium, page_facts, page_problems
from helpers import SMALL_GRID
from test_report import make_rows, write_results

import lshbench
from lshbench.report.document import render_report

#: a figure in report.md: ![name](file)
FIGURE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
IMG_TAG = re.compile(r"<img\b[^>]*>")
SRC = re.compile(r'\bsrc="[^"]*"')
BODY_TAG = re.compile(r"<body\b[^>]*>")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def driver():
    reason = browser_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no headless browser: {reason}")
    with chromium() as drv:
        yield drv


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """Report folders: ``sweep``, a real sweep of 10 rows (numpy and dense, two lengths,
    one and two hash rounds, two chunk lengths); ``fixture``, the synthetic tables of
    tests/test_report.py at three lengths (two inputs, failed cells, every table);
    ``long-names``, the sweep's results in a folder whose name, and with an interpreter path
    whose folders, are long words without a hyphen (as a CI checkout's paths can be): the
    appendices that show them must wrap them, not widen the page."""
    base = tmp_path_factory.mktemp("browser")
    grid = dict(SMALL_GRID, chunk_len=[16, 32])
    rows = lshbench.run_sweep(base / "sweep", backend="numpy,dense", **grid)
    assert len(rows) == 10 and (rows["status"] == "ok").all(), rows[["status", "message"]]
    fixture = write_results(base / "fixture", make_rows(lengths=(256, 512, 1024), hashes=(1, 2)))
    word = "checkout_of_the_project_at_its_newest_commit_" * 4
    long_names = shutil.copytree(base / "sweep", base / word / "sweep")
    meta = json.loads((long_names / "metadata.json").read_text())
    meta["python_executable"] = f"/{word}/{word}/.venv/bin/python"
    (long_names / "metadata.json").write_text(json.dumps(meta))
    out = {}
    for name, results in (
        ("sweep", base / "sweep"),
        ("fixture", fixture),
        ("long-names", long_names),
    ):
        out[name] = base / f"{name}-report"
        render_report([results], out[name])
    return out


@pytest.mark.parametrize("name", ["sweep", "fixture", "long-names"])
def test_report_page_reads_cleanly_at_1280_px(driver, reports, name) -> None:
    folder = reports[name]
    assert page_problems(driver, folder / "index.html") == []
    # not vacuous: every figure of report.md is an image the browser decoded
    figures = FIGURE_LINK.findall((folder / "report.md").read_text())
    facts = page_facts(driver, folder / "index.html")
    assert len(figures) >= 5 and len(facts["images"]) == len(figures)
    assert all(img["naturalWidth"] > 300 for img in facts["images"])
    assert facts["innerWidth"] == WIDTH


@pytest.mark.parametrize(
    "folder", sorted(p.parent.name for p in (ROOT / "reports" / "reference").glob("*/index.html"))
)
def test_committed_reference_report_reads_cleanly_at_1280_px(driver, folder) -> None:
    """The reports README links to, as committed: what a reader opens first."""
    assert page_problems(driver, ROOT / "reports" / "reference" / folder / "index.html") == []


def test_report_opens_with_the_summary(driver, reports) -> None:
    driver.get((reports["sweep"] / "index.html").resolve().as_uri())
    first = driver.execute_script(
        "const h = document.querySelector('h2'); return h && [h.id, h.textContent];"
    )
    assert first is not None and first[0] == "summary", first


def _broken_copy(driver, report: Path, tmp_path: Path, case: str) -> tuple[Path, str]:
    """A copy of ``report`` broken one way; returns the page and a fragment the one problem
    the checker must report contains."""
    folder = shutil.copytree(report, tmp_path / "report")
    page = folder / "index.html"
    text = page.read_text()
    first_img = IMG_TAG.search(text)
    assert first_img is not None
    if case == "figure file deleted":
        # the first figure linked to its file instead of embedded, and the file gone
        figure = FIGURE_LINK.findall((folder / "report.md").read_text())[0]
        tag = SRC.sub(f'src="{figure}"', first_img.group(0))
        text = text.replace(first_img.group(0), tag, 1)
        page.write_text(text)
        assert page_problems(driver, page) == [], "a linked figure that exists must load"
        (folder / figure).unlink()
        return page, "image not loaded"
    if case == "corrupt embedded image":
        tag = SRC.sub('src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"', first_img.group(0))
        page.write_text(text.replace(first_img.group(0), tag, 1))
        return page, "image not loaded"
    if case == "wide element":
        wide = f'<div class="injected" style="width:{WIDTH + 400}px">wide</div>'
        page.write_text(text.replace(first_img.group(0), first_img.group(0) + wide, 1))
        return page, f"<div.injected> {WIDTH + 400} px wide"
    if case == "broken anchor":
        page.write_text(_at_top(text, '<a href="#nowhere">x</a>'))
        return page, "no element with id 'nowhere'"
    assert case == "missing file"
    page.write_text(_at_top(text, '<a href="figures/none.png">x</a>'))
    return page, "no file 'figures/none.png'"


def _at_top(text: str, markup: str) -> str:
    """``text`` (a page) with ``markup`` first in its body."""
    body = BODY_TAG.search(text)
    assert body is not None
    return text[: body.end()] + markup + text[body.end() :]


CASES = ["figure file deleted", "corrupt embedded image", "wide element", "broken anchor",
         "missing file"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_checker_reports_a_broken_page(driver, reports, tmp_path, case) -> None:
    page, fragment = _broken_copy(driver, reports["sweep"], tmp_path, case)
    problems = page_problems(driver, page)
    assert len(problems) == 1 and fragment in problems[0], problems


def test_links_that_resolve_are_not_reported(driver, reports, tmp_path) -> None:
    folder = shutil.copytree(reports["sweep"], tmp_path / "report")
    page = folder / "index.html"
    links = '<p id="top"><a href="#top">top</a> <a href="report.md">markdown</a></p>'
    page.write_text(_at_top(page.read_text(), links))
    assert page_problems(driver, page) == []
