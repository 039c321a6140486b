"""``lshbench explain``, the how-it-works document and its figure.

The command must print every array of the lab's pipeline with its shape, prove the two
identities of the round combine (docs/design.md section 2 step 7) on its input (float64,
difference < 1e-12), and print the same numbers as calling the backends directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import backend_params
from hypothesis import given, settings
from hypothesis import strategies as st

import lshbench
from lshbench.backends.numpy_lsh import NumpyBackend, lsh_attention
from lshbench.cli import main
from lshbench.core.validation import check_inputs
from lshbench.explain import LAB_CONFIG, explain_arrays, make_inputs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "how-lsh-attention-works.md"
FIGURE = ROOT / "docs" / "how-lsh-attention-works.png"
FIGURE_SCRIPT = ROOT / "docs" / "make_figure.py"
FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"


def run(*args: str) -> str:
    result = CliRunner().invoke(main, ["explain", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def block(text: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The numbers printed under the header ``-- name shape: ...``, up to the next header."""
    head = rf"^-- {re.escape(name)} {re.escape(str(shape))}:.*\n"
    match = re.search(head + r"((?:(?!-- |== |max |query ).*\n)+)", text, re.M)
    assert match, f"no block {name} {shape}"
    return np.array([float(x) for x in re.findall(FLOAT, match.group(1))]).reshape(shape)


def reported(text: str, label: str) -> float:
    match = re.search(rf"^max \|{re.escape(label)}\| = ({FLOAT})", text, re.M)
    assert match, f"no line for {label}"
    return float(match.group(1))


def lab_shapes(L: int, H: int, m: int, d: int, dv: int, n_adjacent: int) -> dict:
    NC, W = H * L // m, n_adjacent * m
    return {
        "buckets": (H, L),
        "sq": (H * L, d),
        "rsq": (NC, m, d),
        "look-back keys": (NC, W, d),
        "dotlike": (NC, m, W),
        "slogits": (NC, m),
        "so": (NC, m, dv),
        "o": [(H * L, dv), (H, L, dv)],
        "logits": [(H * L,), (H, L, 1)],
        "probs": (H, L, 1),
        "output": (L, dv),
    }


def test_default_is_the_lab_and_prints_the_lab_shapes() -> None:
    text = run()
    for name, shape in [
        ("buckets", (2, 8)),
        ("sq", (16, 3)),
        ("rsq", (8, 2, 3)),
        ("look-back keys", (8, 4, 3)),
        ("dotlike", (8, 2, 4)),
        ("slogits", (8, 2)),
        ("so", (8, 2, 5)),
        ("o", (16, 5)),
        ("logits", (16,)),
        ("o", (2, 8, 5)),
        ("logits", (2, 8, 1)),
        ("probs", (2, 8, 1)),
        ("output", (8, 5)),
    ]:
        assert re.search(rf"^-- {re.escape(name)} {re.escape(str(shape))}: \S", text, re.M), name
    assert "n_hashes=2, n_buckets=4, chunk_len=2" in text
    assert "L=8, d=3, d_v=5" in text


CASES = [
    # (command-line options, the LSHConfig they mean, L, d, dv, seed)
    ((), {}, 8, 3, 5, 0),
    (("--causal",), {"causal": True}, 8, 3, 5, 0),
    (
        ("-L", "12", "--n-hashes", "3", "--chunk-len", "4", "--n-buckets", "2x4", "--dv", "2"),
        {"n_hashes": 3, "chunk_len": 4, "n_buckets": (2, 4)},
        12,
        3,
        2,
        0,
    ),
    (
        ("-L", "10", "--chunk-len", "4", "--chunks-after", "1", "-d", "4", "--seed", "7"),
        {"chunk_len": 4, "chunks_after": 1},
        10,
        4,
        5,
        7,
    ),
]


@pytest.mark.parametrize(("args", "changes", "L", "d", "dv", "seed"), CASES)
def test_shapes_identities_and_backend_numbers(args, changes, L, d, dv, seed) -> None:
    text = run(*args, "--precision", "15")
    cfg = dataclasses.replace(LAB_CONFIG, **changes)
    H, m = cfg.n_hashes, cfg.chunk_len

    for name, shapes in lab_shapes(L, H, m, d, dv, cfg.n_adjacent).items():
        for shape in shapes if isinstance(shapes, list) else [shapes]:
            block(text, name, shape)  # present and holding exactly prod(shape) numbers

    # 1e-10, not 0: with causal masks position 0's only key is itself, its logsumexps sit
    # near -1e5, where float64 resolution is 1.5e-11 (docs/design.md section 2's caveat, in f64)
    assert reported(text, "output - union softmax") < 1e-10
    assert reported(text, "probs[r] - Z_r / sum(Z)") < 1e-10
    assert reported(text, "output - get_backend('numpy').attend") == 0.0

    qk, v, R = make_inputs(L, d, dv, cfg, seed)
    printed_out = block(text, "output", (L, dv))
    want = lshbench.get_backend("numpy").attend(qk, v, cfg, R)
    np.testing.assert_allclose(printed_out, want, rtol=0, atol=1e-12)
    details = NumpyBackend().attend_details(qk, v, cfg, R)
    np.testing.assert_allclose(
        block(text, "logits", (H, L, 1))[..., 0], details.round_lse, atol=1e-12
    )
    np.testing.assert_allclose(block(text, "o", (H, L, dv)), details.round_out, atol=1e-12)
    np.testing.assert_array_equal(block(text, "buckets", (H, L)), lshbench.hash_buckets(qk, R, cfg))
    # probs from the printed logits, by the textbook definition of a softmax over rounds
    logits = block(text, "logits", (H, L, 1))
    z = np.exp(logits - logits.max(axis=0))
    np.testing.assert_allclose(block(text, "probs", (H, L, 1)), z / z.sum(axis=0), atol=1e-12)
    dense = lshbench.get_backend("dense").attend(qk, v, cfg)
    assert reported(text, "output - get_backend('dense').attend") == pytest.approx(
        np.max(np.abs(want - dense)),
        rel=1e-3,  # printed with 4 significant digits
    )


@pytest.mark.parametrize("backend", backend_params("numpy", "numba"))
def test_printed_output_matches_every_lsh_backend(backend: str) -> None:
    text = run("--precision", "15")
    qk, v, R = make_inputs(8, 3, 5, LAB_CONFIG, 0)
    want = lshbench.get_backend(backend).attend(qk, v, LAB_CONFIG, R)
    np.testing.assert_allclose(block(text, "output", (8, 5)), want, rtol=0, atol=1e-12)


def test_windows_covering_every_key_give_dense_attention() -> None:
    """4 chunks of 4 slots, 3 back: every window holds all 16 slots, every key twice."""
    text = run("--chunk-len", "4", "--chunks-before", "3", "--precision", "15")
    qk, v, _ = make_inputs(8, 3, 5, LAB_CONFIG, 0)
    dense = lshbench.get_backend("dense").attend(qk, v, LAB_CONFIG)
    np.testing.assert_allclose(block(text, "output", (8, 5)), dense, rtol=0, atol=1e-12)
    # each window holds every key twice, and there are 2 rounds
    np.testing.assert_array_equal(block(text, "C", (8, 8)), np.full((8, 8), 2 * 2))
    assert reported(text, "output - get_backend('dense').attend") < 1e-12


@st.composite
def explain_configs(draw: st.DrawFn) -> tuple[lshbench.LSHConfig, int, int]:
    """A configuration explain accepts, its L (chunk_len < L <= 16, chunks that tile the H*L
    sorted slots) and a seed: every drawn case is a valid one."""
    H = draw(st.integers(1, 4))
    m = draw(st.sampled_from([1, 2, 3, 4]))
    L = draw(st.sampled_from([n for n in range(2, 17) if n > m and (H * n) % m == 0]))
    cfg = lshbench.LSHConfig(
        n_hashes=H,
        n_buckets=draw(st.sampled_from([2, 4, 6, 8, (2, 4)])),
        chunk_len=m,
        causal=draw(st.booleans()),
        chunks_before=draw(st.integers(0, 2)),
        chunks_after=draw(st.integers(0, 1)),
    )
    return cfg, L, draw(st.integers(0, 1000))


@settings(max_examples=30, deadline=None)
@given(case=explain_configs())
def test_identities_hold_for_random_configs(case: tuple[lshbench.LSHConfig, int, int]) -> None:
    cfg, L, seed = case
    H = cfg.n_hashes
    ex = explain_arrays(cfg, L, 3, 2, seed)
    # rows whose only key is themselves (causal position 0, or chunks of one looking nowhere
    # else) sit at -1e5, where float64 steps are ~1.5e-11
    assert ex.union_diff < 1e-10
    assert ex.share_diff < 1e-9
    np.testing.assert_array_equal(ex.out, ex.numpy_out)
    np.testing.assert_allclose(ex.grouped_out, ex.out, atol=1e-9)
    assert ex.counts.sum() == L * H * cfg.window_len(L)
    np.testing.assert_allclose(ex.probs.sum(axis=0), 1.0, atol=1e-14)


def test_trace_is_the_plain_code_path() -> None:
    """The trace only records: results with and without it are identical."""
    qk, v, R = make_inputs(8, 3, 5, LAB_CONFIG, 3)
    qk3, v3, rot, _ = check_inputs(qk, v, LAB_CONFIG, R)
    trace: dict[str, np.ndarray] = {}
    with_trace = lsh_attention(qk3, v3, LAB_CONFIG, rot, trace=trace)
    plain = lsh_attention(qk3, v3, LAB_CONFIG, rot)
    for a, b in zip(with_trace, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    assert trace["sq"].shape == (1, 16, 3) and trace["so"].shape == (1, 8, 2, 5)
    # so undone by undo_sort is the returned per-round output
    o = trace["so"].reshape(1, 16, 5)[:, trace["undo_sort"][0]]
    np.testing.assert_array_equal(o.reshape(1, 2, 8, 5), plain[0])


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--n-buckets", "3"], "n_buckets=3"),
        (["--n-buckets", "four"], "n_buckets=four"),
        (["--n-buckets", "2,4"], "n_buckets=2,4: takes one value"),  # factors are 2x4
        (["--chunk-len", "8"], "chunk_len=8"),
        (["--chunk-len", "3"], "chunk_len=3"),
        (["-L", "0"], "seqlen=0"),
        (["-L", "65"], "seqlen=65"),
        (["-d", "0"], "d=0"),
        (["--seed", "-1"], "seed=-1"),
        (["--query", "8"], "query=8"),
        (["--precision", "0"], "precision=0"),
        (["--n-hashes", "0"], "n_hashes=0"),
        (["--chunk-len", "x"], "--chunk-len"),
    ],
)
def test_invalid_options_one_line_exit_2(args: list[str], field: str) -> None:
    result = CliRunner().invoke(main, ["explain", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and field in lines[0]
    assert result.stdout == ""


def test_installed_command_and_no_heavy_imports() -> None:
    code = (
        "import sys, runpy; sys.argv = ['lshbench', 'explain', '--n-buckets', '5'];"
        "import lshbench.cli;"
        "heavy = {'matplotlib', 'pandas', 'numba', 'torch'} & set(sys.modules);"
        "assert not heavy, heavy;"
        "lshbench.cli.main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: n_buckets=5: must be an even integer >= 2, or even factors like 16x32"
    ]


def _figure_module():
    """docs/make_figure.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("make_figure", FIGURE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell_texts(ax) -> dict[tuple[float, float], str]:
    """Texts drawn at the centre of a unit cell, keyed by (x, y) of the cell's corner."""
    out = {}
    for t in ax.texts:
        x, y = t.get_position()
        if float(x - 0.5).is_integer() and float(y - 0.5).is_integer():
            out[(x - 0.5, y - 0.5)] = t.get_text()
    return out


def test_docs_figure_shows_the_example_arrays() -> None:
    """Each panel of the docs figure holds the numbers explain computes, not other ones."""
    ex = explain_arrays()
    H, L = ex.buckets.shape
    W = ex.windows.shape[-1]
    fig = _figure_module().build_figure(query=0)
    a, b, c, d = fig.axes
    assert fig.get_suptitle().startswith("LSH attention on the lab's example (L=8, 2 hashes")
    starts = ("(a) hash", "(b) sort", "(c) query 0", "(d) round")
    for ax, start in zip(fig.axes, starts, strict=True):
        assert ax.get_title(loc="left").startswith(start), ax.get_title(loc="left")

    # (a) the bucket of every position in every round (round 0 on top)
    assert a.get_xlabel() == "position t"
    cells = _cell_texts(a)
    want = {(t, H - 1 - r): f"b{ex.buckets[r, t]}" for r in range(H) for t in range(L)}
    assert cells == want

    # (b) the sorted slots: position and round of each
    cells = _cell_texts(b)
    rounds = ex.sticker // L
    assert cells == {(k, 0): f"{ex.st[k]}\nr{rounds[k]}" for k in range(H * L)}
    n_arrows = sum(int(a_ != c_) for c_, row in enumerate(ex.adj) for a_ in row)
    assert len(b.patches) == H * L + n_arrows  # one cell per slot, one arrow per look-back

    # (c) every key copy query 0 saw and its weight in ONE softmax over all rounds
    s = ex.union_scores[0]
    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    cells = _cell_texts(c)
    for r in range(H):
        for k in range(W):
            j = ex.windows[r, 0, k]
            weight = "self: 0" if j == 0 else f"{w[r * W + k]:.3f}"
            assert cells[(k, H - 1 - r)] == f"key {j}\n{weight}"
        share = w[r * W : (r + 1) * W].sum()  # the round's part of the one softmax
        note = f"sum = {share:.3f} = Z_{r} / (Z_0+...+Z_{H - 1})\nprobs[{r}] = "
        assert note + f"{ex.probs[r, 0, 0]:.3f}" in [t.get_text() for t in c.texts]

    # (d) stacked bars of probs per round, ticks at Z_r / sum(Z) from the scores
    assert (d.get_xlabel(), d.get_ylabel()) == ("query position", "round weight (stacked)")
    assert len(d.containers) == H
    bottom = np.zeros(L)
    ticks = [line for line in d.lines if len(line.get_xdata()) == L]
    for r, bars in enumerate(d.containers):
        np.testing.assert_allclose([p.get_height() for p in bars], ex.probs[r, :, 0])
        np.testing.assert_allclose([p.get_y() for p in bars], bottom, atol=1e-15)
        np.testing.assert_allclose(ticks[r].get_ydata(), bottom + ex.share[r])
        bottom += ex.probs[r, :, 0]
    np.testing.assert_allclose(bottom, 1.0)
    labels = set(d.get_legend_handles_labels()[1])
    assert labels == {*(f"probs[{r}] (Step 5)" for r in range(H)), "Z_r / sum(Z), from scores"}


def test_figure_script_writes_the_docs_figure_size(tmp_path: Path) -> None:
    from matplotlib.image import imread

    out = tmp_path / "figure.png"
    proc = subprocess.run(
        [sys.executable, str(FIGURE_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert imread(out).shape == imread(FIGURE).shape  # the committed figure's size


def test_document_links_figure_and_quotes_computed_numbers() -> None:
    text = DOC.read_text()
    assert "](how-lsh-attention-works.png)" in text and "](make_figure.py)" in text
    ex = explain_arrays()
    for r in range(LAB_CONFIG.n_hashes):
        assert str(ex.windows[r, 0].tolist()) in text
        assert f"Z_{r} = {ex.Z[r, 0]:.3f}" in text
    logits = ", ".join(f"{x:.3f}" for x in ex.logits_rounds[:, 0, 0])
    probs = ", ".join(f"{x:.3f}" for x in ex.probs[:, 0, 0])
    assert f"logits = [{logits}]" in text and f"probs = [{probs}]" in text
    s = ex.union_scores[0]
    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    key6 = [w[k] for k, j in enumerate(ex.windows[:, 0].ravel()) if j == 6]
    assert len(key6) == 2 and f"weight {key6[0]:.3f} in round 0 and again {key6[1]:.3f}" in text
