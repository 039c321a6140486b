"""Which exact peers a run measured, and why not: the report says when the exact baseline of
its speed-ups is ``dense`` because torch SDPA was not installed or not in the run.

A sweep runs the exact peers of ``lshbench.sweep.spec.EXACT_PEERS`` (``torch-sdpa``) where
they are installed unless ``--backend`` leaves them out, and stores in its run entry why
each did or did not run (``exact_peers``, ``lshbench.sweep.spec.exact_peers``).

pandas only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lshbench.report.analysis import Run
from lshbench.report.metadata import run_entries

__all__ = ["EXACT_PEERS", "exact_peer_notes"]

#: ``lshbench.sweep.spec.EXACT_PEERS``, repeated here because the report does not import
#: the sweep (layer contract); a test keeps the two equal
EXACT_PEERS = ("torch-sdpa",)


def _why(entries: list[Mapping[str, Any]], peer: str) -> str:
    """Why ``peer`` has no ok row, from the run entries that measured the rows."""
    said = [e.get("exact_peers", {}).get(peer) for e in entries]
    said = [s for s in said if isinstance(s, str)]
    missing = [s for s in said if s.startswith("not installed")]
    if missing:
        return f"{peer} was not installed where the sweep ran ({missing[0]})"
    if any(s == "left out by --backend" for s in said):
        return f"{peer} was not in the run (--backend left it out)"
    if any(s == "in the run" for s in said):
        return f"{peer} ran but measured no ok row here"
    return f"{peer} is not in the run (its metadata predates the record of why)"


def exact_peer_notes(runs: Sequence[Run], df: pd.DataFrame) -> list[str]:
    """One sentence per report run that has exact rows but none of an exact peer: which
    exact backends the baseline comes from and why the peer is missing. ``df`` is
    :func:`lshbench.report.analysis.prepare`'s frame."""
    entries = {run.label: run_entries(run.metadata) for run in runs}
    several = df["run"].nunique() > 1
    out = []
    for label, g in df.groupby("run", sort=False):
        exact = g[g["exact"].astype(bool) & (g["status"] == "ok")]
        names = sorted(set(exact["backend"]))
        if not names:
            continue
        known = entries.get(str(g["dir"].iloc[0]), {})
        mine = [known[i] for i in sorted(set(g["run_id"])) if i in known]
        whys = [_why(mine, peer) for peer in EXACT_PEERS if peer not in names]
        if whys:
            prefix = f"[{label}] " if several else ""
            out.append(f"{prefix}The exact baseline is {'/'.join(names)}: " + "; ".join(whys) + ".")
    return out
