"""The documentation cannot drift silently from the code (docs/design.md section 1).

* every dotted name ``lshbench.x.y`` and every repository path (``lshbench/...``,
  ``tests/...``, ``docs/...``, ...) mentioned in README.md, docs/*.md and the package's
  docstrings and comments resolves: an importable module and its attributes, an existing
  file or folder; so do the relative links of the Markdown pages;
* every fenced block marked ```` ```bash runnable ```` (or ```` ```python runnable ````) in
  README.md and docs/*.md runs from the repository root and exits 0;
* every ``lshbench <command>`` shown in README.md and docs/*.md (in a code block or inline
  code) has a ``--help`` that succeeds and lists each ``--option`` shown with it, and every
  ``--option`` a page mentions alone is an option of some ``lshbench`` command (or of
  another program's command line shown on that page);
* the quick preset table of docs/sweep.md is the preset's definition in
  lshbench/sweep/spec.py (the failure message prints the table to paste).
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
#: Python sources whose docstrings and comments are checked (this file names broken ones)
SOURCES = sorted(
    p
    for folder in ("lshbench", "bench", "tests")
    for p in (ROOT / folder).rglob("*.py")
    if p != Path(__file__).resolve()
)

#: a dotted name of the package: lshbench.x.y...
DOTTED = re.compile(r"(?<![\w.])lshbench(?:\.[A-Za-z_]\w*)+")
#: a path inside the repository, from one of its top-level folders
REPO_PATH = re.compile(
    r"(?<![\w/.$-])((?:lshbench|tests|bench|docs|\.ci|results/reference|reports/reference)"
    r"/[\w./*<>{}-]*)"
)
#: a Markdown link's target
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)[ \t]*(\w*)[ \t]*$")
INLINE_CODE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")
OPTION = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


class Mention(NamedTuple):
    where: str  # file:line
    text: str


def _mentions(pattern: re.Pattern[str], files: list[Path]) -> list[Mention]:
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(Mention(f"{rel(path)}:{line}", m.group(m.lastindex or 0)))
    return out


# ------------------------------------------------------------------------ dotted names


def _module_names(source: str) -> set[str]:
    """Top-level names a module's source defines or imports (for modules that cannot be
    imported here, such as one needing an optional peer)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def resolve_dotted(name: str) -> str | None:
    """None when ``name`` is a module of the package or an attribute chain of one; else why
    not."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (e.name == module_name or module_name.startswith(e.name)):
                continue  # not a module: try a shorter prefix
            try:  # a module needing what is missing (torch without the peers extra)
                spec = importlib.util.find_spec(module_name)
            except ModuleNotFoundError:
                continue  # its parent module needs it: check the name against the parent
            if spec is None or spec.origin is None or i == len(parts):
                return None if spec is not None else f"no module {module_name}"
            source = Path(spec.origin).read_text(encoding="utf-8")
            ok = parts[i] in _module_names(source)
            return None if ok else f"{module_name} has no {parts[i]}"
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:i])} has no attribute path {'.'.join(parts[i:])}"
            obj = getattr(obj, attr)
        return None
    return "not importable"


def test_dotted_names_resolve() -> None:
    mentions = _mentions(DOTTED, [*DOCS, *SOURCES])
    assert len(mentions) > 100  # the pattern finds what it should
    bad = {}
    for m in mentions:
        why = resolve_dotted(m.text)
        if why:
            bad.setdefault(m.text, (m.where, why))
    assert not bad, "\n".join(f"{w}: {n}: {why}" for n, (w, why) in sorted(bad.items()))


def test_resolve_dotted_tells_a_broken_name() -> None:
    assert resolve_dotted("lshbench.sweep.spec.PRESETS") is None
    assert resolve_dotted("lshbench.backends.hf.HFBackend") is None
    assert resolve_dotted("lshbench.worker") is not None
    assert resolve_dotted("lshbench.sweep.spec.NO_SUCH_THING") is not None


# ------------------------------------------------------------------------------- paths


def _is_pattern(path: str) -> bool:
    """A placeholder or glob, not a path: ``results/<preset>/``, ``bench/*.json``."""
    return any(c in path for c in "<>*{}") or "__pycache__" in path


def test_repository_paths_exist() -> None:
    mentions = _mentions(REPO_PATH, [*DOCS, *SOURCES, ROOT / ".ci" / "run"])
    assert len(mentions) > 20
    missing = []
    for m in mentions:
        path = m.text.rstrip(".,:;")
        if not _is_pattern(path) and not (ROOT / path).exists():
            missing.append(f"{m.where}: {path}")
    assert not missing, "missing paths:\n" + "\n".join(missing)


def test_markdown_links_resolve() -> None:
    missing = []
    for m in _mentions(LINK, DOCS):
        target = m.text.split("#")[0]
        if not target or re.match(r"\w+:", target):  # an anchor or a URL
            continue
        doc = ROOT / m.where.split(":")[0]
        if not (doc.parent / target).exists():
            missing.append(f"{m.where}: {m.text}")
    assert not missing, "broken links:\n" + "\n".join(missing)


# ---------------------------------------------------------------------- code blocks


class Block(NamedTuple):
    where: str  # file:line of the opening fence
    lang: str
    runnable: bool
    text: str


def code_blocks(path: Path) -> list[Block]:
    blocks, current, lines = [], None, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if current is None and m and m.group(1):
            current, lines = (n, m.group(1), m.group(2) == "runnable"), []
        elif current is not None and line.strip() == "```":
            start, lang, runnable = current
            blocks.append(Block(f"{rel(path)}:{start}", lang, runnable, "\n".join(lines)))
            current = None
        elif current is not None:
            lines.append(line)
    return blocks


RUNNABLE = [b for doc in DOCS for b in code_blocks(doc) if b.runnable]


@pytest.fixture(scope="module")
def doc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment runnable blocks get: this checkout's ``lshbench`` first on PATH and
    on PYTHONPATH, whatever is installed."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "lshbench"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lshbench "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_some_blocks_are_marked_runnable() -> None:
    assert len(RUNNABLE) >= 3
    assert {b.lang for b in RUNNABLE} <= {"bash", "python"}


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_runnable_block_runs(block: Block, doc_env: dict[str, str]) -> None:
    if block.lang == "python":
        argv = [sys.executable, "-c", block.text]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", block.text]
    done = subprocess.run(
        argv, cwd=ROOT, env=doc_env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{done.stderr[-3000:]}"


# ------------------------------------------------------------------- commands shown


def _commands() -> list[str]:
    from lshbench.cli import main

    return sorted(main.commands)


class Shown(NamedTuple):
    where: str
    program: str  # "lshbench sweep", or another program's first word(s)
    options: tuple[str, ...]

    @property
    def ours(self) -> bool:
        return self.program.split(" ")[0] == "lshbench"


def _segments(text: str) -> Iterator[list[str]]:
    """Shell command lines of a block or inline code, as token lists."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)
        line = re.sub(r"(^|\s)#.*$", "", line)  # comments
        for segment in re.split(r"&&|\|\||;|\|", line):
            try:
                tokens = shlex.split(segment)
            except ValueError:
                tokens = segment.split()
            if tokens:
                yield tokens


def shown_commands(path: Path) -> list[Shown]:
    """Every command line a page shows: code blocks of a shell language, and inline code."""
    commands = set(_commands())
    text = path.read_text(encoding="utf-8")
    pieces = [(b.where, b.text) for b in code_blocks(path) if b.lang in ("bash", "console", "sh")]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for m in INLINE_CODE.finditer(prose):
        line = prose.count("\n", 0, m.start()) + 1
        pieces.append((f"{rel(path)}:~{line}", m.group(1)))
    out = []
    for where, piece in pieces:
        for tokens in _segments(piece):
            while tokens and re.match(r"^[A-Z_]+=", tokens[0]):  # VAR=value prefixes
                tokens = tokens[1:]
            if tokens[:3] == ["python", "-m", "lshbench"]:
                tokens = ["lshbench", *tokens[3:]]
            if not tokens or tokens[0].startswith("-"):
                continue
            options = tuple(opt for t in tokens[1:] for opt in OPTION.findall(t.split("=")[0]))
            if tokens[0] == "lshbench" and len(tokens) > 1 and tokens[1] in commands:
                out.append(Shown(where, f"lshbench {tokens[1]}", options))
            elif tokens[0] == "lshbench":
                out.append(Shown(where, "lshbench", options))
            else:
                out.append(Shown(where, " ".join(tokens[:2]), options))
    return out


_HELP: dict[str, str] = {}


def help_text(program: str) -> str:
    """``--help`` of ``lshbench`` or one of its commands (asserted to succeed)."""
    if program not in _HELP:
        from lshbench.cli import main

        args = [*program.split()[1:], "--help"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"{program} --help: {result.output}"
        _HELP[program] = result.output
    return _HELP[program]


def option_in_help(option: str, help_: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_) is not None


@pytest.mark.parametrize("doc", DOCS, ids=[rel(d) for d in DOCS])
def test_shown_lshbench_commands_have_their_options(doc: Path) -> None:
    bad = []
    for shown in shown_commands(doc):
        if not shown.ours:
            continue
        help_ = help_text(shown.program)
        bad += [f"{shown.where}: {shown.program} {o}" for o in shown.options
                if not option_in_help(o, help_)]  # fmt: skip
    assert not bad, "options not in the command's --help:\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=[rel(d) for d in DOCS])
def test_options_a_page_mentions_exist(doc: Path) -> None:
    """An option in prose (``--mem-budget``) is an option of an ``lshbench`` command, or of
    another program's command line the page shows (pytest, dask, bench/perf_bars.py)."""
    shown = shown_commands(doc)
    helps = [help_text(f"lshbench {c}") for c in _commands()]
    others = {o for s in shown if not s.ours for o in s.options}
    prose = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    bad = []
    for m in INLINE_CODE.finditer(prose):
        for option in OPTION.findall(m.group(1)):
            if option in others or any(option_in_help(option, h) for h in helps):
                continue
            bad.append(f"{rel(doc)}:~{prose.count(chr(10), 0, m.start()) + 1}: {option}")
    assert not bad, "options no command has:\n" + "\n".join(sorted(set(bad)))


def test_the_pages_show_every_command() -> None:
    shown = {s.program for doc in DOCS for s in shown_commands(doc)}
    assert {f"lshbench {c}" for c in _commands()} <= shown


# ------------------------------------------------------------------ the quick preset

QUICK_BEGIN = "<!-- quick preset: generated from lshbench.sweep.spec.PRESETS, checked by tests -->"
QUICK_END = "<!-- end of quick preset -->"


def _cell(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quick_preset_table() -> str:
    """The quick preset as docs/sweep.md shows it: every axis and setting it sets."""
    from lshbench.sweep.spec import AXES, PRESETS, SETTINGS

    quick = PRESETS["quick"]
    keys = [k for k in (*AXES, *SETTINGS) if k in quick]
    rows = ["| option | quick |", "|---|---|"]
    rows += [f"| `--{k.replace('_', '-')}` | {_cell(quick[k])} |" for k in keys]
    return "\n".join(rows)


def test_quick_preset_table_matches_the_definition() -> None:
    text = (ROOT / "docs" / "sweep.md").read_text(encoding="utf-8")
    assert QUICK_BEGIN in text and QUICK_END in text, "docs/sweep.md lost its quick table"
    shown = text.split(QUICK_BEGIN)[1].split(QUICK_END)[0].strip()
    expected = quick_preset_table()
    assert shown == expected, (
        "docs/sweep.md's quick preset table differs from lshbench.sweep.spec.PRESETS; "
        f"paste this between the markers:\n{expected}"
    )


# ---------------------------------------------------------------- README's layout


def test_readme_layout_names_every_module() -> None:
    """README's Layout block names every module of the package (file name, or the folder
    for a package's ``__init__.py``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = [
        rel(p)
        for p in (ROOT / "lshbench").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
        and not re.search(rf"(?<![\w.]){re.escape(p.name)}", layout)
    ]
    assert not missing, "README's layout does not name:\n" + "\n".join(sorted(missing))
