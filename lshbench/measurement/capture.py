"""Capture a real Reformer's shared query/key vectors and values (``lshbench capture``).

A local Hugging Face Reformer checkpoint (``ReformerModelWithLMHead`` or any Reformer
saved with ``save_pretrained``) is run on a text, in eval mode without gradients, with
forward hooks on one LSH layer's ``attention.self_attention.query_key`` and ``.value``
linear projections. Their outputs, (1, L, heads * head_dim), become ``qk`` and ``v`` of
shape (heads, L, head_dim): one sequence per head. The model's own LSH configuration
(``num_hashes``, ``num_buckets``, ``lsh_attn_chunk_length``, ``lsh_num_chunks_before/after``,
``is_decoder``) is stored with them, so ``load_input_file`` reads both.

Tokens: the model directory's tokenizer when it has tokenizer files, otherwise the text's
UTF-8 bytes + 2 (the byte-level ``google/reformer-enwik8`` convention). The token sequence
is cut to ``seqlen`` (default: all of it, at most the model's positions) and then CROPPED
DOWN to a multiple of the model's chunk length (the least common multiple of its LSH and
local chunk lengths, as Hugging Face requires), never padded: no pad token enters the data.

LSH layers before the captured one hash with random rotations (``torch.randn``, unless the
model's ``hash_seed`` is set), so their outputs, and the captured layer's inputs, depend on
the draw: the forward pass runs under ``torch.manual_seed(CAPTURE_SEED)`` (the caller's
torch random state is restored), so the same model, text and layer give the same file.

torch and transformers (the ``peers`` extra) are imported only when a capture runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lshbench.core.config import fail
from lshbench.measurement.input_files import save_input_file
from lshbench.util import one_line, os_error_reason

__all__ = [
    "CAPTURE_SEED",
    "TOKENIZER_FILES",
    "CaptureResult",
    "CaptureWriteError",
    "capture_model",
    "check_seqlen",
    "model_chunk_multiple",
    "quiet_transformers",
]

#: files that mark a model directory as carrying its own tokenizer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "tokenizer.model")
#: torch seed of the forward pass: the rotations of the LSH layers before the captured one
CAPTURE_SEED = 0
#: token ids of the byte-level models: UTF-8 byte + this offset (0 pad, 1 unused)
BYTE_OFFSET = 2


@dataclass(frozen=True)
class CaptureResult:
    """What one capture wrote.

    out: the .npz path; qk_shape (heads, L, head_dim) and v_shape; text_tokens: tokens in
    the text; seqlen: L captured (a multiple of chunk_multiple); lsh_layer: index among
    the model's LSH layers; model_layer: index among all its layers; config: the stored
    LSH configuration; tokenizer: "bytes+2" or the tokenizer's class name.
    """

    out: str
    qk_shape: tuple[int, ...]
    v_shape: tuple[int, ...]
    text_tokens: int
    seqlen: int
    chunk_multiple: int
    lsh_layer: int
    model_layer: int
    config: dict[str, Any]
    tokenizer: str


class CaptureWriteError(OSError):
    """Writing the captured file failed (permissions, a full disk): one line naming the file
    and the OS error. The file is written to a temporary name and renamed, so ``out`` is
    either what it was before or the complete capture."""

    def __init__(self, out: Path, exc: OSError) -> None:
        super().__init__(f"cannot write {out}: {os_error_reason(exc)}")
        self.errno = exc.errno


def _import_peers() -> tuple[Any, Any]:
    """``(torch, transformers)`` or ConfigError saying how to install them."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        fail("capture", exc.name or "torch", "not installed; pip install -e '.[peers]'")
    return torch, transformers


def model_chunk_multiple(config: Any) -> int:
    """The length every input must be a multiple of: the least common multiple of the
    chunk lengths of the attention types the model uses (a ReformerConfig)."""
    lengths = {"lsh": config.lsh_attn_chunk_length, "local": config.local_attn_chunk_length}
    return math.lcm(*(int(lengths[kind]) for kind in set(config.attn_layers) if kind in lengths))


def _load_config(transformers: Any, model_dir: Path) -> Any:
    """The directory's ReformerConfig, or ConfigError (not a model, not a Reformer, no LSH)."""
    if not (model_dir / "config.json").is_file():
        fail("model_dir", str(model_dir), "has no config.json (save_pretrained's directory)")
    try:
        config = transformers.AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        fail("model_dir", str(model_dir), f"config.json unreadable: {exc}")
    if getattr(config, "model_type", None) != "reformer":
        fail("model_dir", str(model_dir), f"is a {config.model_type!r} model, not a Reformer")
    if "lsh" not in list(config.attn_layers):
        fail("model_dir", str(model_dir), f"has no LSH layers (attn_layers {config.attn_layers})")
    return config


def _tokens(transformers: Any, model_dir: Path, text_path: Path, vocab: int) -> tuple[list, str]:
    """Token ids of the text, and the tokenizer's name."""
    if not text_path.is_file():
        fail("text", str(text_path), "no such file")
    raw = text_path.read_bytes()
    if any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        ids = list(tokenizer(raw.decode("utf-8", errors="replace"))["input_ids"])
        name = type(tokenizer).__name__
    else:
        ids = [byte + BYTE_OFFSET for byte in raw]
        name = f"bytes+{BYTE_OFFSET}"
    if ids and max(ids) >= vocab:
        fail("text", str(text_path), f"token id {max(ids)} >= the model's vocab_size {vocab}")
    return ids, name


def check_seqlen(seqlen: int | None, n_tokens: int, positions: int, text_path: Path) -> None:
    """ConfigError unless ``seqlen`` is None or an integer in [1, min(tokens, positions)]."""
    if seqlen is None:
        return
    if isinstance(seqlen, bool) or not isinstance(seqlen, int) or seqlen < 1:
        fail("seqlen", seqlen, "must be an integer >= 1")
    if seqlen > n_tokens:
        fail("seqlen", seqlen, f"exceeds the text's {n_tokens} tokens ({text_path})")
    if seqlen > positions:
        fail("seqlen", seqlen, f"exceeds the model's {positions} positions")


@contextmanager
def quiet_transformers(transformers: Any) -> Iterator[None]:
    """transformers' logging at error level and no progress bars for the block (its notes
    on unused weights, long inputs, num_buckets), restored after."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _capture_length(config: Any, n_tokens: int, seqlen: int | None, text_path: Path) -> int:
    """Tokens to run: seqlen (or all, at most the model's positions) cropped down to a
    multiple of the model's chunk length; ConfigError when that leaves nothing."""
    positions = int(config.max_position_embeddings)
    if config.axial_pos_embds:  # axial position embeddings cover prod(axial_pos_shape)
        positions = min(positions, math.prod(int(n) for n in config.axial_pos_shape))
    check_seqlen(seqlen, n_tokens, positions, text_path)
    limit = min(n_tokens, positions) if seqlen is None else seqlen
    multiple = model_chunk_multiple(config)
    if limit < multiple:
        fail(
            "text",
            str(text_path),
            f"has {limit} tokens to use, fewer than one chunk ({multiple}) of the model",
        )
    return limit // multiple * multiple


def _load_model(transformers: Any, model_dir: Path) -> Any:
    """The checkpoint's Reformer body (no LM head needed) in eval mode, or ConfigError."""
    try:
        return transformers.ReformerModel.from_pretrained(model_dir).eval()
    except Exception as exc:  # OSError, ValueError, a damaged weights file (SafetensorError)
        fail("model_dir", str(model_dir), f"cannot load the model: {one_line(exc)}")


def _lsh_attention(model: Any, lsh_layer: int) -> tuple[int, Any]:
    """(index among all layers, the LSHSelfAttention module) of the lsh_layer-th LSH layer."""
    from transformers.models.reformer.modeling_reformer import LSHSelfAttention

    found = [
        (i, layer.attention.self_attention)
        for i, layer in enumerate(model.encoder.layers)
        if isinstance(layer.attention.self_attention, LSHSelfAttention)
    ]
    ok = isinstance(lsh_layer, int) and not isinstance(lsh_layer, bool)
    if not ok or not 0 <= lsh_layer < len(found):
        fail("layer", lsh_layer, f"must be in [0, {len(found) - 1}], the model's LSH layers")
    return found[lsh_layer]


def _lsh_config(attention: Any, seqlen: int) -> dict[str, Any]:
    """The layer's LSH configuration as lshbench fields (after a forward pass of seqlen)."""
    if attention.num_buckets is None:  # set by HF on the first long-enough forward pass
        attention._set_num_buckets(seqlen)
    buckets = attention.num_buckets
    return {
        "n_hashes": int(attention.num_hashes),
        "n_buckets": tuple(int(b) for b in buckets)
        if isinstance(buckets, (list, tuple))
        else int(buckets),
        "chunk_len": int(attention.chunk_length),
        "chunks_before": int(attention.num_chunks_before),
        "chunks_after": int(attention.num_chunks_after),
        "causal": bool(attention.is_decoder),
    }


def _per_head(x: Any, heads: int) -> np.ndarray:
    """(1, L, heads * head_dim) tensor -> (heads, L, head_dim) float32 array."""
    batch, length, width = x.shape
    x = x.detach().to("cpu").float().numpy()
    x = x.reshape(batch, length, heads, width // heads)  # (B, L, heads, hd)
    x = x.transpose(0, 2, 1, 3).reshape(batch * heads, length, width // heads)  # (B*heads, L, hd)
    return np.ascontiguousarray(x, dtype=np.float32)


def _run_hooked(torch: Any, model: Any, attention: Any, ids: list) -> tuple[Any, Any]:
    """Run the model once on ids; the outputs of attention's query_key and value layers."""
    seen: dict[str, list] = {"qk": [], "v": []}
    hooks = [
        attention.query_key.register_forward_hook(lambda m, a, out: seen["qk"].append(out)),
        attention.value.register_forward_hook(lambda m, a, out: seen["v"].append(out)),
    ]
    try:
        # earlier LSH layers hash with torch.randn rotations (unless config.hash_seed): seed
        # them so a capture is reproducible, without touching the caller's torch RNG
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(CAPTURE_SEED)
            model(input_ids=torch.tensor([ids], dtype=torch.long))
    finally:
        for hook in hooks:
            hook.remove()
    if len(seen["qk"]) != 1 or len(seen["v"]) != 1:
        raise RuntimeError(f"capture: projections ran {len(seen['qk'])} times, expected once")
    return seen["qk"][0], seen["v"][0]


def check_out_path(out_path: Path) -> None:
    """ConfigError (one line) when ``out_path`` cannot name the .npz to write: a directory,
    or in a folder that does not exist."""
    if out_path.is_dir():
        fail("out", str(out_path), "is a directory; give the .npz file to write")
    if not out_path.parent.is_dir():
        fail("out", str(out_path), "its folder does not exist")


@contextmanager
def write_errors(out_path: Path) -> Iterator[None]:
    """An OSError while writing ``out_path`` (permissions, disk full) as a
    :class:`CaptureWriteError`: an environment fault, not bad input."""
    try:
        yield
    except OSError as exc:
        raise CaptureWriteError(out_path, exc) from exc


def capture_model(
    model_dir: str | os.PathLike,
    text_path: str | os.PathLike,
    out_path: str | os.PathLike,
    layer: int = 0,
    seqlen: int | None = None,
) -> CaptureResult:
    """Capture one LSH layer's qk and v for a text and write them to ``out_path`` (.npz).

    model_dir: a local Reformer checkpoint directory; text_path: the text file; layer: which
    LSH layer (0 = the model's first LSH layer, counting only LSH layers); seqlen: tokens
    to use (default all, at most the model's positions), cropped down to a multiple of the
    model's chunk length. Writes qk (heads, L, head_dim), v (heads, L, head_dim) float32 and
    the layer's LSH configuration (see :mod:`lshbench.measurement.input_files`). Raises
    ConfigError (one line) for a missing directory or text, a model without LSH layers, a
    text shorter than one chunk, a bad layer or seqlen, missing torch/transformers.
    """
    model_dir, text_path, out_path = Path(model_dir), Path(text_path), Path(out_path)
    if not model_dir.is_dir():
        fail("model_dir", str(model_dir), "no such directory")
    check_out_path(out_path)
    torch, transformers = _import_peers()
    config = _load_config(transformers, model_dir)
    ids, tokenizer = _tokens(transformers, model_dir, text_path, int(config.vocab_size))
    length = _capture_length(config, len(ids), seqlen, text_path)
    with quiet_transformers(transformers):
        model = _load_model(transformers, model_dir)
        model_layer, attention = _lsh_attention(model, layer)
        qk, v = _run_hooked(torch, model, attention, ids[:length])
        lsh = _lsh_config(attention, length)
    heads = int(attention.num_attention_heads)
    qk, v = _per_head(qk, heads), _per_head(v, heads)  # (heads, L, head_dim)
    meta = {"model_dir": str(model_dir), "text": str(text_path), "layer": str(model_layer)}
    with write_errors(out_path):
        save_input_file(out_path, qk, v, lsh, meta=meta)
    return CaptureResult(
        out=str(out_path),
        qk_shape=qk.shape,
        v_shape=v.shape,
        text_tokens=len(ids),
        seqlen=length,
        chunk_multiple=model_chunk_multiple(config),
        lsh_layer=layer,
        model_layer=model_layer,
        config=lsh,
        tokenizer=tokenizer,
    )
