"""``lshbench capture``: a real model's attention inputs as an input file (docs/inputs.md).

A thin layer over :func:`lshbench.measurement.attention_capture.capture`: parse, call, print.
"""

from __future__ import annotations

import click

from lshbench.measurement.attention_capture import HeadsCapture, capture
from lshbench.measurement.capture import CaptureWriteError

__all__ = ["capture_command"]


@click.command("capture")
@click.argument("model_dir")
@click.option(
    "--text", "text_path", required=True, metavar="FILE", help="Text file to run the model on."
)
@click.option(
    "--out", "out_path", required=True, metavar="FILE.npz", help="The .npz file to write."
)
@click.option(
    "--layer",
    metavar="N|all",
    default=None,
    help="Which layer: a model layer index or 'all' (default all); for a Reformer, which "
    "LSH layer (default 0, local layers not counted).",
)
@click.option(
    "--seqlen",
    type=int,
    metavar="L",
    default=None,
    help="Tokens to use (default: the whole text, at most the model's positions); "
    "a Reformer's are cropped down to a multiple of its chunk length.",
)
def capture_command(
    model_dir: str, text_path: str, out_path: str, layer: str | None, seqlen: int | None
) -> None:
    """Capture a local Hugging Face model MODEL_DIR's attention inputs on a text.

    BERT family (MiniLM, RoBERTa, ...) and GPT-2 family: per head, q (score scale folded
    in), k and v, with layer and head names, checked against the model's own attention
    weights; `lshbench sweep --input file:OUT` runs them with separate queries and keys.
    Reformer: one LSH layer's shared query/keys and values with its LSH configuration.

    Needs the peers extra: pip install -e '.[peers]'. Nothing is downloaded.
    """
    try:
        res = capture(model_dir, text_path, out_path, layer=layer, seqlen=seqlen)
    except CaptureWriteError as exc:  # the environment (permissions, disk full): exit 1
        raise click.ClickException(str(exc)) from exc
    if isinstance(res, HeadsCapture):
        n, length, width = res.shape
        layers = ",".join(map(str, res.layers))
        click.echo(
            f"wrote {res.out}: q, k and v ({n} heads: layers {layers} x {res.heads} heads, "
            f"L={length}, head_dim={width}) of a {res.model_type} model, {res.text_tokens} "
            f"tokens in the text ({res.tokenizer}), causal={res.causal}; softmax(q k^T) "
            f"matches the model's attention to {res.attention_error:.1e}"
        )
        return
    heads, length, width = res.qk_shape
    click.echo(
        f"wrote {res.out}: qk and v ({heads} heads, L={length}, head_dim={width}) from "
        f"LSH layer {res.lsh_layer} (model layer {res.model_layer}), {res.text_tokens} "
        f"tokens in the text ({res.tokenizer}), L a multiple of {res.chunk_multiple}"
    )
    click.echo("configuration: " + ", ".join(f"{k}={v}" for k, v in res.config.items()))
