"""``lshbench capture``: a real Reformer's qk and v as an input file (docs/inputs.md).

A thin layer over :func:`lshbench.measurement.capture.capture_model`: parse, call, print.
"""

from __future__ import annotations

import click

from lshbench.measurement.capture import CaptureWriteError, capture_model

__all__ = ["capture"]


@click.command()
@click.argument("model_dir")
@click.option(
    "--text", "text_path", required=True, metavar="FILE", help="Text file to run the model on."
)
@click.option(
    "--out", "out_path", required=True, metavar="FILE.npz", help="The .npz file to write."
)
@click.option(
    "--layer",
    type=int,
    metavar="N",
    default=0,
    show_default=True,
    help="Which LSH layer: 0 is the model's first LSH layer (local layers not counted).",
)
@click.option(
    "--seqlen",
    type=int,
    metavar="L",
    default=None,
    help="Tokens to use (default: the whole text, at most the model's positions); "
    "cropped down to a multiple of the model's chunk length.",
)
def capture(model_dir: str, text_path: str, out_path: str, layer: int, seqlen: int | None) -> None:
    """Capture one LSH layer's shared query/keys and values from a local Hugging Face
    Reformer checkpoint MODEL_DIR run on a text; write them, per head, with the layer's
    LSH configuration to an .npz that `lshbench sweep --input file:OUT` reads.

    Needs the peers extra: pip install -e '.[peers]'.
    """
    try:
        res = capture_model(model_dir, text_path, out_path, layer=layer, seqlen=seqlen)
    except CaptureWriteError as exc:  # the environment (permissions, disk full): exit 1
        raise click.ClickException(str(exc)) from exc
    heads, length, width = res.qk_shape
    click.echo(
        f"wrote {res.out}: qk and v ({heads} heads, L={length}, head_dim={width}) from "
        f"LSH layer {res.lsh_layer} (model layer {res.model_layer}), {res.text_tokens} "
        f"tokens in the text ({res.tokenizer}), L a multiple of {res.chunk_multiple}"
    )
    click.echo("configuration: " + ", ".join(f"{k}={v}" for k, v in res.config.items()))
