"""What hashing buys: LSH against its random and local baselines at the same key budget.

docs/design.md section 2b: ``method = random`` draws each round's buckets at random (same budget,
no locality), ``method = local`` attends to a window of positions of the same size. A
*pair* is an LSH point and a baseline point on the same run, input, L, backend, batch and
the same ``n_hashes``, ``chunk_len``, ``chunks_before``, ``chunks_after`` and
``weighting``: both see the same number of keys per query, the **key budget**
``n_hashes * chunk_len * (1 + chunks_before + chunks_after)`` (:func:`key_budget`).

Slots are not keys: LSH and random buckets repeat keys across rounds, so at the same slots
they see fewer distinct keys than a local window; the table states each method's
``keys_distinct``. The **oracle** (method ``oracle``, docs/design.md section 2b: each query's
k best keys) is the best any method with k keys per query can do; its rows carry an LSH
configuration and ``oracle_k`` (k = that configuration's distinct keys, or its slots) and
pair with every weighting of it (:data:`ORACLE_KEY`).

:func:`hashing_table` lists the pairs (error and time of each method, the error LSH saves
over each baseline, the oracle's error and the share of the possible gain LSH gets);
:func:`verdicts` says per input, in words generated from those numbers, whether LSH beats
random keys and a local window (:func:`judge` and its thresholds :data:`CUTS_BELOW`,
:data:`BETTER_BELOW`, :data:`WORSE_ABOVE`).

Works on the tidy points of :func:`lshbench.report.analysis.series_points`. pandas only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lshbench.report.analysis import COMMON_AXES, REFERENCE_LSH_BACKEND, canon
from lshbench.report.labels import plain
from lshbench.report.tradeoffs import error_metric

__all__ = [
    "BASELINES",
    "BETTER_BELOW",
    "CUTS_BELOW",
    "ORACLE_KEY",
    "PAIR_KEY",
    "SPREAD_OF",
    "WORSE_ABOVE",
    "hashing_table",
    "judge",
    "key_budget",
    "verdicts",
]

#: The baselines of docs/design.md section 2b and how the report names them.
BASELINES = {"random": "random keys", "local": "a local window"}
#: What a pair must share besides the run's scenario (the key budget follows from these).
PAIR_KEY = (
    "run_index", "run", *COMMON_AXES, "seqlen", "batch", "backend", "n_hashes", "chunk_len",
    "chunks_before", "chunks_after", "weighting",
)  # fmt: skip
#: What an oracle row shares with the LSH rows it bounds: all of :data:`PAIR_KEY` but the
#: backend (it runs none) and the weighting (it weights each key once, whatever LSH does).
ORACLE_KEY = tuple(c for c in PAIR_KEY if c not in ("backend", "weighting"))
#: Verdict thresholds on ``r = error(LSH) / error(baseline)``: r <= CUTS_BELOW "cuts"
#: (LSH at least 25 % lower), r <= BETTER_BELOW "slightly better", r > WORSE_ABOVE
#: "worse", otherwise "no better".
CUTS_BELOW = 0.75
BETTER_BELOW = 0.90
WORSE_ABOVE = 1 / 0.90


def key_budget(n_hashes: float, chunk_len: float, before: float, after: float) -> float:
    """Keys per query (with repeats) of a configuration: ``H * m * (1 + before + after)``."""
    return float(n_hashes * chunk_len * (1 + before + after))


def judge(lsh: float, other: float) -> str:
    """``"cuts"``, ``"better"``, ``"same"`` or ``"worse"``: how LSH's error compares with a
    baseline's (thresholds of this module; two zeros are ``"same"``)."""
    if other <= 0:
        return "same" if lsh <= 0 else "worse"
    r = lsh / other
    if r <= CUTS_BELOW:
        return "cuts"
    if r <= BETTER_BELOW:
        return "better"
    return "worse" if r > WORSE_ABOVE else "same"


def _num(x: float) -> str:
    """An error as text: two decimals, or two significant digits below 0.01."""
    return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2g}"


def _usable(points: pd.DataFrame, metric: str) -> pd.DataFrame:
    ok = (points["status"] == "ok") & ~points["exact"].astype(bool)
    ok &= ~points["short"].astype(bool) & np.isfinite(points[metric])
    return points[ok & np.isfinite(points["time_seq"])]


#: The methods whose error range the table keeps (``err_<m>_lo``, ``err_<m>_hi``).
SPREAD_OF = ("lsh", "random", "local", "oracle", "oracle_slots")


def _spread(method: str, point: pd.Series | None, metric: str) -> dict[str, float]:
    """``err_<method>_lo`` and ``_hi``: the smallest and largest ``metric`` over the rows of
    a point (rotation draws and input seeds); NaN without the point or the range."""
    out = {f"err_{method}_{end}": math.nan for end in ("lo", "hi")}
    if point is not None:
        for end in ("lo", "hi"):
            out[f"err_{method}_{end}"] = float(point.get(f"{metric}_{end}", math.nan))
    if method == "lsh":
        out["n_lsh"] = float(point.get("n_ok", math.nan)) if point is not None else math.nan
    return out


def _oracles(points: pd.DataFrame, metric: str) -> dict[tuple[tuple, str], pd.Series]:
    """Ok oracle points with a value of ``metric``, by (:data:`ORACLE_KEY` values,
    ``oracle_k``). They have no time, so they are never among :func:`_usable`'s points."""
    ok = (points["status"] == "ok") & (points["method"] == "oracle")
    ok &= ~points["short"].astype(bool) & np.isfinite(points[metric])
    found = points[ok]
    keys = map(tuple, found[list(ORACLE_KEY)].map(canon).to_numpy())
    return {(key, str(r["oracle_k"])): r for key, (_, r) in zip(keys, found.iterrows(),
                                                               strict=True)}  # fmt: skip


def _pick_backend(lsh: pd.DataFrame, partners: set[tuple]) -> dict[int, str]:
    """Per run, the LSH backend with the most pairs (then the reference, then by name)."""
    out = {}
    for run_index, g in lsh.groupby("run_index", sort=True):
        counts: dict[str, int] = {}
        for backend, key in zip(g["backend"], g["pair"], strict=True):
            counts[backend] = counts.get(backend, 0) + (key in partners)
        ranked = sorted(counts, key=lambda b: (-counts[b], b != REFERENCE_LSH_BACKEND, b))
        if counts[ranked[0]]:
            out[int(run_index)] = ranked[0]
    return out


def hashing_table(points: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """LSH points with a random or local baseline at the same key budget, one row each.

    ``metric`` defaults to :func:`~lshbench.report.tradeoffs.error_metric`. One backend per
    run (the one with the most pairs). Columns: the scenario (``run_index``, ``run``,
    ``input``, ``input_kind``, ``causal``, ..., ``seqlen``), ``backend``, ``n_hashes``,
    ``chunk_len``, ``chunks_before``, ``chunks_after``, ``weighting``, ``nb``, ``keys``
    (key budget, the slots per query), ``metric``; for each method m of lsh / random /
    local: ``err_m``, ``time_m`` and ``dist_m`` (its ``keys_distinct``; NaN without that
    baseline); ``gain_random`` = err_random - err_lsh and ``gain_local`` (positive: LSH is
    better); ``err_oracle`` (the oracle's error with k = LSH's distinct keys) and
    ``err_oracle_slots`` (k = the slots), NaN without oracle rows; ``oracle_share`` =
    gain_random / (err_random - err_oracle), the share of the gain over random keys that
    the best k keys would give which LSH gets (1: as good as the oracle; NaN when the
    oracle gains nothing); the median over the rows of a point (rotation draws,
    ``--rotation-seeds``, and input seeds) is each error, ``err_<m>_lo`` / ``err_<m>_hi``
    their range for m in :data:`SPREAD_OF`, ``n_lsh`` LSH's rows. Sorted by run, input, L,
    configuration.
    """
    metric = metric or error_metric(points)
    pts = _usable(points, metric).copy()
    pts["pair"] = list(map(tuple, pts[list(PAIR_KEY)].map(canon).to_numpy()))
    pts["bound"] = list(map(tuple, pts[list(ORACLE_KEY)].map(canon).to_numpy()))
    oracles = _oracles(points, metric)
    base = {m: {r["pair"]: r for _, r in pts[pts["method"] == m].iterrows()} for m in BASELINES}
    lsh = pts[pts["method"] == "lsh"]
    backends = _pick_backend(lsh, set().union(*(set(b) for b in base.values())))
    lsh = lsh[[backends.get(int(r)) == b for r, b in zip(lsh["run_index"], lsh["backend"],
                                                        strict=True)]]  # fmt: skip
    rows = []
    for _, p in lsh.iterrows():
        if not any(p["pair"] in b for b in base.values()):
            continue
        row: dict[str, Any] = {c: p[c] for c in (*PAIR_KEY, "input_kind", "nb", "series_order")}
        row.update(metric=metric, err_lsh=p[metric], time_lsh=p["time_seq"])
        row["dist_lsh"] = p["keys_distinct"]
        row.update(_spread("lsh", p, metric))
        row["keys"] = key_budget(*(p[c] for c in ("n_hashes", "chunk_len", "chunks_before",
                                                  "chunks_after")))  # fmt: skip
        for m, b in base.items():
            hit = b.get(p["pair"])
            row[f"err_{m}"] = hit[metric] if hit is not None else math.nan
            row[f"time_{m}"] = hit["time_seq"] if hit is not None else math.nan
            row[f"dist_{m}"] = hit["keys_distinct"] if hit is not None else math.nan
            row[f"gain_{m}"] = row[f"err_{m}"] - row["err_lsh"]
            row.update(_spread(m, hit, metric))
        for budget, col in (("distinct", "err_oracle"), ("slots", "err_oracle_slots")):
            hit = oracles.get((p["bound"], budget))
            row[col] = hit[metric] if hit is not None else math.nan
            row.update(_spread(col[len("err_") :], hit, metric))
        possible = row["err_random"] - row["err_oracle"]
        row["oracle_share"] = row["gain_random"] / possible if possible > 0 else math.nan
        rows.append(row)
    cols = [
        *PAIR_KEY,
        "input_kind",
        "nb",
        "series_order",
        "keys",
        "metric",
        "err_lsh",
        "time_lsh",
        "dist_lsh",
        *(f"{k}_{m}" for m in BASELINES for k in ("err", "time", "gain", "dist")),
        "err_oracle",
        "err_oracle_slots",
        "oracle_share",
        *(f"err_{m}_{end}" for m in SPREAD_OF for end in ("lo", "hi")),
        "n_lsh",
    ]
    table = pd.DataFrame(rows, columns=cols)
    order = ["run_index", "input", "seqlen", "keys", "weighting", "series_order"]
    return table.sort_values(order, kind="mergesort").reset_index(drop=True)


_MAIN = {
    "cuts": "LSH cuts {metric} from {other} ({name}) to {lsh} at the same key budget",
    "better": "LSH is only slightly better than {name} at the same key budget "
              "({metric} {lsh} vs {other})",
    "same": "LSH is no better than {name} at the same key budget ({metric} {lsh} vs {other})",
    "worse": "LSH is worse than {name} at the same key budget ({metric} {lsh} vs {other})",
}  # fmt: skip
_SECOND = {"cuts": "far better", "better": "slightly better", "same": "no better",
           "worse": "worse"}  # fmt: skip


def _representative(g: pd.DataFrame) -> pd.Series:
    """The pair a verdict quotes: largest L, then largest key budget, then the default
    weighting, preferring pairs that have a random baseline."""
    has_random = np.isfinite(g["err_random"])
    h = g[has_random] if has_random.any() else g
    h = h.assign(_default=(h["weighting"] != "multiplicity"))
    return h.sort_values(["seqlen", "keys", "_default"], ascending=[False, False, True],
                         kind="mergesort").iloc[0]  # fmt: skip


def _sentence(input_name: str, pick: pd.Series, g: pd.DataFrame) -> str:
    metric = pick["metric"]
    first = "random" if math.isfinite(pick["err_random"]) else "local"
    other = "local" if first == "random" else None
    word = judge(pick["err_lsh"], pick[f"err_{first}"])
    text = f"On {input_name} input " + _MAIN[word].format(
        metric=metric, lsh=_num(pick["err_lsh"]), other=_num(pick[f"err_{first}"]),
        name=BASELINES[first])  # fmt: skip
    if other and math.isfinite(pick[f"err_{other}"]):
        second = _SECOND[judge(pick["err_lsh"], pick[f"err_{other}"])]
        text += (f"; against {BASELINES[other]} of the same size ({metric} "
                 f"{_num(pick[f'err_{other}'])}) it is {second}")  # fmt: skip
    where = (f"L={plain(pick['seqlen'])}, H={plain(pick['n_hashes'])}, "
             f"m={plain(pick['chunk_len'])}, {pick['weighting']} weighting, "
             f"{plain(pick['keys'])} keys per query")  # fmt: skip
    pairs = g[np.isfinite(g[f"err_{first}"])]
    wins = sum(judge(a, b) == "cuts" for a, b in zip(pairs["err_lsh"], pairs[f"err_{first}"],
                                                       strict=True))  # fmt: skip
    text = (
        f"{text} ({where}). Over its {len(pairs)} pair(s) with {BASELINES[first]}, LSH "
        f"is at least {100 * (1 - CUTS_BELOW):.0f} % lower in {wins}."
    )
    rows = pick.get("n_lsh", math.nan)
    if math.isfinite(rows) and rows > 1:  # rotation draws or input seeds folded
        text += (
            f" LSH's {metric} there is the median of {plain(rows)} rows (rotation draws and "
            f"input seeds), range {_num(pick['err_lsh_lo'])}-{_num(pick['err_lsh_hi'])}."
        )
    if math.isfinite(pick.get("err_oracle", math.nan)):  # a table with oracle rows
        text += (
            f" The best {plain(round(pick['dist_lsh']))} keys per query (the oracle, as many "
            f"as LSH's {pick['dist_lsh']:.1f} distinct keys) reach {metric} "
            f"{_num(pick['err_oracle'])}"
        )
        share = pick["oracle_share"]
        text += (
            f": LSH gets {100 * share:.0f} % of the gain over random keys that the best keys give."
            if math.isfinite(share)
            else "."
        )
    return text


def verdicts(table: pd.DataFrame, several_runs: bool = False) -> list[str]:
    """One sentence per (run, input) of :func:`hashing_table`, generated from its numbers:
    how LSH compares with random keys (and a local window) at the largest L and key budget
    measured, and in how many pairs LSH is clearly better. Run labels lead when
    ``several_runs``."""
    out = []
    for (_, run, input_name), g in table.groupby(["run_index", "run", "input"], sort=True):
        prefix = f"[{run}] " if several_runs else ""
        out.append(prefix + _sentence(str(input_name), _representative(g), g))
    return out
