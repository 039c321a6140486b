"""Which machine and which code measured each row (docs/design.md section 7, provenance).

A results directory may hold several machines' rows (``machine_id``) and rows of several
versions of the code (``code_id``). The report never merges two machines into one series:
:func:`lshbench.report.analysis.prepare` splits every directory by machine and labels each
part with :func:`machine_label`. On one machine, rows of an older ``code_id`` are superseded
by the newest code's rows (:func:`newest_code`); the report says how many it left out.

Machine facts (CPU model, logical CPUs, memory, versions) come from the directory's
``metadata.json``: its ``machines`` map (machine_id -> facts) and its ``runs`` entries, as
the results store writes them. Tables that predate provenance have no machine_id: their rows
are labelled by directory only, and their metadata is shown as the file says.

pandas only; no plotting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = [
    "ID_PREFIX",
    "UNKNOWN_MACHINE",
    "cpu_short",
    "machine_facts",
    "machine_label",
    "machines_table",
    "newest_code",
]

#: Hex digits of a machine_id shown in labels.
ID_PREFIX = 8
#: Label of rows that carry no machine_id (tables written before provenance).
UNKNOWN_MACHINE = "machine not recorded"

_CPU_NOISE = (
    r"\(R\)", r"\(TM\)", r"\(tm\)", r"\bCPU\b", r"\bProcessor\b", r"@\s*[\d.]+\s*GHz",
    r"\b\d+-Core\b", r"\bwith Radeon.*$",
)  # fmt: skip


def _text(value: Any) -> str:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return str(value).strip()


def cpu_short(model: Any, width: int = 28) -> str:
    """A CPU model name without trademarks, clock and core count, at most ``width`` chars:
    ``"Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"`` -> ``"Intel Xeon Platinum 8375C"``."""
    text = _text(model)
    for pattern in _CPU_NOISE:
        text = re.sub(pattern, " ", text)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _runs(metadata: Mapping[str, Any]) -> list[Any]:
    """The ``runs`` entries of a directory's metadata ([] when absent or not a list)."""
    runs = metadata.get("runs")
    return runs if isinstance(runs, list) else []


def machine_facts(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """machine_id -> facts from a directory's metadata: the ``machines`` map, completed by
    the ``machine`` facts of each ``runs`` entry (the store writes both)."""
    out: dict[str, dict[str, Any]] = {}
    runs = _runs(metadata)
    for entry in [*runs, metadata]:
        if isinstance(entry, Mapping) and isinstance(entry.get("machine"), Mapping):
            mid = _text(entry.get("machine_id"))
            if mid:
                out.setdefault(mid, dict(entry["machine"]))
    machines = metadata.get("machines")
    if isinstance(machines, Mapping):
        for mid, facts in machines.items():
            if isinstance(facts, Mapping):
                out[str(mid)] = {**out.get(str(mid), {}), **facts}
    return out


def machine_label(machine_id: Any, facts: Mapping[str, Any] | None = None) -> str:
    """Short label of a machine: ``"AMD EPYC 7B13 (3f2a9c1b)"`` (CPU model and the first
    :data:`ID_PREFIX` hex digits of its id), ``"machine 3f2a9c1b"`` without a CPU model,
    :data:`UNKNOWN_MACHINE` without an id."""
    mid = _text(machine_id)
    if not mid:
        return UNKNOWN_MACHINE
    cpu = cpu_short((facts or {}).get("cpu_model"))
    return f"{cpu} ({mid[:ID_PREFIX]})" if cpu else f"machine {mid[:ID_PREFIX]}"


def _code_times(table: pd.DataFrame, metadata: Mapping[str, Any]) -> dict[tuple[str, str], tuple]:
    """(machine_id, code_id) -> sort key, newest last: latest ``finished_at`` of its rows,
    latest start of a metadata run with that code, last position in the table."""
    runs = _runs(metadata)
    started: dict[tuple[str, str], str] = {}
    for entry in runs:
        if isinstance(entry, Mapping):
            key = (_text(entry.get("machine_id")), _text(entry.get("code_id")))
            started[key] = max(started.get(key, ""), _text(entry.get("start_time")))
    finished = table["finished_at"] if "finished_at" in table else pd.Series("", table.index)
    out: dict[tuple[str, str], tuple] = {}
    for pos, (mid, cid, when) in enumerate(
        zip(table["machine_id"].map(_text), table["code_id"].map(_text), finished.map(_text),
            strict=True)
    ):  # fmt: skip
        last = out.get((mid, cid), ("", "", -1))
        out[(mid, cid)] = (max(last[0], when), started.get((mid, cid), ""), pos)
    return out


def newest_code(
    table: pd.DataFrame, metadata: Mapping[str, Any]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Rows of the newest ``code_id`` on each machine, and what was left out.

    The newest code of a machine is the one whose rows finished last (``finished_at``), then
    whose run started last (metadata), then whose row comes last in the table. Rows without
    a machine_id are kept as they are. Returns the kept rows (same columns, original order)
    and one ``{"machine_id", "code_id", "rows", "newest"}`` per superseded code version.
    """
    for col in ("machine_id", "code_id"):
        if col not in table:
            return table, []
    times = _code_times(table, metadata)
    mids = table["machine_id"].map(_text)
    cids = table["code_id"].map(_text)
    keep = pd.Series(True, index=table.index)
    dropped: list[dict[str, Any]] = []
    for mid in sorted(set(mids) - {""}):
        codes = sorted({c for m, c in times if m == mid}, key=lambda c: times[(mid, c)])
        for old in codes[:-1]:
            mask = (mids == mid) & (cids == old)
            keep &= ~mask
            row = {"machine_id": mid, "code_id": old, "rows": int(mask.sum())}
            dropped.append({**row, "newest": codes[-1]})
    return table[keep], dropped


def machines_table(runs: Sequence[Any], df: pd.DataFrame) -> pd.DataFrame:
    """One row per (directory, machine) of the report: the series label, directory,
    machine_id, CPU, logical CPUs, memory, OS, Python/NumPy/Numba versions, the kernels the
    backends chose there (the rows' ``kernel`` column), code_id(s) kept,
    rows, and rows of older code left out.

    ``runs`` are :class:`lshbench.report.analysis.Run`; ``df`` is the prepared frame (its
    ``dir``, ``run``, ``machine_id`` and ``code_id`` columns).
    """
    rows = []
    for run in runs:
        facts = machine_facts(run.metadata)
        legacy_cpu = run.metadata.get("cpu") if isinstance(run.metadata, Mapping) else None
        mine = df[df["dir"] == run.label]
        for label, g in mine.groupby("run", sort=False):
            mid = _text(g["machine_id"].iloc[0])
            f = facts.get(mid, {})
            cpu = _text(f.get("cpu_model"))
            if not mid and isinstance(legacy_cpu, Mapping) and legacy_cpu.get("model"):
                cpu = f"{legacy_cpu.get('model')} (metadata.json; rows carry no machine_id)"
            packages = f.get("packages")
            packages = packages if isinstance(packages, Mapping) else {}
            versions = ", ".join(
                f"{k} {v}" for k, v in (("python", f.get("python")),
                                         *((k, packages.get(k)) for k in ("numpy", "numba")))
                if v
            )  # fmt: skip
            old = [d for d in run.superseded if d["machine_id"] == mid]
            codes = ", ".join(sorted(set(g["code_id"].map(_text)) - {""}))
            kernels = g.get("kernel", pd.Series(index=g.index, dtype=object)).map(_text)
            chosen = sorted({f"{b}: {k}" for b, k in zip(g["backend"], kernels, strict=True) if k})
            rows.append({
                "series label": str(label), "directory": run.path,
                "machine_id": mid or "(not recorded)", "CPU": cpu,
                "logical CPUs": _text(f.get("logical_cpus")),
                "memory": f"{int(f['memory_mib']) / 1024:.1f} GiB" if f.get("memory_mib") else "",
                "OS": " ".join(_text(f.get(k)) for k in ("os", "kernel", "arch")).strip(),
                "versions": versions, "kernels": ", ".join(chosen),
                "code_id": codes or "(not recorded)", "rows": str(len(g)),
                "older code left out": ", ".join(f"{d['rows']} rows of {d['code_id']}"
                                                 for d in old),
            })  # fmt: skip
    return pd.DataFrame(rows)
