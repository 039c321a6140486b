"""The report's opening section: the answer, generated from the rows.

For each run, input (a captured model's heads are an input, ``file:...``) and the other
scenario axes that vary, :func:`summary_table` finds at each measured L and error budget
(:data:`~lshbench.report.tradeoffs.BUDGETS`, attn_tv 0.05 / 0.10 / 0.20; the rel_err budgets
for tables older than attn_tv):

* the **pick**: the fastest configuration whose error (the median over its rows: rotation
  draws and input seeds) is within the budget. Every configuration that can run competes,
  as in :func:`~lshbench.report.tradeoffs.budget_picks`: LSH, its random and local
  baselines, and the exact backends with error 0; never the oracle. Its time, its speed-up
  over the exact baseline (the fastest exact backend at that L,
  :func:`lshbench.report.scaling.exact_baselines`, named with its GFLOP/s) and the spread of
  its error (min-max over its rows, or "1 draw").
* whether **LSH beats the best exact attention** there: the fastest configuration of method
  ``lsh`` within the budget is faster than the exact baseline (strictly: time per sequence
  ``t_lsh < t_exact``).

:func:`claim` turns one group of that table into one sentence: for each budget, from which L
LSH beats the exact baseline ("from L = 2048 (not at 1024)"), at which L when the wins do not
run to the largest L, "at every measured L", or "never in the measured range"; with the L
range measured, the rows per configuration and the spread of the error it quotes.
:func:`glance_cell` gives the same verdict in short, one cell of the overview that opens the
summary when it holds more than one group. :func:`section_summary` writes them into the
report document. How to read them:
docs/report.md.

pandas only; works on the tidy points of :func:`lshbench.report.analysis.series_points`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lshbench.report.analysis import COMMON_AXES, canon
from lshbench.util import fmt_length

__all__ = [
    "GROUP_KEY",
    "BudgetVerdict",
    "budget_verdict",
    "claim",
    "glance_cell",
    "section_summary",
    "spread_text",
    "summary_table",
]

#: One table and one sentence of the summary: a run's scenario without L.
GROUP_KEY = ("run_index", "run", *COMMON_AXES)
_SCENARIO = (*GROUP_KEY, "seqlen")
_PICK = ("series", "exact", "time_seq", "error", "error_lo", "error_hi", "n_rows")


def _fastest_within(g: pd.DataFrame, budget: float) -> pd.Series | None:
    """The fastest row of ``g`` (candidates of one scenario) with ``error <= budget``; ties
    go to the earlier series."""
    ok = g[g["error"] <= budget]
    if ok.empty:
        return None
    return ok.sort_values(["time_seq", "series_order"], kind="mergesort").iloc[0]


def _pick_fields(prefix: str, pick: pd.Series | None, metric: str) -> dict[str, Any]:
    if pick is None:
        return {f"{prefix}{k}": v for k, v in zip(_PICK, ("", False, *[math.nan] * 4, 0),
                                                     strict=True)}  # fmt: skip
    return {
        f"{prefix}series": str(pick["series"]),
        f"{prefix}exact": bool(pick["exact"]),
        f"{prefix}time_seq": float(pick["time_seq"]),
        f"{prefix}error": float(pick["error"]),
        f"{prefix}error_lo": float(pick.get(f"{metric}_lo", math.nan)),
        f"{prefix}error_hi": float(pick.get(f"{metric}_hi", math.nan)),
        f"{prefix}n_rows": int(pick["n_ok"]) if math.isfinite(pick["n_ok"]) else 1,
    }


def summary_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (scenario, L, budget) of ``points``: the pick and LSH's best.

    Columns: :data:`GROUP_KEY`, ``seqlen``, ``group`` (the values of :data:`GROUP_KEY` as
    one text: the summary's table the row belongs to), ``metric`` (attn_tv, or rel_err for a run
    whose table predates it), ``budget``; the pick: ``series`` ("" when nothing meets the
    budget), ``exact`` (the pick is an exact backend), ``time_seq`` (s per sequence),
    ``error`` (median over its rows), ``error_lo`` / ``error_hi`` (their min-max),
    ``n_rows`` (its ok rows: rotation draws x input seeds, x heads for captured inputs),
    ``speedup`` (``baseline_seq / time_seq``); the same for the fastest configuration of
    method ``lsh`` within the budget, prefixed ``lsh_``; ``beats`` (``lsh_time_seq <
    baseline_seq``; False when LSH meets no budget, NaN without an exact baseline);
    ``baseline``, ``baseline_seq``, ``baseline_gflops`` (the exact baseline at that L);
    ``lowest_series``, ``lowest_error``, its ``lowest_error_lo`` / ``_hi`` and
    ``lowest_n_rows`` (the LSH configuration with the lowest error at that L: what the
    summary quotes when LSH meets no budget); ``draws_lo`` / ``draws_hi``: the fewest and
    most rows of an LSH configuration at that L (0 without LSH). Sorted by run, scenario,
    L and budget.
    """
    from lshbench.report.tradeoffs import budgets_for, candidates, error_metric

    rows = []
    for _, run in points.groupby("run_index", sort=True):
        metric = error_metric(run)
        budgets = budgets_for(metric)
        c = candidates(run, metric)
        keys = c[list(_SCENARIO)].map(canon).assign(run_index=c["run_index"], seqlen=c["seqlen"])
        for _, index in sorted(keys.groupby(list(_SCENARIO), sort=True).groups.items()):
            g = c.loc[index].sort_values(["time_seq", "series_order"], kind="mergesort")
            lsh = g[~g["exact"].astype(bool) & (g["method"] == "lsh")]
            lowest = _lowest(lsh, metric)
            lowest["draws_lo"] = int(lsh["n_ok"].min()) if not lsh.empty else 0
            lowest["draws_hi"] = int(lsh["n_ok"].max()) if not lsh.empty else 0
            first = g.iloc[0]
            base = {col: first[col] for col in _SCENARIO}
            base["group"] = "|".join(canon(first[col]) for col in GROUP_KEY)
            base.update(metric=metric, baseline=str(first["baseline"]))
            base.update(baseline_seq=float(first["baseline_seq"]))
            base.update(baseline_gflops=float(first["baseline_gflops"]))
            base.update(lowest)
            for budget in budgets:
                row = dict(base, budget=budget)
                row.update(_pick_fields("", _fastest_within(g, budget), metric))
                row.update(_pick_fields("lsh_", _fastest_within(lsh, budget), metric))
                for p in ("", "lsh_"):
                    row[f"{p}speedup"] = row["baseline_seq"] / row[f"{p}time_seq"]
                if not math.isfinite(row["baseline_seq"]):
                    row["beats"] = math.nan
                else:
                    row["beats"] = bool(row["lsh_time_seq"] < row["baseline_seq"])
                rows.append(row)
    cols = [*_SCENARIO, "group", "metric", "budget", *_PICK, "speedup"]
    cols += [f"lsh_{k}" for k in (*_PICK, "speedup")]
    cols += ["beats", "baseline", "baseline_seq", "baseline_gflops", *_LOWEST]
    cols += ["draws_lo", "draws_hi"]
    return pd.DataFrame(rows, columns=cols)


_LOWEST = ("lowest_series", "lowest_error", "lowest_error_lo", "lowest_error_hi", "lowest_n_rows")


def _lowest(lsh: pd.DataFrame, metric: str) -> dict[str, Any]:
    if lsh.empty:
        return dict(zip(_LOWEST, ("", math.nan, math.nan, math.nan, 0), strict=True))
    r = lsh.sort_values(["error", "time_seq"], kind="mergesort").iloc[0]
    values = (str(r["series"]), float(r["error"]), float(r.get(f"{metric}_lo", math.nan)),
              float(r.get(f"{metric}_hi", math.nan)), int(r["n_ok"]))  # fmt: skip
    return dict(zip(_LOWEST, values, strict=True))


# --------------------------------------------------------------------------- text


def _ms(seconds: float) -> str:
    """A time per sequence in milliseconds: three significant digits, whole milliseconds
    from 1000 ms on (``8.07 ms``, ``1563 ms``)."""
    if not math.isfinite(seconds):
        return "-"
    ms = 1e3 * seconds
    return f"{ms:.0f} ms" if ms >= 1000 else f"{ms:.3g} ms"


def _err(x: float) -> str:
    """An error as text: three decimals, or two significant digits below 0.001."""
    if not math.isfinite(x):
        return "-"
    return f"{x:.3f}" if abs(x) >= 0.001 or x == 0 else f"{x:.2g}"


def spread_text(error: float, lo: float, hi: float, n_rows: int, unit: str = "draws") -> str:
    """``0.090 (0.085-0.095, 3 draws)``, or ``0.090 (1 draw)``: a median error with its
    min-max over the rows it folds, and their count."""
    if n_rows <= 1:
        return f"{_err(error)} (1 {unit[:-1]})"
    rng = f"{_err(lo)}-{_err(hi)}" if math.isfinite(lo) and math.isfinite(hi) else "range -"
    return f"{_err(error)} ({rng}, {n_rows} {unit})"


def _ls(values: Sequence[float]) -> str:
    return ", ".join(fmt_length(v) for v in values)


def _where(wins: list[float], judged: list[float]) -> str:
    """Where a claim holds among the measured L: "at every measured L", "from L = 2048 (not
    at 1024)", "at L = 1024, 4096 (not at 2048)"."""
    losses = [L for L in judged if L not in wins]
    if not losses:
        return "at every measured L"
    if wins == judged[len(judged) - len(wins) :]:  # the wins run to the largest L
        return f"from L = {fmt_length(wins[0])} (not at {_ls(losses)})"
    return f"at L = {_ls(wins)} (not at {_ls(losses)})"


@dataclass(frozen=True)
class BudgetVerdict:
    """Where LSH beats the exact baseline within one budget, over one group's L.

    ``judged``: the L with an exact baseline; ``wins``: those where the fastest LSH
    configuration within the budget is faster than it; ``met``: those where an LSH
    configuration meets the budget at all; ``row``: the row of :func:`summary_table` a
    reader is shown: the largest win, else the largest L where LSH meets the budget (and is
    slower), else the largest L (with the lowest error LSH reached)."""

    metric: str
    judged: list[float]
    wins: list[float]
    met: list[float]
    row: pd.Series


def budget_verdict(g: pd.DataFrame) -> BudgetVerdict:
    """The :class:`BudgetVerdict` of ``g``: one group's rows of :func:`summary_table` at one
    budget, sorted by L."""
    judged = [float(L) for L, b in zip(g["seqlen"], g["beats"], strict=True) if pd.notna(b)]
    wins = [float(L) for L, b in zip(g["seqlen"], g["beats"], strict=True)
            if pd.notna(b) and bool(b)]  # fmt: skip
    met_rows = g[(g["lsh_series"] != "") & g["beats"].notna()]
    if wins:
        row = g[g["seqlen"] == wins[-1]].iloc[0]
    elif not met_rows.empty:
        row = met_rows.iloc[-1]
    else:
        row = g.iloc[-1]
    met = [float(L) for L in met_rows["seqlen"]]
    return BudgetVerdict(str(g["metric"].iloc[0]), judged, wins, met, row)


def _budget_claim(g: pd.DataFrame, labels: dict[str, str], unit: str) -> str:
    """The part of :func:`claim` for one budget after "within attn_tv 0.10 "; ``g`` holds
    its rows, sorted by L. ``{it}`` stands for the budget(s)."""
    v = budget_verdict(g)
    r = v.row
    if v.wins:
        spread = spread_text(r["lsh_error"], r["lsh_error_lo"], r["lsh_error_hi"],
                             int(r["lsh_n_rows"]), unit)  # fmt: skip
        name = labels.get(r["lsh_series"], r["lsh_series"])
        return (
            f"{_where(v.wins, v.judged)}, e.g. at L = {fmt_length(v.wins[-1])} {name} runs "
            f"{r['lsh_speedup']:.2f}x faster than {r['baseline']} with {v.metric} {spread}"
        )
    text = "never in the measured range"
    if v.met:  # LSH meets the budget somewhere, but is slower there
        return (
            f"{text}: LSH meets {{it}} {_where(v.met, v.judged)} but is slower "
            f"({r['lsh_speedup']:.2f}x at L = {fmt_length(r['seqlen'])})"
        )
    if not r["lowest_series"]:
        return f"{text}: no LSH configuration was measured"
    value = spread_text(r["lowest_error"], r["lowest_error_lo"], r["lowest_error_hi"],
                        int(r["lowest_n_rows"]), unit)  # fmt: skip
    return (
        f"{text}: no LSH configuration meets {{it}} (lowest {v.metric} at L = "
        f"{fmt_length(r['seqlen'])}: {value})"
    )


def glance_cell(g: pd.DataFrame) -> str:
    """The overview's cell for one group at one budget (``g`` as for :func:`budget_verdict`): the
    same verdict as the sentence, short: "yes from L = 2048 (not at 1024): 3.10x at L =
    4096", "no: slower where it meets it (0.80x at L = 4096)", "no: lowest attn_tv 0.324 at
    L = 4096", "no exact row"."""
    v = budget_verdict(g)
    r = v.row
    if not v.judged:
        return "no exact row"
    if v.wins:
        return (
            f"yes {_where(v.wins, v.judged)}: {r['lsh_speedup']:.2f}x at L = "
            f"{fmt_length(v.wins[-1])}"
        )
    if v.met:
        where = fmt_length(r["seqlen"])
        return f"no: slower where it meets it ({r['lsh_speedup']:.2f}x at L = {where})"
    if not r["lowest_series"]:
        return "no LSH rows"
    return f"no: lowest {v.metric} {_err(r['lowest_error'])} at L = {fmt_length(r['seqlen'])}"


def claim(group: pd.DataFrame, labels: dict[str, str], unit: str = "draws") -> str:
    """One sentence for one group of :func:`summary_table` (one run, input and scenario):
    per budget, where LSH beats the best exact attention in the measured L range ("from L =
    2048 (not at 1024)", "at every measured L", "never in the measured range"), with the L
    range, the rows per LSH configuration and the spread of each error it quotes. ``unit``
    names the rows (``draws``; ``rows`` for captured heads)."""
    first = group.iloc[0]
    lengths = sorted(set(group["seqlen"]))
    per = ""
    if group["draws_hi"].max() > 0:
        lo, hi = int(group["draws_lo"].min()), int(group["draws_hi"].max())
        count = str(lo) if lo == hi else f"{lo}-{hi}"
        per = f"; {count} {unit[:-1] if hi == 1 else unit} per LSH configuration"
        if unit == "rows":
            per += " (captured heads x rotation draws)"
    span = f"L = {_lengths_text(lengths)}"
    span += f", {len(lengths)} lengths" if len(lengths) > 1 else " only"
    head = f"On {first['input']} input ({span}{per})"
    if not group["beats"].notna().any():
        return f"{head} there is no exact row to compare LSH with (dense, torch-sdpa)."
    exact = "/".join(sorted(set(group["baseline"]) - {""}))
    said: dict[str, list[float]] = {}  # budgets that read the same share one clause
    for budget, g in group.groupby("budget", sort=True):
        said.setdefault(_budget_claim(g.sort_values("seqlen"), labels, unit), []).append(budget)
    parts = []
    for text, budgets in said.items():
        values = [f"{b:.2f}" for b in budgets]
        joined = values[0] if len(values) == 1 else ", ".join(values[:-1]) + f" and {values[-1]}"
        it = "it" if len(values) == 1 else "any of them"
        parts.append(f"within {first['metric']} {joined} " + text.replace("{it}", it))
    return f"{head}, LSH beats the best exact attention ({exact}) " + "; ".join(parts) + "."


def _cell(r: pd.Series, labels: dict[str, str], unit: str) -> str:
    if not r["series"]:
        lowest = r["lowest_series"]
        if not lowest:
            return "none"
        value = f"{r['metric']} {_err(r['lowest_error'])}"
        return f"none (lowest: {labels.get(lowest, lowest)}, {value})"
    name = labels.get(r["series"], r["series"])
    speed = f", {r['speedup']:.2f}x" if math.isfinite(r["speedup"]) else ""
    if r["exact"]:
        return f"{name} (exact): {_ms(r['time_seq'])}{speed}"
    spread = spread_text(r["error"], r["error_lo"], r["error_hi"], int(r["n_rows"]), unit)
    return f"{name}: {_ms(r['time_seq'])}{speed}, {r['metric']} {spread}"


def _baseline(r: pd.Series) -> str:
    if not r["baseline"]:
        return "-"
    text = f"{r['baseline']} {_ms(r['baseline_seq'])}"
    if math.isfinite(r["baseline_gflops"]):
        text += f" ({r['baseline_gflops']:.1f} GFLOP/s)"
    return text


def _titles(table: pd.DataFrame, several_runs: bool) -> dict[str, str]:
    """A heading per group: the input, the run when there are several, and the other
    scenario axes that vary."""
    varying = [c for c in COMMON_AXES[1:] if table[c].map(canon).nunique() > 1]
    out = {}
    for key, g in table.groupby("group", sort=False):
        r = g.iloc[0]
        title = f"[{r['run']}] " if several_runs else ""
        title += str(r["input"])
        extra = [f"{c}={canon(r[c])}" for c in varying]
        out[key] = title + (f" ({', '.join(extra)})" if extra else "")
    return out


def section_summary(
    doc: Any, points: pd.DataFrame, several_runs: bool, head_inputs: frozenset[str] = frozenset()
) -> None:
    """The summary: a paragraph of rules, then per group its sentence (:func:`claim`) and a
    table with L as rows and the budgets as columns. ``head_inputs`` names inputs whose rows
    are captured model heads (their rows count heads too)."""
    from lshbench.report.analysis import compact_labels
    from lshbench.report.tradeoffs import candidates

    table = summary_table(points)
    if table.empty:
        doc.p("*No ok row with both a time and an error: nothing to summarize.*")
        return
    doc.p(
        "At each measured L and error budget, the fastest configuration whose error (the "
        "median over its rows: rotation draws and input seeds) is within the budget: LSH, "
        "its random and local baselines and the exact backends (error 0) compete, never the "
        "oracle. Each cell: time per sequence, speed-up over the exact baseline (the fastest "
        "exact backend at that L, named with its GFLOP/s), the error with its min-max over "
        "the rows. The sentence says where the fastest LSH configuration within the budget "
        "is faster than the exact baseline. All configurations: the appendix."
    )
    labels: dict[str, str] = {}
    for _, g in candidates(points).groupby("run_index", sort=True):
        labels |= compact_labels(g, drop=("run", "input"))
    titles = _titles(table, several_runs)
    if table["group"].nunique() > 1:
        _glance(doc, table, titles)
    for key, g in table.groupby("group", sort=False):
        unit = "rows" if str(g["input"].iloc[0]) in head_inputs else "draws"
        doc.h(3, titles[key])
        doc.p(claim(g, labels, unit))
        metric = str(g["metric"].iloc[0])
        budgets = sorted(set(g["budget"]))
        header = ["L", "exact baseline", *(f"{metric} <= {b:.2f}" for b in budgets)]
        rows = []
        for L, h in g.groupby("seqlen", sort=True):
            h = h.sort_values("budget")
            cells = [_cell(r, labels, unit) for _, r in h.iterrows()]
            rows.append([fmt_length(L), _baseline(h.iloc[0]), *cells])
        doc.table(header, rows)


def _glance(doc: Any, table: pd.DataFrame, titles: dict[str, str]) -> None:
    """The overview above the per-input sections: one row per group, one cell per budget
    (:func:`glance_cell`), so that many inputs read at a glance."""
    doc.p(
        "At a glance, one row per input: does the fastest LSH configuration within each "
        "budget beat the exact baseline, from which L, and by how much at the largest L "
        "where it does (or why not)? The sections below give each input's numbers."
    )
    for metric, part in table.groupby("metric", sort=False):  # older tables: rel_err
        budgets = sorted(set(part["budget"]))
        header = ["input", "L", *(f"{metric} <= {b:.2f}" for b in budgets)]
        rows = []
        for key, g in part.groupby("group", sort=False):
            by_budget = {b: h.sort_values("seqlen") for b, h in g.groupby("budget")}
            cells = [glance_cell(by_budget[b]) if b in by_budget else "-" for b in budgets]
            rows.append([titles[key], _lengths_text(sorted(set(g["seqlen"]))), *cells])
        doc.table(header, rows)


def _lengths_text(lengths: Sequence[float]) -> str:
    """Sorted sequence lengths as ``1024..4096``, or ``512`` when there is one."""
    first, last = fmt_length(lengths[0]), fmt_length(lengths[-1])
    return first if len(lengths) == 1 else f"{first}..{last}"
