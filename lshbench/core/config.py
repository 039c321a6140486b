"""LSH attention configuration and the one error type for bad input.

Every check that rejects user input lives here (or calls :func:`fail`), so the message
format is the same everywhere: ``<field>=<value>: <rule>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from lshbench.util import shorten

__all__ = ["MAX_INT", "METHODS", "QK_MODES", "WEIGHTINGS", "ConfigError", "LSHConfig", "fail"]

#: how each round's buckets are chosen (docs/design.md section 2b); "lsh" is section 2
METHODS = ("lsh", "random", "local")
#: how a key present several times in a query's windows counts; "multiplicity" is section 2
WEIGHTINGS = ("multiplicity", "count-once")
#: whether queries double as keys ("shared", section 2) or come with their own keys
#: ("separate", docs/design.md section 2c: attention captured from BERT, GPT-2, ...)
QK_MODES = ("shared", "separate")


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


#: the largest value of any integer field (and of each n_buckets factor): positions,
#: buckets and chunk ids are indexed with 32-bit integers where they fit
MAX_INT = 2**31 - 1
#: the largest n_hashes * total buckets: bucket ids with their round offsets stay int64
MAX_ROUND_BUCKETS = 2**62


def _check_int(field: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        fail(field, value, f"must be an integer >= {minimum}")
    if int(value) > MAX_INT:
        fail(field, value, f"must be an integer in [{minimum}, {MAX_INT}]")
    return int(value)


@dataclass(frozen=True)
class LSHConfig:
    """Hyper-parameters of Reformer LSH self-attention (docs/design.md section 2).

    n_hashes:      rounds of hashing H (>= 1).
    n_buckets:     buckets per round: an even int, or a tuple of even ints (factorized;
                   total buckets = product, rotation columns = sum / 2).
    chunk_len:     m, queries per chunk after sorting (>= 1).
    causal:        mask keys whose position is after the query's.
    chunks_before: chunks each chunk looks back at (cyclically over all rounds).
    chunks_after:  chunks each chunk looks ahead at.
    method:        "lsh" (hashed buckets, section 2), "random" (each round's buckets drawn
                   at random, seeded from the rotations: same budget, no locality) or
                   "local" (one round, positions in order, chunks of chunk_len * n_hashes).
    weighting:     "multiplicity" (a key in k of a query's windows counts k times, section 2)
                   or "count-once" (each distinct key once: the exact softmax restricted to
                   the keys the windows contain).
    qk:            "shared" (queries are the keys, normalized; self mask; section 2) or
                   "separate" (``attend(q, v, ..., k=k)``: queries and keys hashed and sorted
                   apart, raw scores q.k, no mask; docs/design.md section 2c; non-causal).

    The sort/chunk/combine pipeline runs with :meth:`pipeline_config` (``rounds`` rounds,
    chunks of ``sort_chunk_len``); the sequence-length helpers below already use it.
    """

    n_hashes: int = 1
    n_buckets: int | tuple[int, ...] = 32
    chunk_len: int = 64
    causal: bool = False
    chunks_before: int = 1
    chunks_after: int = 0
    method: str = "lsh"
    weighting: str = "multiplicity"
    qk: str = "shared"

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
        if self.n_hashes * self.total_buckets > MAX_ROUND_BUCKETS:
            fail(
                "n_buckets",
                self.n_buckets,
                f"n_hashes * total buckets = {self.n_hashes} * {self.total_buckets} must be "
                f"at most 2**62",
            )
        if not isinstance(self.method, str) or self.method not in METHODS:
            fail("method", self.method, f"must be one of {', '.join(METHODS)}")
        if not isinstance(self.weighting, str) or self.weighting not in WEIGHTINGS:
            fail("weighting", self.weighting, f"must be one of {', '.join(WEIGHTINGS)}")
        if not isinstance(self.qk, str) or self.qk not in QK_MODES:
            fail("qk", self.qk, f"must be one of {', '.join(QK_MODES)}")
        if self.qk == "separate" and self.causal:
            fail(
                "causal",
                self.causal,
                "qk='separate' is non-causal only (a causal query may see no valid key in "
                "its windows; no rule for that is defined yet)",
            )

    @property
    def separate(self) -> bool:
        """True when queries and keys are separate arrays (``qk="separate"``)."""
        return self.qk == "separate"

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

    @property
    def rounds(self) -> int:
        """Rounds the pipeline sorts and combines: n_hashes, or 1 for ``local``."""
        return 1 if self.method == "local" else self.n_hashes

    @property
    def sort_chunk_len(self) -> int:
        """Queries per chunk in the pipeline: chunk_len, or chunk_len * n_hashes for ``local``
        (each query then sees as many keys as with n_hashes rounds of LSH)."""
        return self.chunk_len * self.n_hashes if self.method == "local" else self.chunk_len

    def pipeline_config(self) -> LSHConfig:
        """The configuration the sort/chunk/combine pipeline runs with.

        ``lsh`` and ``random``: this configuration. ``local``: one round of chunks of
        ``chunk_len * n_hashes`` (method stays ``local``; applying it twice changes nothing).
        """
        if self.method != "local":
            return self
        return replace(self, n_hashes=1, chunk_len=self.sort_chunk_len)

    def window_len(self, seqlen: int) -> int:
        """W: keys each query copy sees per round (``seqlen`` when the dense path applies)."""
        return seqlen if self.is_short(seqlen) else self.n_adjacent * self.sort_chunk_len

    def is_short(self, seqlen: int) -> bool:
        """True when ``seqlen <= sort_chunk_len``: like Hugging Face, attention is exact
        (dense)."""
        return seqlen <= self.sort_chunk_len

    def n_chunks(self, seqlen: int) -> int:
        """Total chunks over all rounds, ``rounds * L / sort_chunk_len`` (``H * L / m``)."""
        return self.rounds * seqlen // self.sort_chunk_len

    def check_seqlen(self, seqlen: int) -> None:
        """Reject a sequence length the sorted items cannot be chunked into."""
        if seqlen < 1:
            fail("seqlen", seqlen, "must be >= 1")
        if self.is_short(seqlen) or (self.rounds * seqlen) % self.sort_chunk_len == 0:
            return
        if self.method == "local":
            fail(
                "chunk_len",
                self.chunk_len,
                f"chunk_len*n_hashes = {self.chunk_len}*{self.n_hashes} = "
                f"{self.sort_chunk_len} must divide seqlen = {seqlen} for method local "
                "(or be >= seqlen)",
            )
        fail(
            "chunk_len",
            self.chunk_len,
            f"must divide n_hashes*seqlen = {self.n_hashes}*{seqlen} = "
            f"{self.n_hashes * seqlen} (or be >= seqlen)",
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists); ``qk`` only when separate (a shared-QK
        configuration keeps the form it had before separate queries and keys existed)."""
        nb = self.n_buckets
        out = {
            "n_hashes": self.n_hashes,
            "n_buckets": list(nb) if isinstance(nb, tuple) else nb,
            "chunk_len": self.chunk_len,
            "causal": self.causal,
            "chunks_before": self.chunks_before,
            "chunks_after": self.chunks_after,
            "method": self.method,
            "weighting": self.weighting,
        }
        if self.separate:
            out["qk"] = self.qk
        return out


def _check_buckets(value: Any) -> int | tuple[int, ...]:
    rule = "must be an even integer >= 2, or a non-empty tuple of them"
    if isinstance(value, (list, tuple)):
        if not value:
            fail("n_buckets", value, rule)
        factors = []
        for f in value:
            if not _is_int(f) or int(f) < 2 or int(f) % 2:
                fail("n_buckets", value, f"factor {f!r} is not even and >= 2; {rule}")
            if int(f) > MAX_INT:
                fail("n_buckets", value, f"factor {f!r} is above {MAX_INT}")
            factors.append(int(f))
        return tuple(factors)
    if not _is_int(value) or int(value) < 2 or int(value) % 2:
        fail("n_buckets", value, rule)
    if int(value) > MAX_INT:
        fail("n_buckets", value, f"must be at most {MAX_INT}")
    return int(value)
