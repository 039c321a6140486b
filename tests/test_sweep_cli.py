"""`lshbench sweep` options: checking, presets, config files and the bucket rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_sweep_refused

import lshbench
from lshbench import ConfigError
from lshbench.measurement.inputs import GENERATORS
from lshbench.sweep.parsing import parse_bytes
from lshbench.sweep.plan import plan_tasks, resolve_n_buckets
from lshbench.sweep.spec import build_spec


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--n-hashes", "0"], "n_hashes=0"),
        (["--seqlen", "1024,abc"], "seqlen=abc"),
        (["--n-buckets", "7"], "n_buckets=7"),
        (["--backend", "nope"], "backend=nope"),
        (["--input", "uniform"], "input=uniform"),
        (["--repeats", "3"], "repeats=3"),
        (["--mem-budget", "12Q"], "mem_budget=12Q"),
        (["--tokens", "32768", "--seqlen", "1000"], "tokens=32768"),
        (["--preset", "huge"], "preset=huge"),
    ],
)
def test_bad_values_exit_2_with_one_line_before_running(
    tmp_path: Path, args: list[str], field: str
) -> None:
    assert_sweep_refused(tmp_path, args, field)


def test_presets() -> None:
    quick = build_spec("quick")
    assert max(quick.seqlen) == 4096 and quick.chunk_len == (64,)
    assert quick.n_hashes == (1, 4, 8) and str(quick.out) == "results/quick"
    # torch-sdpa joins where torch is installed (the peers extra), as every preset's does
    assert set(quick.backend) - {"torch-sdpa"} == {"numba", "dense"}
    assert ("torch-sdpa" in quick.backend) == lshbench.list_backends()["torch-sdpa"].available
    assert quick.threads == (1,) and set(quick.input) == {"gaussian", "peaked", "duplicate"}
    # the variants the "what hashing buys" table and both weightings need, two sharpnesses
    assert set(quick.method) == {"lsh", "random", "local"}
    assert set(quick.weighting) == {"multiplicity", "count-once"}
    assert quick.target_entropy == (1.0, 4.0)

    paper = build_spec("paper")
    assert paper.n_buckets == ("auto",)  # factorized at large L, as HF and Trax do
    tasks, invalid = plan_tasks(paper)
    assert not invalid
    assert {t.batch * t.seqlen for t in tasks} == {32768}
    assert {t.seqlen for t in tasks} == {1024, 2048, 4096, 8192, 16384, 32768}
    assert {t.n_hashes for t in tasks if t.backend not in ("dense", "torch-sdpa")} == {1, 2, 4, 8}
    assert any(t.backend == "dense" for t in tasks)

    full = build_spec("full")
    assert max(full.seqlen) == 65536 and full.causal == (False, True)
    assert set(full.input) == set(GENERATORS)  # every input, against random keys and a window
    assert set(full.method) == {"lsh", "random", "local"} and full.target_entropy == (1.0, 4.0)
    assert set(full.backend) - {"torch-sdpa"} == {"numba", "dense"}


def test_config_file_sits_between_preset_and_options(tmp_path: Path) -> None:
    config = tmp_path / "grid.toml"
    config.write_text(
        'preset = "paper"\nseqlen = [2048, 4096]\nn-hashes = "2,4"\nrepeats = 7\n'
        'n_buckets = ["rule", [16, 32], "64"]\n'
    )
    spec = build_spec(None, config)
    assert spec.preset == "paper" and spec.tokens == 32768
    assert spec.seqlen == (2048, 4096) and spec.n_hashes == (2, 4) and spec.repeats == 7
    assert spec.n_buckets == ("rule", (16, 32), 64)
    spec = build_spec(None, config, n_hashes="8", batch=[2])
    assert spec.n_hashes == (8,) and spec.batch == (2,) and spec.tokens is None
    config.write_text("colour = 3\n")
    with pytest.raises(ConfigError, match="config=colour"):
        build_spec(None, config)


def test_bucket_rules() -> None:
    assert resolve_n_buckets("rule", 8192, 64) == 256  # the paper: 2L / chunk_len
    assert resolve_n_buckets("rule", 1000, 64) == 32  # 31.25 -> the even 32
    assert resolve_n_buckets("rule", 64, 64) == 2 and resolve_n_buckets("rule", 16, 64) == 2
    # Hugging Face with max_position_embeddings = L: 2**p <= 2 L / chunk, factorized when
    # above 2 * max(sqrt(L / chunk), chunk)
    assert resolve_n_buckets("auto", 4096, 64) == 128
    assert resolve_n_buckets("auto", 8192, 64) == (16, 16)
    assert resolve_n_buckets("auto", 16384, 64) == (16, 32)
    assert resolve_n_buckets("auto", 3000, 64) == 64  # 2*46 = 92 -> 64
    assert resolve_n_buckets((4, 8), 1024, 64) == (4, 8)


def test_invalid_combinations_become_skipped_rows() -> None:
    """H * L must be a multiple of chunk_len: 1*96 is not (skipped), 2*96 is."""
    spec = build_spec(
        "quick", seqlen=[96], chunk_len=[64], n_hashes=[1, 2], backend="numpy,dense",
        method="lsh", weighting="multiplicity", input="gaussian",
    )  # fmt: skip
    tasks, invalid = plan_tasks(spec)
    assert {t.n_hashes for t in tasks if t.backend == "numpy"} == {2}
    assert invalid and all("chunk_len=64" in reason for _, reason in invalid)
    assert {t.n_hashes for t, _ in invalid} == {1}


def test_mem_budget_units() -> None:
    assert parse_bytes("512M") == 512 * 2**20 and parse_bytes("2G") == 2 * 2**30
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30) and parse_bytes(1000) == 1000
    assert 0 < parse_bytes("50%") < parse_bytes("100%")
    with pytest.raises(ConfigError, match="mem_budget=0%"):
        parse_bytes("0%")


INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("axis", "value"),
    [
        ("seed", "99999999999999999999"),
        ("seed", 2**63),
        ("seqlen", 2**64),
        ("chunk_len", 2**63),
        ("n_hashes", 2**63),
        ("chunks_before", 2**63),
        ("chunks_after", 2**63),
        ("d", 2**63),
        ("batch", 2**63),
        ("tokens", 2**63),
        ("repeats", 2**63),
        ("n_buckets", 2**64),
        ("n_buckets", "4294967296x4294967296"),  # each factor fits, the product does not
    ],
)
def test_integers_beyond_int64_are_rejected_when_parsed(axis: str, value: object) -> None:
    """Rows are stored with int64 columns: a value they cannot hold is a bad value, not a
    directory that later fails to export."""
    with pytest.raises(ConfigError, match=rf"^{axis}=.*2\*\*63-1") as info:
        build_spec("quick", **{axis: value})
    assert "\n" not in str(info.value)


def test_largest_int64_seed_is_accepted_and_exported() -> None:
    from lshbench.results.store import make_row, rows_to_frame

    spec = build_spec("quick", seed=INT64_MAX, seqlen=[64], backend="dense")
    assert spec.seed == (INT64_MAX,)
    tasks, _ = plan_tasks(spec)
    frame = rows_to_frame([make_row(t, "skipped", "test") for t in tasks])
    assert (frame["seed"] == INT64_MAX).all()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"batch": 2**40, "seqlen": [2**30]}, "batch="),  # batch x seqlen = 2**70 tokens
        ({"seqlen": [2**62], "chunk_len": [1], "n_buckets": "rule"}, "n_buckets=rule"),
    ],
)
def test_derived_integers_beyond_int64_are_rejected_before_running(
    options: dict, field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}.*2\*\*63-1"):
        plan_tasks(build_spec("quick", backend="numpy,dense", n_hashes=[1], **options))


def test_seed_beyond_int64_exits_2_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "never"
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "sweep", "--out", str(out),
         "--seed", "99999999999999999999"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "seed=99999999999999999999" in lines[0] and "2**63-1" in lines[0]
    assert not out.exists()


def test_threads_above_the_usable_cpus_are_rejected_before_running(tmp_path: Path) -> None:
    """--threads 999 on a 2-CPU machine would record threads=999 on rows BLAS ran with 2;
    'all' is still every usable CPU."""
    import lshbench
    from lshbench.measurement.machine import usable_cpus

    cpus = usable_cpus()
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=rf"^threads={cpus + 1}: .* {cpus} usable CPU"):
        lshbench.run_sweep(out, threads=f"1,{cpus + 1}", seqlen=[64], backend="dense")
    assert not out.exists()
    assert build_spec("quick", threads="all").threads == (cpus,)
    assert build_spec("quick", threads=f"1,{cpus}").threads == tuple(dict.fromkeys((1, cpus)))


@pytest.mark.parametrize("budget", ["0.5", 1, "64M", "300MiB"])
def test_mem_budget_every_row_would_exceed_is_rejected(budget: object) -> None:
    """A budget below a worker's own footprint makes every row oom_predicted."""
    with pytest.raises(ConfigError, match=rf"^mem_budget={budget}: .*MiB"):
        build_spec("quick", mem_budget=budget)
    assert build_spec("quick", mem_budget="512M").mem_budget == 512 * 2**20


def test_empty_out_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r'^out="": '):
        build_spec("quick", out="")
    assert str(build_spec("quick", out=None).out) == "results/quick"  # None: not given


@pytest.mark.parametrize("backend", ["numpy", None])
def test_grid_where_no_lsh_task_can_run_is_rejected_before_running(
    tmp_path: Path, backend: str | None
) -> None:
    """Every LSH configuration invalid (chunk_len 3 never divides H x 1024): one line, not a
    sweep of skipped rows (with the default backends only dense could run)."""
    import lshbench

    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"^chunk_len=3: .*no LSH configuration") as info:
        lshbench.run_sweep(out, chunk_len=[3], seqlen=[1024], backend=backend)
    assert "\n" not in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--threads", "999"], "threads=999"),
        (["--mem-budget", "0.5"], "mem_budget=0.5"),
        (["--out", ""], 'out=""'),
        (["--chunk-len", "3", "--seqlen", "1024"], "chunk_len=3"),
    ],
)
def test_values_nothing_sensible_can_run_with_exit_2(
    tmp_path: Path, args: list[str], field: str
) -> None:
    assert_sweep_refused(tmp_path, args, field)


def run_sweep_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lshbench", "sweep", "--seqlen", "64", "--backend", "dense",
         "--quiet", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def assert_one_line_exit_2(res: subprocess.CompletedProcess[str], *parts: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert all(p in lines[0] for p in parts), lines[0]
    assert "Traceback" not in res.stderr


def test_out_that_is_or_lies_under_a_file_is_one_line(tmp_path: Path) -> None:
    """--out that is a file or lies under one: one line, never a traceback from mkdir."""
    afile = tmp_path / "notes.txt"
    afile.write_text("not a directory\n")
    res = run_sweep_cli(tmp_path, "--out", str(afile))
    assert_one_line_exit_2(res, f"out={afile}", "is a file")
    res = run_sweep_cli(tmp_path, "--out", str(afile / "sub" / "run"))
    assert_one_line_exit_2(res, f"out={afile / 'sub' / 'run'}", f"{afile} is a file")
    assert afile.read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _can_write(directory: Path) -> bool:
    try:
        (directory / "probe").write_text("x")
    except OSError:
        return False
    (directory / "probe").unlink()
    return True


@pytest.fixture
def unwritable_dir(tmp_path: Path):
    """A directory this process cannot write: mode 0555, and for root (whom mode bits do
    not stop) the immutable attribute where the file system has one."""
    import shutil

    path = tmp_path / "readonly"
    path.mkdir()
    path.chmod(0o555)
    immutable = False
    if _can_write(path) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        if _can_write(path):
            pytest.skip("cannot make a directory unwritable here (root without chattr +i)")
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


def test_unwritable_out_is_refused_before_running(tmp_path: Path, unwritable_dir: Path) -> None:
    import lshbench

    for out in (unwritable_dir, unwritable_dir / "run"):
        res = run_sweep_cli(tmp_path, "--out", str(out))
        assert_one_line_exit_2(res, f"out={out}", "not writable")
        with pytest.raises(ConfigError, match="not writable"):
            lshbench.run_sweep(out, seqlen=[64], backend="dense")
    assert list(unwritable_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (b"out = 5\n", ["out=5", "must be a directory path"]),
        (b'preset = ["quick"]\n', ["preset=", "must be one of"]),
        (b"seqlen = [64]\n# caf\xe9 in Latin-1\n", ["config=", "not UTF-8"]),
    ],
)
def test_config_of_the_wrong_type_or_encoding_is_one_line(
    tmp_path: Path, text: bytes, parts: list[str]
) -> None:
    config = tmp_path / "grid.toml"
    config.write_bytes(text)
    res = run_sweep_cli(tmp_path, "--config", str(config))
    assert_one_line_exit_2(res, *parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


WEIRD_TOML_VALUES = ["5", "1.5", "true", "[]", "[[1]]", "{ a = 1 }", '"x"', "1979-05-27", '""',
                     "[true]", "-3", "[[16, 32], 1.5]", "[{ a = 1 }]"]  # fmt: skip


@pytest.mark.parametrize("value", WEIRD_TOML_VALUES)
def test_any_toml_value_of_any_key_is_accepted_or_one_config_error(
    tmp_path: Path, value: str
) -> None:
    """Every key with values of every TOML type: a spec, or a ConfigError; never another
    exception (a traceback on the command line)."""
    from lshbench.sweep.spec import AXES, SETTINGS

    config = tmp_path / "grid.toml"
    for key in AXES + SETTINGS:
        config.write_text(f"{key} = {value}\n")
        try:
            build_spec(None, config)
        except ConfigError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--timeout", "1e9"], "timeout=1e9"),
        (["--timeout", "2147484"], "timeout=2147484"),
        (["--timeout", "1e300"], "timeout=1e300"),
        (["--target-entropy", "1e9", "--input", "peaked"], "target_entropy=1e+09"),
        (["--target-entropy", "5", "--input", "peaked", "--seqlen", "64,128"], "target_entropy=5"),
        (["--target-entropy", "2,3.5", "--input", "duplicate", "--seqlen", "32"],
         "target_entropy=3.5"),
        (["--mem-limit", "1"], "mem_limit=1"),
        (["--mem-limit", "300M"], "mem_limit=300M"),
        (["--mem-limit", "4096"], "mem_limit=4096"),
    ],
)  # fmt: skip
def test_values_that_pass_the_front_door_but_cannot_work_exit_2(
    tmp_path: Path, args: list[str], field: str
) -> None:
    """A timeout no OS wait accepts, an entropy above uniform attention at the grid's
    largest L, a memory limit no worker starts under: refused before anything runs."""
    assert_sweep_refused(tmp_path, args, field)


@pytest.mark.parametrize("seqlen", [16, 64, 1000, 4096])
@pytest.mark.parametrize("causal", [False, True])
def test_target_entropy_bound_is_uniform_attention_at_the_largest_length(
    seqlen: int, causal: bool
) -> None:
    from lshbench.measurement.sharpness import max_mean_entropy

    top = max_mean_entropy(seqlen, causal)
    grid = {"input": "peaked", "seqlen": [seqlen // 2, seqlen], "causal": [causal]}
    assert build_spec("quick", target_entropy=[top * 0.99], **grid).target_entropy
    with pytest.raises(ConfigError, match="target_entropy"):
        build_spec("quick", target_entropy=[top], **grid)
    assert build_spec("quick", timeout=1e6).timeout == 1e6


@pytest.mark.parametrize(
    ("stderr", "summary"),
    [
        ("Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\n"
         "MemoryError\n", "MemoryError"),
        ("warning: slow\nTraceback (most recent call last):\n  File \"a.py\", line 3, in f\n"
         "    x = g()\n        ^^^\nValueError: bad\n", "warning: slow | ValueError: bad"),
        ("Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 1\n\nDuring "
         "handling of the above exception, another exception occurred:\n\nTraceback (most "
         "recent call last):\n  File \"b.py\", line 2\nOSError: disk\n",
         "KeyError: 1 | During handling of the above exception, another exception occurred: | "
         "OSError: disk"),
        ("plain line\n", "plain line"),
        ("", ""),
    ],
)  # fmt: skip
def test_a_dead_workers_stderr_is_summarized_without_frames(stderr: str, summary: str) -> None:
    from lshbench.sweep.local_executor import stderr_summary

    assert stderr_summary(stderr) == summary
    assert (
        "Traceback" not in stderr_summary(stderr * 50) and len(stderr_summary(stderr * 50)) <= 400
    )


@pytest.mark.parametrize("name", ["my runs", "it's $HOME; `x` & *", 'tab\there "q"'])
def test_the_report_hint_runs_as_printed(tmp_path: Path, name: str) -> None:
    """The command the sweep prints to render its report works when pasted into a shell,
    whatever the characters of --out."""
    import os
    import shlex

    from click.testing import CliRunner

    from lshbench.cli import main

    out = tmp_path / name
    args = ["sweep", "--out", str(out), "--backend", "dense", "--seqlen", "64",
            "--chunk-len", "32", "--n-hashes", "1", "--threads", "1", "--input", "gaussian",
            "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    hint = res.output.strip().splitlines()[-1].strip()
    assert shlex.split(hint) == ["lshbench", "report", str(out)]
    here = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    )
    command = f"{shlex.quote(sys.executable)} -m {hint}"
    done = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": here}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reports" / name / "index.html").is_file()
