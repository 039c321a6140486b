"""``lshbench capture``: a tiny Reformer built from a config and saved here (no download).

The captured arrays must equal what the model's own ``query_key`` and ``value`` layers give
on the hidden states entering its LSH attention (taken independently, with a pre-hook on
the attention module of the in-memory model that was saved), and the stored configuration
must be the model's. Skipped only where torch or transformers are missing (the ``peers``
extra); CI installs them.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_exit_2, limited_file_size, refuse_writes_under

import lshbench
from lshbench.cli import main
from lshbench.measurement.capture import CAPTURE_SEED, capture_model
from lshbench.measurement.input_files import load_input_file

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[peers]')")
transformers = pytest.importorskip(
    "transformers", reason="transformers not installed (pip install -e '.[peers]')"
)

TEXT = "The quick brown fox jumps over the lazy dog; " * 3  # 135 bytes


def tiny_config(**overrides: Any) -> Any:
    settings = {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "attention_head_size": 16,
        "attn_layers": ["local", "lsh", "local", "lsh"],
        "num_buckets": 4,
        "num_hashes": 2,
        "lsh_attn_chunk_length": 8,
        "local_attn_chunk_length": 4,
        "lsh_num_chunks_before": 2,
        "lsh_num_chunks_after": 0,  # causal (is_decoder) requires 0
        "vocab_size": 258,
        "axial_pos_shape": (8, 16),
        "axial_pos_embds_dim": (16, 16),
        "max_position_embeddings": 128,
        "feed_forward_size": 64,
        "is_decoder": True,
    }
    settings.update(overrides)
    return transformers.ReformerConfig(**settings)


def save_model(path: Path, **overrides: Any) -> Any:
    torch.manual_seed(0)
    model = transformers.ReformerModelWithLMHead(tiny_config(**overrides)).eval()
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    folder = tmp_path_factory.mktemp("capture")
    model = save_model(folder / "model")
    text = folder / "text.txt"
    text.write_text(TEXT)
    return model, folder / "model", text


def own_projections(model: Any, ids: list, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """qk and v per head from the model's own Linear layers on the hidden states that enter
    its ``layer``-th attention module (an independent forward pre-hook). Earlier LSH layers
    draw random rotations, so the pass is seeded as capture seeds it."""
    attention = model.reformer.encoder.layers[layer].attention.self_attention
    seen = []
    hook = attention.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            kwargs.get("hidden_states", args[0] if args else None)
        ),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            torch.manual_seed(CAPTURE_SEED)  # earlier LSH layers: the same rotations
            model(input_ids=torch.tensor([ids]))
            hidden = seen[0]  # (1, L, hidden)
            qk, v = attention.query_key(hidden), attention.value(hidden)  # (1, L, heads*hd)
    finally:
        hook.remove()
    heads = attention.num_attention_heads

    def per_head(x: Any) -> np.ndarray:
        x = x.numpy().reshape(1, len(ids), heads, -1)  # (1, L, heads, hd)
        return x.transpose(0, 2, 1, 3).reshape(heads, len(ids), -1)  # (heads, L, hd)

    return per_head(qk), per_head(v)


def byte_ids(text: str, length: int) -> list:
    return [b + 2 for b in text.encode()[:length]]


@pytest.mark.parametrize(("layer", "model_layer"), [(0, 1), (1, 3)])
def test_arrays_equal_the_models_own_projections(
    tiny: tuple, tmp_path: Path, layer: int, model_layer: int
) -> None:
    model, model_dir, text = tiny
    out = tmp_path / "cap.npz"
    res = capture_model(model_dir, text, out, layer=layer)
    assert (res.seqlen, res.text_tokens, res.chunk_multiple) == (128, 135, 8)  # lcm(8, 4)
    assert res.model_layer == model_layer and res.tokenizer == "bytes+2"
    f = load_input_file(out)
    assert f.qk.shape == (2, 128, 16) and f.v.shape == (2, 128, 16)
    assert f.qk.dtype == np.float32 and f.v.dtype == np.float32
    qk, v = own_projections(model, byte_ids(TEXT, 128), model_layer)
    np.testing.assert_allclose(f.qk, qk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.v, v, rtol=1e-5, atol=1e-6)
    assert not np.allclose(f.qk[0], f.qk[1])  # two different heads
    assert f.meta["layer"] == str(model_layer)


def test_stored_configuration_is_the_models(tiny: tuple, tmp_path: Path) -> None:
    model, model_dir, text = tiny
    capture_model(model_dir, text, tmp_path / "c.npz")
    f = load_input_file(tmp_path / "c.npz")
    c = model.config
    assert f.config == {
        "n_hashes": c.num_hashes,
        "n_buckets": c.num_buckets,
        "chunk_len": c.lsh_attn_chunk_length,
        "chunks_before": c.lsh_num_chunks_before,
        "chunks_after": c.lsh_num_chunks_after,
        "causal": c.is_decoder,
    }
    # the stored configuration runs on the stored arrays
    cfg = lshbench.LSHConfig(**f.config)
    out = lshbench.get_backend("numpy").attend(
        f.qk, f.v, cfg, lshbench.random_rotations(16, cfg, seed=0)
    )
    assert out.shape == f.v.shape and np.isfinite(out).all()


def test_seqlen_is_cropped_down_to_a_chunk_multiple(tiny: tuple, tmp_path: Path) -> None:
    model, model_dir, text = tiny
    res = capture_model(model_dir, text, tmp_path / "s.npz", seqlen=50)
    assert res.seqlen == 48
    f = load_input_file(tmp_path / "s.npz")
    qk, v = own_projections(model, byte_ids(TEXT, 48), 1)
    np.testing.assert_allclose(f.qk, qk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.v, v, rtol=1e-5, atol=1e-6)


def test_unset_num_buckets_stores_what_the_model_chose(tmp_path: Path) -> None:
    """num_buckets=None: HF picks it from L on the first pass (here factorized); the file
    stores the model's choice."""
    model = save_model(tmp_path / "m", num_buckets=None, attn_layers=["lsh"])
    (tmp_path / "t.txt").write_text(TEXT)
    capture_model(tmp_path / "m", tmp_path / "t.txt", tmp_path / "o.npz")
    with torch.no_grad():
        model(input_ids=torch.tensor([byte_ids(TEXT, 128)]))
    chosen = model.reformer.encoder.layers[0].attention.self_attention.num_buckets
    stored = load_input_file(tmp_path / "o.npz").config["n_buckets"]
    assert stored == (tuple(chosen) if isinstance(chosen, list) else chosen)


def test_capture_is_reproducible_and_leaves_torch_rng_alone(tiny: tuple, tmp_path: Path) -> None:
    _, model_dir, text = tiny
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    capture_model(model_dir, text, tmp_path / "a.npz", layer=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    capture_model(model_dir, text, tmp_path / "b.npz", layer=1)
    np.testing.assert_array_equal(
        load_input_file(tmp_path / "a.npz").qk, load_input_file(tmp_path / "b.npz").qk
    )


def test_model_directory_tokenizer_is_used(tiny: tuple, tmp_path: Path) -> None:
    """A directory with tokenizer files: its tokenizer, not bytes + 2."""
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers not installed")
    model, _, text = tiny
    model.save_pretrained(tmp_path / "m")
    vocab = {"[UNK]": 0, ";": 1}
    for word in "the quick brown fox jumps over lazy dog".split():
        vocab[word] = len(vocab)
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.save_pretrained(tmp_path / "m")
    res = capture_model(tmp_path / "m", text, tmp_path / "o.npz")
    ids = tokenizer(TEXT)["input_ids"]
    assert res.tokenizer != "bytes+2" and res.text_tokens == len(ids) == 30
    assert res.seqlen == 24
    qk, v = own_projections(model, ids[:24], 1)
    f = load_input_file(tmp_path / "o.npz")
    np.testing.assert_allclose(f.qk, qk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.v, v, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ errors through the CLI


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["capture", *args])


def test_cli_writes_the_file(tiny: tuple, tmp_path: Path) -> None:
    _, model_dir, text = tiny
    out = tmp_path / "cli.npz"
    res = run_cli(str(model_dir), "--text", str(text), "--out", str(out), "--seqlen", "64")
    assert res.exit_code == 0, res.output
    assert "L=64" in res.output and "n_hashes=2" in res.output
    assert load_input_file(out).qk.shape == (2, 64, 16)


def test_cli_missing_model_directory(tiny: tuple, tmp_path: Path) -> None:
    _, _, text = tiny
    res = run_cli(str(tmp_path / "none"), "--text", str(text), "--out", str(tmp_path / "o.npz"))
    assert_one_line_exit_2(res, "model_dir=", "no such directory")


def test_cli_model_without_lsh_layers(tiny: tuple, tmp_path: Path) -> None:
    _, _, text = tiny
    save_model(tmp_path / "local", attn_layers=["local", "local"])
    res = run_cli(str(tmp_path / "local"), "--text", str(text), "--out", str(tmp_path / "o.npz"))
    assert_one_line_exit_2(res, "has no LSH layers")
    assert not (tmp_path / "o.npz").exists()


def test_cli_text_shorter_than_one_chunk(tiny: tuple, tmp_path: Path) -> None:
    _, model_dir, _ = tiny
    (tmp_path / "short.txt").write_text("abc")
    res = run_cli(str(model_dir), "--text", str(tmp_path / "short.txt"), "--out", "o.npz")
    assert_one_line_exit_2(res, "text=", "fewer than one chunk (8)")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--layer", "2"], ("layer=2", "[0, 1]")),
        (["--seqlen", "500"], ("seqlen=500", "135 tokens")),
        (["--seqlen", "4"], ("fewer than one chunk",)),
        (["--layer", "x"], ("layer=x", "must be an integer")),
    ],
)
def test_cli_bad_layer_or_seqlen(tiny: tuple, tmp_path: Path, extra: list, fragments) -> None:
    _, model_dir, text = tiny
    res = run_cli(str(model_dir), "--text", str(text), "--out", str(tmp_path / "o.npz"), *extra)
    assert_one_line_exit_2(res, *fragments)


def test_cli_missing_text_and_folder_without_config(tiny: tuple, tmp_path: Path) -> None:
    _, model_dir, text = tiny
    res = run_cli(str(model_dir), "--text", str(tmp_path / "no.txt"), "--out", "o.npz")
    assert_one_line_exit_2(res, "text=", "no such file")
    res = run_cli(str(tmp_path), "--text", str(text), "--out", str(tmp_path / "o.npz"))
    assert_one_line_exit_2(res, "has no config.json")


def test_cli_without_transformers_says_how_to_install(tiny: tuple, tmp_path: Path) -> None:
    """A fresh interpreter where importing transformers fails."""
    _, model_dir, text = tiny
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "from lshbench.cli import main\n"
        f"sys.argv = ['lshbench', 'capture', {str(model_dir)!r}, '--text', {str(text)!r},"
        f" '--out', {str(tmp_path / 'o.npz')!r}]\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "Error: capture=transformers: not installed; pip install -e '.[peers]'"
    ]


@pytest.mark.parametrize("keep", [0.0, 0.05, 0.5, 0.99])
def test_cli_damaged_weights_file(tiny: tuple, tmp_path: Path, keep: float) -> None:
    """A truncated model.safetensors (a copy cut short): bad input, one line, exit 2."""
    import shutil

    _, model_dir, text = tiny
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    weights = sorted(damaged.glob("*.safetensors")) or sorted(damaged.glob("*.bin"))
    assert weights, list(damaged.iterdir())
    data = weights[0].read_bytes()
    weights[0].write_bytes(data[: int(keep * len(data))])
    res = run_cli(str(damaged), "--text", str(text), "--out", str(tmp_path / "o.npz"))
    assert_one_line_exit_2(res, f"model_dir={damaged}", "cannot load the model")
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("which", ["folder", "model", "existing-subfolder"])
def test_cli_out_that_is_a_directory(tiny: tuple, tmp_path: Path, which: str) -> None:
    _, model_dir, text = tiny
    out = {"folder": tmp_path, "model": model_dir, "existing-subfolder": tmp_path / "x.npz"}
    out[which].mkdir(exist_ok=True)
    res = run_cli(str(model_dir), "--text", str(text), "--out", str(out[which]))
    assert_one_line_exit_2(res, f"out={out[which]}", "is a directory")


@pytest.mark.parametrize("err", [errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC])
def test_cli_out_in_a_folder_that_cannot_be_written(
    tiny: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    """An immutable or read-only folder, or a full disk (simulated for this process, so it
    holds for root too): one line, exit 1, and no file (or temporary file) left there."""
    _, model_dir, text = tiny
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "o.npz"
    refuse_writes_under(monkeypatch, locked, err)
    res = run_cli(str(model_dir), "--text", str(text), "--out", str(out), "--seqlen", "64")
    monkeypatch.undo()
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith(f"Error: cannot write {out}: ") and "Traceback" not in res.output
    assert f"({errno.errorcode[err]})" in lines[0]
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("limit", [0, 1000, 9000])
def test_cli_disk_filling_up_leaves_no_truncated_file(
    tiny: tuple, tmp_path: Path, limit: int
) -> None:
    """Files may not grow past ``limit`` bytes (a real write failure, EFBIG), the capture
    (about 17 KB) does not fit: one line, exit 1, no .npz and no temporary file left."""
    _, model_dir, text = tiny
    out = tmp_path / "o.npz"
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "capture", str(model_dir), "--text", str(text),
         "--out", str(out), "--seqlen", "64"],
        capture_output=True, text=True, preexec_fn=limited_file_size(limit), timeout=300,
    )  # fmt: skip
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"Error: cannot write {out}: ") and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []
