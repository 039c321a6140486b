"""Draw docs/how-lsh-attention-works.png from a real run of the numpy backend.

    python docs/make_figure.py [--out PATH] [--query I]

The example is ``lshbench explain``'s default (the Coursera lab's sizes: L=8, 2 hashes,
4 buckets, chunks of 2, seed 0); every number in the figure comes from
:func:`lshbench.explain.explain_arrays`. Panels: (a) buckets per round, (b) the sorted
slots cut into chunks with each chunk's look-back, (c) the keys one query saw in each round
and each copy's weight in the combined softmax, (d) the round weights ``probs`` of every query
next to ``Z_r / sum(Z)`` computed straight from the window scores.

:func:`build_figure` returns the :class:`matplotlib.figure.Figure` (no pyplot state), so a
test can read what each panel shows; :func:`make_figure` writes it as PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from lshbench.explain import Explained, explain_arrays

DEFAULT_OUT = Path(__file__).with_name("how-lsh-attention-works.png")


def _cell(ax, x: float, y: float, color, text: str, *, fontsize: int = 10, dark: bool = False):
    ax.add_patch(Rectangle((x, y), 1, 1, facecolor=color, edgecolor="white", linewidth=1.5))
    ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=fontsize,
            color="white" if dark else "black")  # fmt: skip


def _bucket_colors(n: int) -> list:
    cmap = colormaps["Pastel1" if n <= 9 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]


def panel_hashing(ax, ex: Explained, colors: list) -> None:
    H, L = ex.buckets.shape
    for r in range(H):
        for t in range(L):
            b = int(ex.buckets[r, t])
            _cell(ax, t, H - 1 - r, colors[b], f"b{b}")
        ax.text(-0.2, H - 1 - r + 0.5, f"round {r}", ha="right", va="center", fontsize=10)
    ax.set_xlim(-1.6, L)
    ax.set_ylim(-0.1, H + 0.1)
    ax.set_xticks(np.arange(L) + 0.5, [str(t) for t in range(L)])
    ax.set_yticks([])
    ax.set_xlabel("position t")
    ax.set_title("(a) hash: bucket of every position in every round", loc="left")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def panel_sorted(ax, ex: Explained, colors: list) -> None:
    cfg = ex.config
    H, L = ex.buckets.shape
    m, n_chunks = cfg.chunk_len, ex.rsq.shape[0]
    bucket_of_slot = ex.buckets.reshape(H * L)[ex.sticker]  # (H*L,) in sorted order
    for k, t in enumerate(ex.st):
        r = int(ex.sticker[k]) // L  # sorted slot k came from round r
        _cell(ax, k, 0, colors[int(bucket_of_slot[k])], f"{t}\nr{r}", fontsize=9)
    for c in range(n_chunks + 1):  # chunk boundaries
        ax.plot([c * m, c * m], [-0.15, 1.15], color="black", linewidth=1.2)
    for c in range(n_chunks):
        ax.text(c * m + m / 2, -0.45, f"chunk {c}", ha="center", va="center", fontsize=8)
    for r in range(1, H):  # where each round's slots start
        ax.plot([r * L, r * L], [-1.1, 1.6], color="tab:red", linewidth=2, linestyle="--")
    for r in range(H):
        ax.text(r * L + L / 2, -0.95, f"round {r} (sorted by bucket, then position)",
                ha="center", va="center", fontsize=9, color="tab:red")  # fmt: skip
    for c in range(n_chunks):  # look-back arrows: chunk c -> each earlier chunk it sees
        for a in ex.adj[c]:
            if a == c:
                continue
            wrap = a > c
            start, end = (c * m + m / 2, 1.05), (a * m + m / 2, 1.05)
            arrow = FancyArrowPatch(
                start,
                end,
                connectionstyle=f"arc3,rad={-0.1 if wrap else 0.5}",  # both bend upwards
                arrowstyle="-|>",
                mutation_scale=10,
                color="tab:purple" if wrap else "tab:blue",
                linestyle="--" if wrap else "-",
                linewidth=1.2,
            )
            ax.add_patch(arrow)
    ax.set_xlim(-0.5, H * L + 0.5)
    ax.set_ylim(-1.2, 2.7)
    ax.axis("off")
    ax.set_title(
        "(b) sort the H*L slots (label: position, round), cut into chunks; "
        "each chunk also sees the chunk before it\n"
        f"     (blue arrows; chunk {L // m} looks back into round 0; the dashed purple "
        f"arrow wraps: chunk 0 looks back at chunk {n_chunks - 1})",
        loc="left",
    )


def panel_query(ax, ex: Explained, query: int) -> None:
    H = ex.buckets.shape[0]
    W = ex.windows.shape[-1]
    scores = ex.union_scores[query]  # (H*W,)
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()  # (H*W,): weight of each key copy in the ONE softmax
    cmap = colormaps["Blues"]
    for r in range(H):
        y = H - 1 - r
        for w in range(W):
            j = int(ex.windows[r, query, w])
            p = float(weights[r * W + w])
            label = f"key {j}\n" + ("self: 0" if j == query else f"{p:.3f}")
            shade = 0.1 + 0.8 * p / max(weights.max(), 1e-300)
            _cell(ax, w, y, cmap(shade), label, fontsize=9, dark=shade > 0.6)
        share = float(ex.share[r, query])
        ax.text(-0.2, y + 0.5, f"round {r}", ha="right", va="center", fontsize=10)
        ax.text(
            W + 0.2,
            y + 0.5,
            f"sum = {share:.3f} = Z_{r} / (Z_0+...+Z_{H - 1})\n"
            f"probs[{r}] = {float(ex.probs[r, query, 0]):.3f}",
            ha="left",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(-1.6, W + 4.5)
    ax.set_ylim(-0.1, H + 0.1)
    ax.axis("off")
    ax.set_title(
        f"(c) query {query}: every key copy it saw, with its weight in ONE softmax over all "
        "rounds\n     (a key seen twice is counted twice; its own position is masked)",
        loc="left",
    )


def panel_weights(ax, ex: Explained) -> None:
    H, L = ex.buckets.shape
    x = np.arange(L)
    bottom = np.zeros(L)
    colors = colormaps["tab10"]
    for r in range(H):
        p = ex.probs[r, :, 0]
        ax.bar(x, p, bottom=bottom, color=colors(r), alpha=0.55, label=f"probs[{r}] (Step 5)")
        ax.plot(x, bottom + ex.share[r], "k_", markersize=18, markeredgewidth=2)
        bottom = bottom + p
    ax.plot([], [], "k_", markersize=12, markeredgewidth=2, label="Z_r / sum(Z), from scores")
    ax.set_xticks(x)
    ax.set_xlabel("query position")
    ax.set_ylabel("round weight (stacked)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title(
        "(d) round weights probs = softmax over rounds of logits = each round's share of Z",
        loc="left",
    )


def build_figure(query: int = 0, ex: Explained | None = None) -> Figure:
    """The four panels for ``ex`` (default: ``lshbench explain``'s example), query ``query``
    shown in panel (c)."""
    ex = explain_arrays() if ex is None else ex
    colors = _bucket_colors(ex.config.total_buckets)
    fig = Figure(figsize=(11, 12.5))
    axes = fig.subplots(4, 1, gridspec_kw={"height_ratios": [1.0, 1.6, 1.0, 1.4]})
    panel_hashing(axes[0], ex, colors)
    panel_sorted(axes[1], ex, colors)
    panel_query(axes[2], ex, query)
    panel_weights(axes[3], ex)
    fig.suptitle(
        "LSH attention on the lab's example (L=8, 2 hashes, 4 buckets, chunks of 2), "
        "computed by lshbench",
        fontsize=12,
    )
    fig.tight_layout()
    return fig


def make_figure(out: Path, query: int = 0) -> Path:
    """Draw the four panels for ``lshbench explain``'s default example into ``out``."""
    fig = build_figure(query)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)  # metadata "Software" names the matplotlib version
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--query", type=int, default=0, help="query shown in panel (c)")
    args = parser.parse_args()
    print(make_figure(args.out, args.query))


if __name__ == "__main__":
    main()
