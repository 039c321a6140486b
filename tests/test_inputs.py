"""The sweep's input generators: shapes, seeds, dtypes and the shape of each distribution."""

from __future__ import annotations

import numpy as np
import pytest

from lshbench import ConfigError
from lshbench.core.dense import dense_probability_blocks
from lshbench.measurement.inputs import GENERATORS, make_inputs


@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_dtypes_and_seeds(kind: str, dtype: type) -> None:
    qk, v = make_inputs(kind, 2, 33, 8, 5, seed=3, dtype=dtype)
    assert qk.shape == (2, 33, 8) and v.shape == (2, 33, 5)
    assert qk.dtype == dtype and v.dtype == dtype
    assert qk.flags.c_contiguous and v.flags.c_contiguous
    qk2, v2 = make_inputs(kind, 2, 33, 8, 5, seed=3, dtype=dtype)
    np.testing.assert_array_equal(qk, qk2)
    np.testing.assert_array_equal(v, v2)
    qk3, _ = make_inputs(kind, 2, 33, 8, 5, seed=4, dtype=dtype)
    assert not np.array_equal(qk, qk3)


@pytest.mark.parametrize("kind", GENERATORS)
def test_float32_is_the_float64_draw_rounded(kind: str) -> None:
    qk64, v64 = make_inputs(kind, 1, 40, 6, seed=1, dtype=np.float64)
    qk32, v32 = make_inputs(kind, 1, 40, 6, seed=1, dtype=np.float32)
    np.testing.assert_array_equal(qk32, qk64.astype(np.float32))
    np.testing.assert_array_equal(v32, v64.astype(np.float32))


@pytest.mark.parametrize("L", [10, 11])
def test_duplicate_second_half_copies_first(L: int) -> None:
    qk, v = make_inputs("duplicate", 2, L, 4, seed=0, dtype=np.float64)
    half = L // 2
    np.testing.assert_array_equal(qk[:, half : 2 * half], qk[:, :half])
    np.testing.assert_array_equal(v[:, half : 2 * half], v[:, :half])
    assert not np.array_equal(qk[:, : half - 1], qk[:, 1:half])  # not constant


def test_duplicate_query_attends_to_its_copy() -> None:
    """The copy is each query's top dense key (its score is |q|, others about N(0, 1))."""
    L = 64
    qk, _ = make_inputs("duplicate", 1, L, 32, seed=0, dtype=np.float64)
    top = np.concatenate([p.argmax(-1) for _, _, p, _ in dense_probability_blocks(qk, False)], 1)
    copy = (np.arange(L) + L // 2) % L
    assert (top[0] == copy).mean() == 1.0


@pytest.mark.parametrize("L", [1024, 4096])
def test_clustered_attention_is_concentrated(L: int) -> None:
    """Clusters of about 32 tokens at every L: a query's 64 heaviest keys (its cluster and
    then some) carry most of its dense attention; for gaussian input a small share."""

    def mass_on_top(kind: str, k: int = 64) -> float:
        qk, _ = make_inputs(kind, 1, L, 64, seed=0, dtype=np.float64)
        probs = np.concatenate([p for _, _, p, _ in dense_probability_blocks(qk, False)], 1)
        return float(np.sort(probs, axis=-1)[..., -k:].sum(-1).mean())

    assert mass_on_top("clustered") > 0.8
    assert mass_on_top("gaussian") < 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "uniform"}, "input="),
        ({"seqlen": 0}, "seqlen=0"),
        ({"d": -1}, "d=-1"),
        ({"dtype": np.float16}, "dtype=float16"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict, field: str) -> None:
    args = {"kind": "gaussian", "batch": 1, "seqlen": 8, "d": 4, "dtype": np.float32}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=field):
        make_inputs(**args)
