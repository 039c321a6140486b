"""The option parsers every command shares (lshbench.core.options): one meaning of a comma
(a list of values) and of ``x`` (the factors of one ``n_buckets``) in sweep, explain and
TOML config files."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lshbench import ConfigError
from lshbench.cli import main
from lshbench.core.options import (
    format_n_buckets,
    parse_int,
    parse_ints,
    parse_n_buckets,
    parse_n_buckets_value,
)
from lshbench.sweep.spec import build_spec


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("64", 64),
        (64, 64),
        ("16x32", (16, 32)),
        ("16X32", (16, 32)),
        ([16, 32], (16, 32)),  # a TOML list inside the n_buckets list
        ("2x2x4", (2, 2, 4)),
    ],
)
def test_one_n_buckets_value(value, want) -> None:
    assert parse_n_buckets_value(value) == want
    assert parse_n_buckets_value(format_n_buckets(want)) == want  # written as it is read


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "16,32",
            "n_buckets=16,32: takes one value (a comma separates list values); "
            "write factors as 16x32",
        ),
        ("(16, 32)", "write factors as 16x32"),
        ("a,b", "write factors as 16x32"),
        ("5", "n_buckets=5: must be an even integer >= 2, or even factors like 16x32"),
        ("16x3", "n_buckets=16x3: must be an even integer"),
        ("-4", "n_buckets=-4: must be an integer >= 2"),
        ("4294967296x4294967296", "product of the factors"),
    ],
)
def test_bad_n_buckets_value_is_one_line(value, message) -> None:
    with pytest.raises(ConfigError) as err:
        parse_n_buckets_value(value)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_comma_separates_values_of_the_n_buckets_list() -> None:
    assert parse_n_buckets("16,32") == (16, 32)  # two values
    assert parse_n_buckets("16x32") == ((16, 32),)  # one factorized value
    assert parse_n_buckets("rule, 16x32,64") == ("rule", (16, 32), 64)
    assert parse_n_buckets(["auto", [16, 32], "64"]) == ("auto", (16, 32), 64)  # TOML
    assert parse_ints("seqlen", "8,16,8", 1) == (8, 16)
    with pytest.raises(ConfigError, match="n_buckets=7: must be 'rule', 'auto', an even"):
        parse_n_buckets("16,7")
    with pytest.raises(ConfigError, match="seqlen=x: must be an integer >= 1"):
        parse_int("seqlen", "x", 1)


def test_sweep_toml_and_explain_read_n_buckets_alike(tmp_path) -> None:
    """16x32 is one factorized value on sweep's command line, in a TOML file and in
    explain; 16,32 is two values to sweep and refused by explain (it takes one)."""
    assert build_spec("quick", None, n_buckets="16x32").n_buckets == ((16, 32),)
    assert build_spec("quick", None, n_buckets="16,32").n_buckets == (16, 32)
    config = tmp_path / "grid.toml"
    config.write_text('n_buckets = ["16x32", [16, 32], 64]\n', encoding="utf-8")
    assert build_spec("quick", str(config)).n_buckets == ((16, 32), 64)
    runner = CliRunner()
    ok = runner.invoke(main, ["explain", "-L", "12", "--chunk-len", "4", "--n-buckets", "2x4"])
    assert ok.exit_code == 0, ok.output
    assert "n_buckets=(2, 4)" in ok.stdout
    bad = runner.invoke(main, ["explain", "--n-buckets", "2,4"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "Error: n_buckets=2,4: takes one value (a comma separates list values); "
        "write factors as 2x4"
    ]
