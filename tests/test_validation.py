"""Bad input raises ConfigError naming the field, the value and the rule, before any work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lshbench

rng = np.random.default_rng(0)
QK = rng.standard_normal((64, 8)).astype(np.float32)
V = rng.standard_normal((64, 4)).astype(np.float32)
CFG = lshbench.LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16)
R = lshbench.random_rotations(8, CFG, seed=0)


def with_nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[3, 1] = np.nan
    return x


def with_inf(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[0, 0] = np.inf
    return x


def attend(qk=QK, v=V, cfg=CFG, rot=R, backend="numpy"):
    return lshbench.get_backend(backend).attend(qk, v, cfg, rot)


# (id, call, field, value as printed, a word of the rule)
CASES = [
    ("odd n_buckets", lambda: lshbench.LSHConfig(n_buckets=3), "n_buckets", "3", "even"),
    ("zero n_buckets", lambda: lshbench.LSHConfig(n_buckets=0), "n_buckets", "0", "even"),
    ("odd factor", lambda: lshbench.LSHConfig(n_buckets=(4, 3)), "n_buckets", "(4, 3)", "even"),
    ("empty factors", lambda: lshbench.LSHConfig(n_buckets=()), "n_buckets", "()", "non-empty"),
    ("float n_buckets", lambda: lshbench.LSHConfig(n_buckets=4.0), "n_buckets", "4.0", "even"),
    ("zero n_hashes", lambda: lshbench.LSHConfig(n_hashes=0), "n_hashes", "0", ">= 1"),
    ("zero chunk_len", lambda: lshbench.LSHConfig(chunk_len=0), "chunk_len", "0", ">= 1"),
    (
        "negative chunks_before",
        lambda: lshbench.LSHConfig(chunks_before=-1),
        "chunks_before",
        "-1",
        ">= 0",
    ),
    (
        "negative chunks_after",
        lambda: lshbench.LSHConfig(chunks_after=-2),
        "chunks_after",
        "-2",
        ">= 0",
    ),
    ("non-bool causal", lambda: lshbench.LSHConfig(causal="yes"), "causal", "yes", "True or False"),
    (
        "H*L not divisible",
        lambda: attend(cfg=lshbench.LSHConfig(1, 8, 24)),
        "chunk_len",
        "24",
        "divide",
    ),
    (
        "wrong rotation shape",
        lambda: attend(rot=R[:, :1]),
        "rotations.shape",
        "(8, 1, 4)",
        "must be",
    ),
    ("missing rotations", lambda: attend(rot=None), "rotations", "NoneType", "ndarray"),
    (
        "NaN rotations",
        lambda: attend(rot=with_nan(R.reshape(8, -1)).reshape(R.shape)),
        "rotations",
        "NaN",
        "finite",
    ),
    ("length mismatch", lambda: attend(v=V[:60]), "v.shape", "(60, 4)", "must match"),
    ("batch mismatch", lambda: attend(qk=QK[None], v=V), "v.shape", "(64, 4)", "must match"),
    ("NaN in qk", lambda: attend(qk=with_nan(QK)), "qk", "NaN", "finite"),
    ("Inf in v", lambda: attend(v=with_inf(V)), "v", "Inf", "finite"),
    (
        "integer dtype",
        lambda: attend(qk=QK.astype(np.int64), v=V.astype(np.int64)),
        "qk.dtype",
        "int64",
        "float32 or float64",
    ),
    ("mixed dtypes", lambda: attend(v=V.astype(np.float64)), "v.dtype", "float64", "must equal"),
    ("1-D qk", lambda: attend(qk=QK[:, 0], v=V[:, 0]), "qk.shape", "(64,)", "(L, d)"),
    ("list qk", lambda: attend(qk=QK.tolist()), "qk", "list", "ndarray"),
    ("config type", lambda: attend(cfg={"n_hashes": 2}), "config", "dict", "LSHConfig"),
    (
        "unknown backend",
        lambda: lshbench.get_backend("cuda-magic"),
        "backend",
        "cuda-magic",
        "unknown",
    ),
    ("bad d", lambda: lshbench.random_rotations(0, CFG), "d", "0", ">= 1"),
    (
        "hash with bad rotations",
        lambda: lshbench.hash_buckets(QK, R[:4], CFG),
        "rotations.shape",
        "(4, 2, 4)",
        "must be",
    ),
    ("dense: NaN", lambda: attend(qk=with_nan(QK), backend="dense"), "qk", "NaN", "finite"),
]


@pytest.mark.parametrize("call,field,value,rule", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_field_value_rule(call, field, value, rule) -> None:
    with pytest.raises(lshbench.ConfigError) as info:
        call()
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in msg
    assert msg.startswith(f"{field}="), msg
    assert value in msg, msg
    assert rule in msg, msg


def test_chunk_len_rule_allows_short_sequences() -> None:
    """L <= chunk_len takes the exact dense path (as Hugging Face), whatever H*L % m."""
    cfg = lshbench.LSHConfig(n_hashes=3, n_buckets=4, chunk_len=100)
    out = lshbench.get_backend("numpy").attend(QK, V, cfg, lshbench.random_rotations(8, cfg))
    dense = lshbench.get_backend("dense").attend(QK, V, cfg)
    np.testing.assert_allclose(out, dense, rtol=0, atol=1e-6)


def test_cli_prints_one_line_and_exits_2(tmp_path) -> None:
    """A ConfigError raised inside a command becomes one line on stderr, exit status 2."""
    script = tmp_path / "run.py"
    script.write_text(
        "import click, lshbench\n"
        "from lshbench.cli import main\n"
        "@main.command()\n"
        "def boom():\n"
        "    lshbench.LSHConfig(n_buckets=5)\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, str(script), "boom"], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "n_buckets=5" in lines[0] and "even" in lines[0]
    assert "Traceback" not in res.stderr


def test_cli_bad_option_is_one_line() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "backends", "--no-such-option"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


INT_FIELDS = {"n_hashes": 1, "chunk_len": 1, "chunks_before": 0, "chunks_after": 0}


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from([*INT_FIELDS, "n_buckets", "n_buckets factor"]),
    value=st.one_of(st.integers(2**31, 2**200), st.sampled_from([2**31, 2**63, 2**64, 2**70])),
    numpy_int=st.booleans(),
)
def test_integer_fields_too_large_are_refused_naming_the_field(
    field: str, value: int, numpy_int: bool
) -> None:
    """Every integer field has an upper bound: a ConfigError naming it, never a plain
    ValueError or OverflowError later."""
    value += value % 2  # even, so n_buckets fails for its size only
    if numpy_int and value < 2**63:
        value = np.int64(value)
    name = field.split()[0]
    kwargs = {name: (4, value) if field == "n_buckets factor" else value}
    with pytest.raises(lshbench.ConfigError) as info:
        lshbench.LSHConfig(**kwargs)
    assert str(info.value).startswith(f"{name}=") and "2147483647" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_hashes": 8, "n_buckets": (2**30, 2**30)}, "n_buckets"),  # 2**63 > 2**62
        ({"n_buckets": (2**30, 2**30, 2**30)}, "n_buckets"),
        ({"n_hashes": 4, "n_buckets": (2**30, 2**30, 8)}, "n_buckets"),
    ],
)
def test_round_buckets_beyond_int64_are_refused(kwargs: dict, field: str) -> None:
    with pytest.raises(lshbench.ConfigError, match=f"^{field}=.*2\\*\\*62"):
        lshbench.LSHConfig(**kwargs)


@pytest.mark.parametrize(("field", "minimum"), [*INT_FIELDS.items()])
def test_the_largest_allowed_integers_are_accepted(field: str, minimum: int) -> None:
    cfg = lshbench.LSHConfig(**{field: 2**31 - 1})
    assert getattr(cfg, field) == 2**31 - 1
    assert lshbench.LSHConfig(n_buckets=2**31 - 2).n_buckets == 2**31 - 2
