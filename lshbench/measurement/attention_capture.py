"""Capture a Hugging Face model's per-head queries, keys and values (``lshbench capture``).

For models with standard scaled dot-product self-attention (docs/design.md section 2c):

* the BERT family (``bert``, ``roberta``, ``xlm-roberta``, ``electra``, ``camembert``; e.g.
  sentence-transformers/all-MiniLM-L6-v2): forward hooks on each self-attention module's
  ``query``, ``key`` and ``value`` linear layers;
* the GPT-2 family (``gpt2``; causal): a forward hook on each ``c_attn`` projection, whose
  output is the queries, keys and values side by side.

The model is loaded from a local directory (``save_pretrained``'s layout, no download) with
eager attention and run once, in eval mode without gradients, on the text's first ``L``
tokens (its tokenizer when the directory has one, special tokens included; otherwise the
UTF-8 bytes + 2). Per layer and head, ``q``, ``k`` and ``v`` are (L, head_dim); the model's
score scale (``1/sqrt(head_dim)``, GPT-2's ``1/(layer+1)`` when configured) is folded into
``q``, so ``softmax(q @ k.T + causal mask)`` is the model's attention for that head. The
capture checks exactly that against the model's ``output_attentions`` and refuses a model
whose attention differs (relative positions, ALiBi, ...): :data:`MAX_ATTENTION_ERROR`.

The file (:mod:`lshbench.measurement.input_files`) holds ``q``, ``k``, ``v`` (N, L, head_dim)
float32 with N = layers x heads, layer-major; ``layer`` and ``head`` (N,) naming each row;
``input_ids`` (L,); ``causal``; provenance strings: the model's name, type and config hash,
the text's path and SHA-256, and the largest attention deviation found.

A Reformer directory is captured as before (:func:`lshbench.measurement.capture.
capture_model`: shared ``qk``). torch and transformers are imported only when a capture runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lshbench.core.config import fail
from lshbench.measurement.capture import (
    CaptureResult,
    _import_peers,
    _tokens,
    capture_model,
    check_out_path,
    check_seqlen,
    quiet_transformers,
    write_errors,
)
from lshbench.measurement.input_files import save_input_file
from lshbench.util import one_line

__all__ = [
    "BERT_TYPES",
    "GPT2_TYPES",
    "MAX_ATTENTION_ERROR",
    "HeadsCapture",
    "capture",
    "capture_heads",
]

#: model types captured through ``query`` / ``key`` / ``value`` linear layers
BERT_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")
#: model types captured through a fused ``c_attn`` projection (causal)
GPT2_TYPES = ("gpt2",)
#: largest |softmax(q k^T + mask) - output_attentions| a capture accepts (float32 model)
MAX_ATTENTION_ERROR = 1e-4


@dataclass(frozen=True)
class HeadsCapture:
    """What one per-head capture wrote.

    out: the .npz path; shape (N, L, head_dim) of q, k and v, N = layers x heads;
    layers: the model layers captured; heads: heads per layer; text_tokens: tokens in the
    text; seqlen: L; causal; model_type; tokenizer: its class name or "bytes+2";
    attention_error: the largest deviation of ``softmax(q k^T + mask)`` from the model's own
    attention weights, over every captured head.
    """

    out: str
    shape: tuple[int, ...]
    layers: tuple[int, ...]
    heads: int
    text_tokens: int
    seqlen: int
    causal: bool
    model_type: str
    tokenizer: str
    attention_error: float


def _load_config(transformers: Any, model_dir: Path) -> Any:
    """The directory's config, or ConfigError when it is not a model directory."""
    if not (model_dir / "config.json").is_file():
        fail("model_dir", str(model_dir), "has no config.json (save_pretrained's directory)")
    try:
        return transformers.AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError) as exc:
        fail("model_dir", str(model_dir), f"config.json unreadable: {one_line(exc)}")


def _check_supported(config: Any, model_dir: Path) -> str:
    """The model type, or ConfigError naming the supported ones."""
    kind = getattr(config, "model_type", None)
    supported = (*BERT_TYPES, *GPT2_TYPES, "reformer")
    if kind not in supported:
        fail(
            "model_dir",
            str(model_dir),
            f"is a {kind!r} model; capture supports {', '.join(supported)}",
        )
    positions = getattr(config, "position_embedding_type", "absolute")
    if kind in BERT_TYPES and positions not in (None, "absolute"):
        fail(
            "model_dir",
            str(model_dir),
            f"uses position_embedding_type={positions!r}: its attention is not softmax(q k^T)",
        )
    return kind


def _config_sha256(config: Any) -> str:
    """SHA-256 of the model's full configuration as sorted JSON."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _parse_layers(layer: int | str | None, n_layers: int) -> tuple[int, ...]:
    """``None`` or ``"all"``: every layer; an integer (or its text): that layer."""
    if layer is None or (isinstance(layer, str) and layer.strip().lower() == "all"):
        return tuple(range(n_layers))
    try:
        index = int(layer)
    except (TypeError, ValueError):
        fail("layer", layer, f"must be an integer in [0, {n_layers - 1}] or 'all'")
    if isinstance(layer, bool) or not 0 <= index < n_layers:
        fail("layer", layer, f"must be an integer in [0, {n_layers - 1}] or 'all'")
    return (index,)


def _capture_length(n_tokens: int, positions: int, seqlen: int | None, text: Path) -> int:
    """Tokens to run: ``seqlen``, or all of the text at most the model's positions."""
    check_seqlen(seqlen, n_tokens, positions, text)
    if seqlen is not None:
        return seqlen
    if n_tokens < 1:
        fail("text", str(text), "has no tokens")
    return min(n_tokens, positions)


def _attention_modules(model: Any, kind: str) -> list[Any]:
    """The self-attention modules of the model's layers, in layer order."""
    if kind in GPT2_TYPES:
        return [block.attn for block in model.h]
    return [layer.attention.self for layer in model.encoder.layer]


def _scaling(module: Any, kind: str) -> float:
    """The factor the module multiplies ``q . k`` by before its softmax."""
    if getattr(module, "scaling", None) is not None:
        return float(module.scaling)
    if kind in GPT2_TYPES:  # older transformers: no precomputed scaling
        scale = module.head_dim**-0.5 if module.scale_attn_weights else 1.0
        if module.scale_attn_by_inverse_layer_idx:
            scale /= float(module.layer_idx + 1)
        return scale
    return float(module.attention_head_size) ** -0.5


def _heads_of(module: Any, kind: str) -> int:
    return int(module.num_heads if kind in GPT2_TYPES else module.num_attention_heads)


def _hook(module: Any, kind: str, seen: list) -> list[Any]:
    """Forward hooks that append ``(q, k, v)`` (1, L, heads * head_dim) of one pass."""
    if kind in GPT2_TYPES:
        width = int(module.split_size)

        def fused(mod: Any, args: Any, out: Any) -> None:
            seen.append(tuple(out.split(width, dim=-1)))

        return [module.c_attn.register_forward_hook(fused)]
    parts: dict[str, Any] = {}

    def part(name: str) -> Any:
        def record(mod: Any, args: Any, out: Any) -> None:
            parts[name] = out
            if len(parts) == 3:
                seen.append((parts.pop("q"), parts.pop("k"), parts.pop("v")))

        return record

    return [
        module.query.register_forward_hook(part("q")),
        module.key.register_forward_hook(part("k")),
        module.value.register_forward_hook(part("v")),
    ]


def _per_head(x: Any, heads: int) -> np.ndarray:
    """(1, L, heads * head_dim) tensor -> (heads, L, head_dim) float64 array."""
    _, length, width = x.shape
    a = x.detach().to("cpu").double().numpy()[0]  # (L, heads * hd)
    return a.reshape(length, heads, width // heads).transpose(1, 0, 2)  # (heads, L, hd)


def _attention_error(q: np.ndarray, k: np.ndarray, weights: np.ndarray, causal: bool) -> float:
    """max |softmax(q k^T + mask) - weights| over heads, in float64.

    q, k: (heads, L, hd) with the scale folded into q; weights: (heads, L, L), the model's."""
    scores = q @ k.transpose(0, 2, 1)  # (heads, L, hd) @ (heads, hd, L) -> (heads, L, L)
    if causal:
        L = scores.shape[-1]
        scores[:, np.triu(np.ones((L, L), dtype=bool), 1)] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    return float(np.abs(probs - weights).max())


def _load_model(transformers: Any, model_dir: Path) -> Any:
    """The model body with eager attention, eval mode, or ConfigError."""
    try:
        return transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        fail("model_dir", str(model_dir), f"cannot load the model: {one_line(exc)}")


def capture_heads(
    model_dir: str | os.PathLike,
    text_path: str | os.PathLike,
    out_path: str | os.PathLike,
    layer: int | str | None = None,
    seqlen: int | None = None,
) -> HeadsCapture:
    """Capture q, k, v of every head of the chosen layers; write them to ``out_path``.

    model_dir: a local BERT- or GPT-2-family model directory; text_path: the text file;
    layer: a model layer index, or None / "all" for every layer; seqlen: tokens to use
    (default: the whole text, at most the model's positions). Raises ConfigError (one line)
    for a missing directory or text, an unsupported model, a bad layer or seqlen, missing
    torch/transformers; RuntimeError when the captured heads do not reproduce the model's
    attention weights to :data:`MAX_ATTENTION_ERROR`.
    """
    model_dir, text_path, out_path = Path(model_dir), Path(text_path), Path(out_path)
    if not model_dir.is_dir():
        fail("model_dir", str(model_dir), "no such directory")
    check_out_path(out_path)
    torch, transformers = _import_peers()
    config = _load_config(transformers, model_dir)
    kind = _check_supported(config, model_dir)
    if kind == "reformer":
        fail("model_dir", str(model_dir), "is a Reformer: capture it with capture_model")
    n_layers = int(config.num_hidden_layers if kind in BERT_TYPES else config.n_layer)
    layers = _parse_layers(layer, n_layers)
    positions = int(config.max_position_embeddings if kind in BERT_TYPES else config.n_positions)
    causal = kind in GPT2_TYPES or bool(getattr(config, "is_decoder", False))
    with quiet_transformers(transformers):  # e.g. "sequence longer than the model's"
        ids, tokenizer = _tokens(transformers, model_dir, text_path, int(config.vocab_size))
        length = _capture_length(len(ids), positions, seqlen, text_path)
        model = _load_model(transformers, model_dir)
        modules = _attention_modules(model, kind)
        seen: dict[int, list] = {i: [] for i in layers}
        hooks = [h for i in layers for h in _hook(modules[i], kind, seen[i])]
        try:
            with torch.no_grad():
                result = model(
                    input_ids=torch.tensor([ids[:length]], dtype=torch.long),
                    output_attentions=True,
                )
        finally:
            for h in hooks:
                h.remove()
    q_rows, k_rows, v_rows, layer_of, head_of = [], [], [], [], []
    error = 0.0
    for i in layers:
        if len(seen[i]) != 1:
            raise RuntimeError(f"capture: layer {i}'s projections ran {len(seen[i])} times")
        heads = _heads_of(modules[i], kind)
        q, k, v = (_per_head(x, heads) for x in seen[i][0])  # each (heads, L, hd)
        q *= _scaling(modules[i], kind)  # the model's score scale, folded into q
        weights = result.attentions[i][0].double().numpy()  # (heads, L, L)
        error = max(error, _attention_error(q, k, weights, causal))
        q_rows.append(q)
        k_rows.append(k)
        v_rows.append(v)
        layer_of += [i] * heads
        head_of += list(range(heads))
    if not error <= MAX_ATTENTION_ERROR:
        raise RuntimeError(
            f"capture: softmax(q k^T) differs from {model_dir}'s attention weights by "
            f"{error:.3g} (> {MAX_ATTENTION_ERROR}); not standard self-attention"
        )
    q, k, v = (np.concatenate(x).astype(np.float32) for x in (q_rows, k_rows, v_rows))
    meta = {
        "model": getattr(config, "_name_or_path", "") or model_dir.name,
        "model_dir": str(model_dir),
        "model_type": kind,
        "config_sha256": _config_sha256(config),
        "text": str(text_path),
        "text_sha256": hashlib.sha256(text_path.read_bytes()).hexdigest(),
        "tokenizer": tokenizer,
        "attention_error": f"{error:.3g}",
    }
    with write_errors(out_path):
        save_input_file(
            out_path, q, v, {"causal": causal}, meta=meta, k=k,
            layer=np.asarray(layer_of), head=np.asarray(head_of),
            input_ids=np.asarray(ids[:length]),
        )  # fmt: skip
    return HeadsCapture(
        out=str(out_path),
        shape=q.shape,
        layers=layers,
        heads=_heads_of(modules[layers[0]], kind),
        text_tokens=len(ids),
        seqlen=length,
        causal=causal,
        model_type=kind,
        tokenizer=tokenizer,
        attention_error=error,
    )


def capture(
    model_dir: str | os.PathLike,
    text_path: str | os.PathLike,
    out_path: str | os.PathLike,
    layer: int | str | None = None,
    seqlen: int | None = None,
) -> CaptureResult | HeadsCapture:
    """``lshbench capture`` for any supported directory: a Reformer's shared qk and v of one
    LSH layer (``layer`` default 0, :func:`~lshbench.measurement.capture.capture_model`), or
    another model's per-head q, k and v (:func:`capture_heads`, ``layer`` default all)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        fail("model_dir", str(model_dir), "no such directory")
    _, transformers = _import_peers()
    kind = _check_supported(_load_config(transformers, model_dir), model_dir)
    if kind != "reformer":
        return capture_heads(model_dir, text_path, out_path, layer, seqlen)
    if layer is None:
        layer = 0
    elif isinstance(layer, str):
        if not layer.strip().lstrip("-").isdigit():
            fail("layer", layer, "must be an integer for a Reformer (its LSH layer)")
        layer = int(layer)
    return capture_model(model_dir, text_path, out_path, layer=layer, seqlen=seqlen)
