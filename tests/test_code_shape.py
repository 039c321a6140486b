"""Shape rules on the package's source, checked with ``ast`` over every module in lshbench/:
no function takes more than ten positional parameters (bundle them in a named tuple or a
record, or make them keyword-only after ``*``)."""

from __future__ import annotations

import ast
from pathlib import Path

import lshbench

PACKAGE = Path(lshbench.__file__).parent
MAX_POSITIONAL = 10


def long_signatures(source: str, limit: int = MAX_POSITIONAL) -> list[tuple[int, str, int]]:
    """(line, name, count) of every function in ``source`` with more than ``limit``
    positional parameters (positional-only and ordinary ones; ``self`` and ``cls`` count,
    keyword-only ones and ``*args`` / ``**kwargs`` do not)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            n = len(node.args.posonlyargs) + len(node.args.args)
            if n > limit:
                found.append((node.lineno, getattr(node, "name", "<lambda>"), n))
    return found


def test_checker_counts_positional_but_not_keyword_only_parameters() -> None:
    eleven = ", ".join(f"a{i}" for i in range(11))
    assert long_signatures(f"def f({eleven}):\n    pass\n") == [(1, "f", 11)]
    assert long_signatures(f"def f(a0, /, {eleven[4:]}):\n    pass\n") == [(1, "f", 11)]
    assert long_signatures(f"def f(*, {eleven}):\n    pass\n") == []
    assert long_signatures(f"def f(a, *args, {eleven[4:]}, **kw):\n    pass\n") == []


def test_no_function_in_the_package_takes_more_than_ten_positional_parameters() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50  # the whole tree, not an empty glob
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}() takes {n} positional parameters"
        for path in modules
        for line, name, n in long_signatures(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "\n".join(offenders)


#: where tasks and rows flow between processes: typed records only
TYPED_RECORD_MODULES = ("sweep", "measurement/worker.py")


def untyped_records(source: str) -> list[tuple[int, str]]:
    """(line, name) of every parameter, variable or function in ``source`` whose name says
    task or row and whose annotation is a ``dict[str, Any]`` (or a list / mapping of them)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[str, ast.expr | None]] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            pairs += [(a.arg, a.annotation) for a in args]
            pairs.append((node.name, node.returns))
        elif isinstance(node, ast.AnnAssign):
            pairs.append((ast.unparse(node.target), node.annotation))
        for name, annotation in pairs:
            text = "" if annotation is None else ast.unparse(annotation)
            words = name.lower()
            if "dict[str, Any]" in text and ("task" in words or "row" in words):
                found.append((node.lineno, name))
    return found


def test_checker_finds_a_task_typed_as_a_plain_dict() -> None:
    source = "def f(task: dict[str, Any], rows: list[dict[str, Any]]) -> None:\n    pass\n"
    assert untyped_records(source) == [(1, "task"), (1, "rows")]
    assert untyped_records("def f(task: Task, row: Row) -> Row:\n    pass\n") == []


def test_tasks_and_rows_are_typed_records_in_the_sweep_and_the_worker() -> None:
    paths = []
    for where in TYPED_RECORD_MODULES:
        target = PACKAGE / where
        paths += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert len(paths) > 5
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}"
        for path in paths
        for line, name in untyped_records(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "\n".join(offenders)
