"""The report's captured-heads section: the spread over heads that the medians hide.

From a sweep of a small per-head file, the section's numbers must be those of the rows:
the share of heads within each attn_tv level per method and H, and the content / positional
split (LSH against the local window at one budget).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lshbench
from lshbench.measurement.input_files import save_input_file
from lshbench.report.document import render_report


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(3)
    n, L, d = 4, 128, 8
    # heads 0-1: content (clustered keys, queries near their cluster), 2-3: previous token
    centres = rng.normal(size=(4, d)) * 3
    labels = rng.integers(0, 4, size=L)
    q = np.empty((n, L, d))
    k = np.empty((n, L, d))
    for h in range(2):
        k[h] = centres[labels] + 0.3 * rng.normal(size=(L, d))
        q[h] = centres[labels] + 0.3 * rng.normal(size=(L, d))
    pos = np.arange(L)
    for h in range(2, 4):  # a one-hot position code: q_i . k_j large iff j == i - 1
        k[h] = 0.1 * rng.normal(size=(L, d))
        q[h] = 0.1 * rng.normal(size=(L, d))
        k[h, :, h - 2] += 4 * np.cos(pos / 3.0)
        k[h, :, h] += 4 * np.sin(pos / 3.0)
        q[h, :, h - 2] += 4 * np.cos((pos - 1) / 3.0)
        q[h, :, h] += 4 * np.sin((pos - 1) / 3.0)
    v = rng.normal(size=(n, L, d))
    path = folder / "heads.npz"
    save_input_file(path, q, v, k=k, layer=np.array([0, 0, 1, 1]), head=np.array([0, 1, 0, 1]))
    out = folder / "out"
    frame = lshbench.run_sweep(
        out, input=f"file:{path}", chunk_len=[16], n_hashes=[1, 4], n_buckets=[8],
        backend="numpy,dense", method="lsh,random,local", weighting="multiplicity",
        repeats=5, quiet=True,
    )  # fmt: skip
    assert (frame["status"] == "ok").all(), frame["message"].tolist()
    return out, frame


def test_section_numbers_are_the_rows(swept: tuple, tmp_path: Path) -> None:
    out, frame = swept
    written = render_report([out], tmp_path / "report")
    folder, text = written.folder, written.markdown.read_text()
    assert "## 9. Captured model heads" in text
    assert text.index("## 9. Captured model heads") < text.index("## Appendix: ")
    # what render_report returns is what it wrote: every figure the report shows, in order
    assert written.figures[-2:] == (folder / "heads_attn_tv.png", folder / "heads_lsh_vs_local.png")
    shown = [f for f in re.findall(r"\]\(([^)]+\.png)\)", text)]
    assert [f.name for f in written.figures] == shown
    assert all(f.is_file() for f in written.figures)
    assert (folder / "heads_attn_tv.png").is_file()
    assert (folder / "heads_lsh_vs_local.png").is_file()
    lsh = frame[frame["backend"] == "numpy"]
    for (method, H), g in lsh.groupby(["method", "n_hashes"]):
        tv = g["attn_tv"].to_numpy()
        shares = " | ".join(f"{100 * np.mean(tv <= t):.0f}%" for t in (0.05, 0.10, 0.20))
        line = f"| 16 | multiplicity | {method} | {H} | 4 | {np.median(tv):.3f} | {shares} |"
        assert line in text, line
    sel = lsh[lsh["n_hashes"] == 4]
    wide = sel.pivot_table(index=["layer", "head"], columns="method", values="attn_tv")
    content = int((wide["lsh"] < wide["local"]).sum())
    assert f"in {content} of 4 heads (**content heads**)" in text
    for (layer, head), r in wide.iterrows():
        kind = "content" if r["lsh"] < r["local"] else "positional"
        assert f"| {layer} | {head} | " in text and kind in text


def test_no_section_without_captured_heads(tmp_path: Path) -> None:
    frame = lshbench.run_sweep(
        tmp_path / "out", input="gaussian", seqlen=[64], chunk_len=[16], n_hashes=[1],
        backend="numpy,dense", method="lsh", weighting="multiplicity", repeats=5, quiet=True,
    )  # fmt: skip
    assert (frame["status"] == "ok").all()
    text = render_report([tmp_path / "out"], tmp_path / "r").markdown.read_text()
    assert "Captured model heads" not in text and "## Appendix: Failed cells" in text


def test_head_figures_state_their_finding(swept: tuple) -> None:
    """The titles say what the figures show, from the rows: the median head's entropy and
    each method's median attn_tv at the budget's H; how many heads LSH wins."""
    from lshbench.report import heads as rh
    from lshbench.report.analysis import load_run, prepare

    out, frame = swept
    table = rh.head_table(prepare([load_run(out)]))
    budget = rh.reference_budget(table)
    plot = rh.figure_heads(table, budget)
    lsh = frame[(frame["backend"] == "numpy") & (frame["n_hashes"] == budget["n_hashes"])]
    tv = lsh.groupby("method")["attn_tv"].median()
    entropy = lsh.groupby(["layer", "head"])["attn_entropy"].first().median()
    title = plot.figure._suptitle.get_text()
    assert title.startswith(f"Median head: {entropy:.2f} nats")
    assert f"lsh {tv['lsh']:.2f}, random {tv['random']:.2f}, local {tv['local']:.2f}" in title
    winners = rh.head_winners(table, budget)
    wide = lsh.pivot_table(index=["layer", "head"], columns="method", values="attn_tv")
    content = int((wide["lsh"] < wide["local"]).sum())
    (ax, *_) = rh.figure_lsh_vs_local(winners, budget).figure.axes
    assert ax.get_title().startswith(f"LSH beats the local window in {content} of 4 heads")
