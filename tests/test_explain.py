"""``lshbench explain``, the how-it-works document and its figure (issue 8).

The command must print every array of the lab's pipeline with its shape, prove the two
identities of research notes section B on its input (float64, difference < 1e-12), and print
the same numbers as calling the backends directly.
"""

from __future__ import annotations

import dataclasses
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
        ("-L", "12", "--n-hashes", "3", "--chunk-len", "4", "--n-buckets", "2,4", "--dv", "2"),
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

    assert reported(text, "output - union softmax") < 1e-12
    assert reported(text, "probs[r] - Z_r / sum(Z)") < 1e-12
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


@settings(max_examples=30, deadline=None)
@given(
    H=st.integers(1, 4),
    m=st.sampled_from([1, 2, 3, 4]),
    L=st.integers(2, 16),
    nb=st.sampled_from([2, 4, 6, 8, (2, 4)]),
    causal=st.booleans(),
    before=st.integers(0, 2),
    after=st.integers(0, 1),
    seed=st.integers(0, 1000),
)
def test_identities_hold_for_random_configs(H, m, L, nb, causal, before, after, seed) -> None:
    if L <= m or (H * L) % m:
        return
    cfg = lshbench.LSHConfig(
        n_hashes=H,
        n_buckets=nb,
        chunk_len=m,
        causal=causal,
        chunks_before=before,
        chunks_after=after,
    )
    ex = explain_arrays(cfg, L, 3, 2, seed)
    # rows whose only key is themselves sit at -1e5, where float64 steps are ~1.5e-11
    # (causal only); every other configuration is exact to rounding
    assert ex.union_diff < (1e-10 if causal else 1e-12)
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
        "Error: n_buckets=5: must be an even integer >= 2, or a non-empty tuple of them"
    ]


def test_figure_script_regenerates_the_docs_figure(tmp_path: Path) -> None:
    import matplotlib
    import matplotlib.image as mpimg
    from PIL import Image

    out = tmp_path / "figure.png"
    proc = subprocess.run(
        [sys.executable, str(FIGURE_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    new, committed = mpimg.imread(out), mpimg.imread(FIGURE)
    assert new.shape == committed.shape
    assert new.std() > 0.05  # not blank
    made_by = Image.open(FIGURE).info.get("Software", "")
    if f"version{matplotlib.__version__}," in made_by:
        np.testing.assert_array_equal(new, committed)  # same matplotlib: the same pixels
    else:  # fonts and antialiasing may move a little between matplotlib versions
        assert np.mean(np.abs(new - committed)) < 0.01


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
