"""``lshbench explain``: a thin layer over :func:`lshbench.explain.explain_text`."""

from __future__ import annotations

import click

from lshbench.core.config import LSHConfig
from lshbench.core.options import N_BUCKETS_FORMS, format_n_buckets, parse_n_buckets_value
from lshbench.explain import LAB_CONFIG, LAB_D, LAB_DV, LAB_SEED, LAB_SEQLEN, explain_text

__all__ = ["explain"]


@click.command("explain")
@click.option("-L", "--seqlen", default=LAB_SEQLEN, show_default=True, help="Sequence length L.")
@click.option("--n-hashes", default=LAB_CONFIG.n_hashes, show_default=True, help="Rounds.")
@click.option(
    "--n-buckets",
    default=format_n_buckets(LAB_CONFIG.n_buckets),
    show_default=True,
    help=f"Buckets per round, one value: {N_BUCKETS_FORMS} (a comma would separate list "
    "values, as in sweep).",
)
@click.option("--chunk-len", default=LAB_CONFIG.chunk_len, show_default=True, help="Chunk m.")
@click.option("-d", "--d", "d", default=LAB_D, show_default=True, help="Query/key size d.")
@click.option("--d-v", "--dv", "dv", default=LAB_DV, show_default=True, help="Value size.")
@click.option(
    "--chunks-before",
    default=LAB_CONFIG.chunks_before,
    show_default=True,
    help="Chunks each chunk looks back at.",
)
@click.option(
    "--chunks-after",
    default=LAB_CONFIG.chunks_after,
    show_default=True,
    help="Chunks each chunk looks ahead at.",
)
@click.option("--causal/--no-causal", default=False, show_default=True, help="Mask future keys.")
@click.option("--seed", default=LAB_SEED, show_default=True, help="Seed of data and rotations.")
@click.option("--query", default=0, show_default=True, help="Position shown in detail.")
@click.option("--precision", default=4, show_default=True, help="Digits printed.")
def explain(
    *,
    seqlen: int,
    n_hashes: int,
    n_buckets: str,
    chunk_len: int,
    d: int,
    dv: int,
    chunks_before: int,
    chunks_after: int,
    causal: bool,
    seed: int,
    query: int,
    precision: int,
) -> None:
    """Walk LSH attention on a tiny input (defaults: the Coursera lab) and show why the
    rounds are combined with a softmax over their logsumexps."""
    config = LSHConfig(
        n_hashes=n_hashes,
        n_buckets=parse_n_buckets_value(n_buckets),
        chunk_len=chunk_len,
        causal=causal,
        chunks_before=chunks_before,
        chunks_after=chunks_after,
    )
    click.echo(explain_text(config, seqlen, d, dv, seed, query=query, precision=precision))
