"""LSH attention configuration and the one error type for bad input.

Every check that rejects user input lives here (or calls :func:`fail`), so the message
format is the same everywhere: ``<field>=<value>: <rule>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NoReturn

from lshbench.util import shorten

__all__ = ["ConfigError", "LSHConfig", "fail"]


class ConfigError(ValueError):
    """Invalid input. The message names the field, the value and the rule, on one line."""


def fail(field: str, value: Any, rule: str) -> NoReturn:
    """Raise :class:`ConfigError` as ``field=value: rule``."""
    text = repr(value) if not isinstance(value, str) else value
    raise ConfigError(f"{field}={shorten(text, 80)}: {rule}")


def _is_int(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (
        hasattr(x, "dtype") and getattr(x, "ndim", 1) == 0 and x.dtype.kind in "iu"
    )


def _check_int(field: str, value: Any, minimum: int) -> int:
    if not _is_int(value):
        fail(field, value, f"must be an integer >= {minimum}")
    if int(value) < minimum:
        fail(field, value, f"must be an integer >= {minimum}")
    return int(value)


@dataclass(frozen=True)
class LSHConfig:
    """Hyper-parameters of Reformer LSH self-attention (DESIGN.md section 2).

    n_hashes:      rounds of hashing H (>= 1).
    n_buckets:     buckets per round: an even int, or a tuple of even ints (factorized;
                   total buckets = product, rotation columns = sum / 2).
    chunk_len:     m, queries per chunk after sorting (>= 1).
    causal:        mask keys whose position is after the query's.
    chunks_before: chunks each chunk looks back at (cyclically over all rounds).
    chunks_after:  chunks each chunk looks ahead at.
    """

    n_hashes: int = 1
    n_buckets: int | tuple[int, ...] = 32
    chunk_len: int = 64
    causal: bool = False
    chunks_before: int = 1
    chunks_after: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_hashes", _check_int("n_hashes", self.n_hashes, 1))
        object.__setattr__(self, "chunk_len", _check_int("chunk_len", self.chunk_len, 1))
        object.__setattr__(
            self, "chunks_before", _check_int("chunks_before", self.chunks_before, 0)
        )
        object.__setattr__(self, "chunks_after", _check_int("chunks_after", self.chunks_after, 0))
        if not isinstance(self.causal, bool):
            fail("causal", self.causal, "must be True or False")
        object.__setattr__(self, "n_buckets", _check_buckets(self.n_buckets))

    @property
    def factors(self) -> tuple[int, ...]:
        """Bucket counts per factor: ``(n_buckets,)`` when not factorized."""
        nb = self.n_buckets
        return nb if isinstance(nb, tuple) else (nb,)

    @property
    def total_buckets(self) -> int:
        """nb: buckets per round (product of the factors)."""
        return math.prod(self.factors)

    @property
    def rot_size(self) -> int:
        """Sum of the factors; the rotations have ``rot_size // 2`` columns per round."""
        return sum(self.factors)

    @property
    def n_adjacent(self) -> int:
        """Chunks in each query's window: ``1 + chunks_before + chunks_after``."""
        return 1 + self.chunks_before + self.chunks_after

    def window_len(self, seqlen: int) -> int:
        """W: keys each query copy sees per round (``seqlen`` when the dense path applies)."""
        return seqlen if self.is_short(seqlen) else self.n_adjacent * self.chunk_len

    def is_short(self, seqlen: int) -> bool:
        """True when ``seqlen <= chunk_len``: like Hugging Face, attention is exact (dense)."""
        return seqlen <= self.chunk_len

    def n_chunks(self, seqlen: int) -> int:
        """Total chunks over all rounds, ``H * L / m``."""
        return self.n_hashes * seqlen // self.chunk_len

    def check_seqlen(self, seqlen: int) -> None:
        """Reject a sequence length the sorted items cannot be chunked into."""
        if seqlen < 1:
            fail("seqlen", seqlen, "must be >= 1")
        if not self.is_short(seqlen) and (self.n_hashes * seqlen) % self.chunk_len:
            fail(
                "chunk_len",
                self.chunk_len,
                f"must divide n_hashes*seqlen = {self.n_hashes}*{seqlen} = "
                f"{self.n_hashes * seqlen} (or be >= seqlen)",
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        nb = self.n_buckets
        return {
            "n_hashes": self.n_hashes,
            "n_buckets": list(nb) if isinstance(nb, tuple) else nb,
            "chunk_len": self.chunk_len,
            "causal": self.causal,
            "chunks_before": self.chunks_before,
            "chunks_after": self.chunks_after,
        }


def _check_buckets(value: Any) -> int | tuple[int, ...]:
    rule = "must be an even integer >= 2, or a non-empty tuple of them"
    if isinstance(value, (list, tuple)):
        if not value:
            fail("n_buckets", value, rule)
        factors = []
        for f in value:
            if not _is_int(f) or int(f) < 2 or int(f) % 2:
                fail("n_buckets", value, f"factor {f!r} is not even and >= 2; {rule}")
            factors.append(int(f))
        return tuple(factors)
    if not _is_int(value) or int(value) < 2 or int(value) % 2:
        fail("n_buckets", value, rule)
    return int(value)
