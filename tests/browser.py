"""A rendered HTML page checked in a real browser: headless Chromium driven by Selenium.

:func:`page_problems` opens a page at a fixed window width and lists what a reader would see
broken: images that did not load, horizontal overflow (and the elements that cause it),
internal links whose anchor or file does not exist. It returns the problems as one-line
strings, an empty list for a clean page, so a test can assert both directions.

The browser is Debian's ``chromium`` with its ``chromedriver`` (packages ``chromium`` and
``chromium-driver``); the driver's path is given to Selenium explicitly, so Selenium Manager
never runs and nothing is downloaded. :func:`browser_unavailable_reason` says why no browser
can run here (``None`` where one can).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: the width the report's HTML must fit, in CSS pixels
WIDTH = 1280
HEIGHT = 900
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: headless, no sandbox (CI runs as root), and nothing that reaches the network on its own
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={WIDTH},{HEIGHT}",
)


def browser_unavailable_reason() -> str | None:
    """Why the browser check cannot run here, or ``None`` when it can."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        return (
            f"{' and '.join(missing)} not found (Debian: apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[test]')"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile, quit (and the profile removed)
    on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="lshbench-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(60)
            yield driver
        finally:
            driver.quit()


#: JavaScript run on the loaded page: the facts page_problems judges
_FACTS = """
const root = document.documentElement;
const width = root.clientWidth;
function describe(el) {
  let name = el.tagName.toLowerCase();
  if (el.id) name += '#' + el.id;
  if (el.classList.length) name += '.' + Array.from(el.classList).join('.');
  let heading = '';
  for (const h of document.querySelectorAll('h1, h2, h3, h4')) {
    if (h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) heading = h.textContent;
  }
  return {name: name, right: Math.round(el.getBoundingClientRect().right),
          width: Math.round(el.getBoundingClientRect().width), heading: heading.trim()};
}
const wide = [];
for (const el of document.body.querySelectorAll('*')) {
  const right = el.getBoundingClientRect().right;
  const parent = el.parentElement;
  const parentWide = parent !== document.body && parent.getBoundingClientRect().right > width;
  if (right > width && !parentWide) wide.push(describe(el));
}
return {
  innerWidth: window.innerWidth,
  clientWidth: width,
  scrollWidth: root.scrollWidth,
  wide: wide,
  images: Array.from(document.images).map(img => ({
    alt: img.getAttribute('alt') || '',
    src: (img.getAttribute('src') || '').slice(0, 60),
    complete: img.complete,
    naturalWidth: img.naturalWidth,
  })),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
  ids: Array.from(document.querySelectorAll('[id]')).map(el => el.id)
    .concat(Array.from(document.querySelectorAll('a[name]')).map(a => a.name)),
};
"""


def page_facts(driver: Any, page: Path) -> dict[str, Any]:
    """Open ``page`` (a local HTML file), expand every ``<details>`` (a reader may open them:
    what they hold must fit and load too), wait until every image has finished loading or
    failing (10 s at most) and return what :data:`_FACTS` measures."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    driver.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; });")
    settled = "return Array.from(document.images).every(img => img.complete);"
    WebDriverWait(driver, 10).until(lambda drv: drv.execute_script(settled))
    return driver.execute_script(_FACTS)


def page_problems(driver: Any, page: Path) -> list[str]:
    """Open ``page`` at :data:`WIDTH` CSS px and list what is broken, one line each: an
    image not loaded (not complete, or natural width 0), horizontal overflow (scrollWidth
    > clientWidth, with the outermost elements that stick out and the heading they are
    under), an internal link whose anchor (``#id``) or file (a relative path, resolved
    against the page's folder) does not exist. An empty list: nothing found."""
    facts = page_facts(driver, page)
    problems = []
    if facts["innerWidth"] != WIDTH:
        problems.append(f"window is {facts['innerWidth']} px wide, not {WIDTH} px")
    for img in facts["images"]:
        if not (img["complete"] and img["naturalWidth"] > 0):
            what = img["alt"] or img["src"]
            problems.append(
                f"image not loaded: {what!r} (complete={img['complete']}, "
                f"naturalWidth={img['naturalWidth']})"
            )
    if facts["scrollWidth"] > facts["clientWidth"]:
        culprits = "; ".join(
            f"<{w['name']}> {w['width']} px wide, right edge at {w['right']} px"
            + (f", under {w['heading']!r}" if w["heading"] else "")
            for w in facts["wide"][:5]
        )
        problems.append(
            f"horizontal overflow at {WIDTH} px: scrollWidth {facts['scrollWidth']} > "
            f"clientWidth {facts['clientWidth']}" + (f" ({culprits})" if culprits else "")
        )
    ids = set(facts["ids"])
    for href in facts["links"]:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            continue  # an external link: not checked (the page must work offline)
        if not parts.path:
            anchor = unquote(parts.fragment)
            if anchor and anchor not in ids:
                problems.append(f"link {href!r}: no element with id {anchor!r}")
        elif not (page.parent / unquote(parts.path)).exists():
            problems.append(f"link {href!r}: no file {unquote(parts.path)!r} next to the page")
    return problems
