"""Captured model heads: how the methods fare head by head (rows with ``layer`` and ``head``).

A sweep of a per-head capture (``lshbench capture`` of a BERT or GPT-2 model, then
``lshbench sweep --input file:X.npz``) has one row per head, configuration and backend. The
other sections show medians over the heads; this one keeps the distribution:

* :func:`head_table`: one row per (run, layer, head, configuration) of one LSH backend, with
  the head's exact row entropy and ``attn_tv``;
* :func:`share_within`: per configuration and method, the share of heads whose ``attn_tv``
  is within each of :data:`TV_THRESHOLDS`;
* :func:`head_winners`: per head at one budget (H, chunk length, weighting), ``attn_tv`` of
  lsh, random and local side by side, and whether hashing helps it: a **content head**
  (LSH beats the local window of the same key budget) or a **positional head** (the local
  window does at least as well);
* :func:`figure_heads` and :func:`figure_lsh_vs_local` draw them.

pandas and matplotlib only; reads the prepared frame of :func:`lshbench.report.analysis.
prepare`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lshbench.report.analysis import REFERENCE_LSH_BACKEND
from lshbench.report.columns import METHOD_ORDER
from lshbench.report.plotting import WIDTH, Plot, Skipped

__all__ = [
    "TV_THRESHOLDS",
    "figure_heads",
    "figure_lsh_vs_local",
    "head_table",
    "head_winners",
    "reference_budget",
    "section_heads",
    "share_within",
]

#: attn_tv levels the share of heads is counted at
TV_THRESHOLDS = (0.05, 0.10, 0.20)
_CONFIG = ["run", "chunk_len", "weighting", "method", "n_hashes"]
_METHOD_COLOURS = {"lsh": "tab:blue", "random": "tab:orange", "local": "tab:green"}


def head_table(df: pd.DataFrame) -> pd.DataFrame:
    """ok rows of one LSH backend per run (the reference LSH backend when present) that name
    a captured head: columns run, layer, head (ints), chunk_len, weighting, method,
    n_hashes, attn_tv, mass_recall, top1_recall, attn_entropy. Empty when there are none."""
    cols = [*_CONFIG, "layer", "head", "attn_tv", "mass_recall", "top1_recall", "attn_entropy"]
    if "layer" not in df or "head" not in df:
        return pd.DataFrame(columns=cols)
    layer = pd.to_numeric(df["layer"], errors="coerce")
    head = pd.to_numeric(df["head"], errors="coerce")
    rows = df[(df["status"] == "ok") & ~df["exact"].astype(bool) & layer.notna() & head.notna()]
    rows = rows[~rows["short"].astype(bool)]
    keep = []
    for _, g in rows.groupby("run", sort=False):
        names = sorted(set(g["backend"]))
        chosen = REFERENCE_LSH_BACKEND if REFERENCE_LSH_BACKEND in names else names[0]
        keep.append(g[g["backend"] == chosen])
    if not keep:
        return pd.DataFrame(columns=cols)
    out = pd.concat(keep)[cols].copy()
    out["layer"] = pd.to_numeric(out["layer"]).astype(int)
    out["head"] = pd.to_numeric(out["head"]).astype(int)
    return out.reset_index(drop=True)


def share_within(heads: pd.DataFrame) -> pd.DataFrame:
    """Per (run, chunk_len, weighting, method, n_hashes): number of heads, the median
    ``attn_tv`` over them and the share of heads with ``attn_tv <= t`` for each t of
    :data:`TV_THRESHOLDS` (columns ``within_0.05`` ...). Methods in lsh, random, local order."""
    rows = []
    for key, g in heads.groupby(_CONFIG, sort=True):
        tv = g["attn_tv"].to_numpy(dtype=float)
        row = dict(zip(_CONFIG, key, strict=True))
        row.update(heads=len(g), median_tv=float(np.median(tv)))
        for t in TV_THRESHOLDS:
            row[f"within_{t:.2f}"] = float(np.mean(tv <= t))
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["order"] = out["method"].map(METHOD_ORDER).fillna(9)
    out = out.sort_values(["run", "chunk_len", "weighting", "order", "n_hashes"], kind="mergesort")
    return out.drop(columns="order").reset_index(drop=True)


def reference_budget(heads: pd.DataFrame) -> dict[str, Any]:
    """The budget :func:`head_winners` compares at: the most common chunk length, H = 4 when
    present (else the largest), multiplicity weighting when present."""
    chunk = heads["chunk_len"].mode().min()
    hashes = sorted(set(heads["n_hashes"]))
    weightings = set(heads["weighting"])
    return {
        "chunk_len": int(chunk),
        "n_hashes": int(4 if 4 in hashes else hashes[-1]),
        "weighting": "multiplicity" if "multiplicity" in weightings else sorted(weightings)[0],
    }


def head_winners(heads: pd.DataFrame, budget: dict[str, Any]) -> pd.DataFrame:
    """One row per (run, layer, head) at ``budget``: attn_entropy, attn_tv of each method
    present (columns ``lsh``, ``random``, ``local``), ``kind`` "content" (lsh below local)
    or "positional" (local at or below lsh), and ``gain`` = local - lsh. Sorted by gain,
    largest first."""
    sel = heads
    for col, value in budget.items():
        sel = sel[sel[col] == value]
    if sel.empty:
        return pd.DataFrame()
    wide = sel.pivot_table(
        index=["run", "layer", "head"], columns="method", values="attn_tv", aggfunc="first"
    )
    entropy = sel.groupby(["run", "layer", "head"])["attn_entropy"].first()
    out = wide.join(entropy).reset_index()
    if "lsh" in out and "local" in out:
        out["gain"] = out["local"] - out["lsh"]
        out["kind"] = np.where(out["gain"] > 0, "content", "positional")
        out = out.sort_values("gain", ascending=False, kind="mergesort")
    return out.reset_index(drop=True)


def figure_heads(heads: pd.DataFrame, budget: dict[str, Any]) -> Plot | Skipped:
    """Left: the heads' exact row entropy (histogram). Right: attn_tv over the heads, one box
    per (H, method), at the budget's chunk length and weighting."""
    if heads.empty:
        return Skipped("no ok LSH rows of captured heads (layer and head columns)")
    sel = heads[(heads["chunk_len"] == budget["chunk_len"])]
    sel = sel[sel["weighting"] == budget["weighting"]]
    entropy = heads.groupby(["run", "layer", "head"])["attn_entropy"].first()
    fig = Figure(figsize=(WIDTH, 4.2))
    ax0, ax1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    ax0.hist(entropy.to_numpy(dtype=float), bins=20, color="0.4")
    ax0.set_xlabel("exact mean row entropy (nats)")
    ax0.set_ylabel("heads")
    ax0.set_title(f"{len(entropy)} heads")
    methods = sorted(set(sel["method"]), key=lambda m: METHOD_ORDER.get(m, 9))
    hashes = sorted(set(sel["n_hashes"]))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        data = [
            sel[(sel["method"] == method) & (sel["n_hashes"] == h)]["attn_tv"].to_numpy(float)
            for h in hashes
        ]
        pos = [x + (i - (len(methods) - 1) / 2) * width for x in range(len(hashes))]
        box = ax1.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True)
        for patch in box["boxes"]:
            patch.set_facecolor(_METHOD_COLOURS.get(method, "0.7"))
        ax1.plot([], [], "s", color=_METHOD_COLOURS.get(method, "0.7"), label=method)
    ax1.set_xticks(range(len(hashes)), [f"H={int(h)}" for h in hashes])
    ax1.set_ylabel("attn_tv (share of attention mass misplaced)")
    ax1.set_ylim(0, 1)
    for t in TV_THRESHOLDS:
        ax1.axhline(t, color="0.8", lw=0.8, zorder=0)
    ax1.legend(title="method")
    fig.suptitle(_heads_finding(sel, budget, entropy), fontsize=10)
    fig.tight_layout()
    caption = (
        f"Left: how peaked each captured head's exact attention is. Right: attn_tv over the "
        f"heads per method and number of rounds H (chunk_len {budget['chunk_len']}, "
        f"{budget['weighting']} weighting; boxes: quartiles, whiskers 1.5 IQR; grey lines: "
        f"{', '.join(f'{t:.2f}' for t in TV_THRESHOLDS)})."
    )
    return Plot("heads_tv", fig, caption)


def figure_lsh_vs_local(winners: pd.DataFrame, budget: dict[str, Any]) -> Plot | Skipped:
    """attn_tv of LSH against the local window per head, coloured by the head's entropy:
    below the diagonal, hashing helps (content heads)."""
    if winners.empty or "lsh" not in winners or "local" not in winners:
        return Skipped("needs lsh and local rows of captured heads at one budget")
    fig = Figure(figsize=(5.6, 4.8))
    ax = fig.subplots()
    dots = ax.scatter(
        winners["local"], winners["lsh"], c=winners["attn_entropy"], cmap="viridis", s=22
    )
    fig.colorbar(dots, ax=ax, label="exact mean row entropy (nats)")
    top = max(1e-3, math.ceil(10 * float(np.nanmax(winners[["lsh", "local"]]))) / 10)
    ax.plot([0, top], [0, top], color="0.5", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("attn_tv, local window")
    ax.set_ylabel("attn_tv, LSH")
    content = int((winners["kind"] == "content").sum())
    ax.set_title(
        f"LSH beats the local window in {content} of {len(winners)} heads\n"
        f"(H={budget['n_hashes']}, chunk_len {budget['chunk_len']}, {budget['weighting']})",
        fontsize=10,
    )
    fig.tight_layout()
    caption = (
        f"Each captured head at H={budget['n_hashes']}, chunk_len {budget['chunk_len']}, "
        f"{budget['weighting']} weighting: below the diagonal LSH misplaces less mass than a "
        "local window of the same key budget (a content head), above it the head is "
        "positional."
    )
    return Plot("heads_lsh_vs_local", fig, caption)


def _heads_finding(sel: pd.DataFrame, budget: dict[str, Any], entropy: pd.Series) -> str:
    """The figure's title: the median head's entropy and, at the budget's H, the median
    attn_tv over the heads of each method."""
    at = sel[sel["n_hashes"] == budget["n_hashes"]]
    medians = at.groupby("method")["attn_tv"].median()
    methods = [m for m in ("lsh", "random", "local") if m in medians]
    tvs = ", ".join(f"{m} {medians[m]:.2f}" for m in methods)
    text = f"Median head: {float(np.median(entropy.to_numpy(float))):.2f} nats"
    return text + (f"; median attn_tv at H={budget['n_hashes']}: {tvs}" if tvs else "")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def section_heads(doc: Any, heads: pd.DataFrame, budget: dict[str, Any], winners: Any) -> None:
    """The text and tables of the captured-heads section (figures are added by the caller):
    entropy quartiles, the share of heads within each attn_tv level, the content and
    positional heads."""
    entropy = heads.groupby(["run", "layer", "head"])["attn_entropy"].first().to_numpy(float)
    q = np.quantile(entropy, [0, 0.25, 0.5, 0.75, 1])
    doc.p(
        f"{len(entropy)} captured heads (rows with `layer` and `head`). Exact mean row "
        f"entropy over the heads: min {q[0]:.2f}, quartiles {q[1]:.2f} / {q[2]:.2f} / "
        f"{q[3]:.2f}, max {q[4]:.2f} nats; {int(np.sum(entropy < 1))} under 1 nat, "
        f"{int(np.sum(entropy >= 4))} at 4 or more. The other sections show the median over "
        "heads; this one keeps the spread."
    )
    doc.h(3, "Share of heads within an attn_tv level")
    share = share_within(heads)
    levels = [f"within_{t:.2f}" for t in TV_THRESHOLDS]
    several = share["run"].nunique() > 1
    header = [*(["run"] if several else []), "chunk_len", "weighting", "method", "H", "heads",
              "median attn_tv", *(f"<= {t:.2f}" for t in TV_THRESHOLDS)]  # fmt: skip
    rows = []
    for _, r in share.iterrows():
        rows.append([*([str(r["run"])] if several else []), str(int(r["chunk_len"])),
                     str(r["weighting"]), str(r["method"]), str(int(r["n_hashes"])),
                     str(int(r["heads"])), f"{r['median_tv']:.3f}",
                     *(_pct(r[c]) for c in levels)])  # fmt: skip
    doc.table(header, rows)
    if winners.empty or "kind" not in winners:
        doc.p("*Content and positional heads left out: needs lsh and local rows at one budget.*")
        return
    doc.h(3, "Which heads hashing helps")
    content = winners[winners["kind"] == "content"]
    doc.p(
        f"At H={budget['n_hashes']}, chunk_len {budget['chunk_len']}, {budget['weighting']} "
        f"weighting: LSH misplaces less attention mass than a local window of the same key "
        f"budget in {len(content)} of {len(winners)} heads (**content heads**); in the other "
        f"{len(winners) - len(content)} the local window does as well or better "
        "(**positional heads**)."
        + (
            f" LSH beats random buckets of the same budget in "
            f"{int((winners['lsh'] < winners['random']).sum())} of {len(winners)} heads."
            if "random" in winners
            else ""
        )
    )
    by_layer = winners.groupby("layer")["kind"].apply(lambda k: int((k == "content").sum()))
    sizes = winners.groupby("layer").size()
    doc.table(
        ["layer", "content heads", "positional heads"],
        [[str(int(layer)), str(n), str(int(sizes[layer]) - n)] for layer, n in by_layer.items()],
    )
    methods = [m for m in ("lsh", "random", "local") if m in winners]
    header = ["layer", "head", "entropy", *(f"attn_tv {m}" for m in methods), "kind"]
    ordered = winners.sort_values(["layer", "head"], kind="mergesort")
    doc.table(
        header,
        [[str(int(r["layer"])), str(int(r["head"])), f"{r['attn_entropy']:.2f}",
          *(f"{r[m]:.3f}" for m in methods), str(r["kind"])]
         for _, r in ordered.iterrows()],
    )  # fmt: skip
