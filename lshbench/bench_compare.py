"""``lshbench bench-compare``: a noise-robust performance gate over pytest-benchmark JSON.

``lshbench bench-compare BASELINE.json CURRENT.json [--threshold 0.25] [--alpha 0.01]`` reads
two files written by ``pytest bench/ --benchmark-json=FILE`` (that option always stores the
raw samples, ``stats.data``) and compares every benchmark present in the baseline.
BASELINE may be a folder of such files, one per CPU (``bench/baselines/``): the one recorded
on the CPU the current run measured is compared (:func:`choose_baseline`).

Time, independent of the machine's speed: every raw sample (seconds per call) is divided by
the file's own ``calibration`` benchmark (any entry whose name contains ``calibration``; the
suite's is a fixed float32 workload built on ``np.matmul``, measured right before each pass
of each case, see ``bench/_suite.py``): precisely, by the median of the calibration entry
that ran last before it, so a slower machine, or one busier at that moment, cancels out;
another CPU does not quite (its kernels stand in other ratios), hence one baseline per CPU.
The passes of a case (entries sharing ``extra_info["bench_id"]``) are pooled. A benchmark
**regressed** when both

* its normalized median is slower than the baseline's by more than ``threshold``
  (``median_cur / median_base - 1 > threshold``), and
* a one-sided Mann-Whitney U test (:func:`scipy.stats.mannwhitneyu`) on the normalized raw
  samples says the current ones are larger, ``p < alpha``.

The threshold keeps noise that shifts a whole benchmark (another job on the machine) from
failing; the rank test keeps a few slow outliers from failing.

Deterministic invariants, gated whatever the timer says (``extra_info`` of each benchmark):

* ``flops`` and ``config``: equal (they only change when the benchmark changes; refresh
  the baseline then);
* ``mem_alloc_peak_bytes`` (tracemalloc peak of one call): at most ``+10% + 64 KiB`` above
  the baseline. On one machine the peak repeats to within a few KiB (Python objects); 10%
  leaves room for library versions that resize a temporary, while a change that allocates
  2x more, or one more full-size temporary, is far outside it. Less memory passes.
* ``rel_err`` (error against dense): ``|cur - base| <= 1e-6 + 1e-6 * |base|``, either
  direction. A float32 output repeats bit for bit on one machine class (all pools at one
  thread); a semantic change moves the error by 1e-3 or more, while 1e-6 absolute is still
  about ten float32 ulps of an O(1) number (the float32 dense error itself is ~1e-7).

A benchmark of the baseline missing from the current file fails (coverage was lost); a new
one passes. Exit status: 0 pass, 1 regression (with a table of what regressed and by how
much), 2 bad input (one line: an unreadable file, samples outside 1e-12..1e6 s per call, a
non-finite or out-of-range ``threshold`` or ``alpha``). A missing BASELINE file is not an
error: it says so and passes.

:func:`bench_compare` returns the exit status and the text to print; the command is
:mod:`lshbench.cli.bench_command`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lshbench.core.config import fail
from lshbench.util import fmt_bytes

__all__ = [
    "ALPHA",
    "THRESHOLD",
    "BenchFile",
    "Comparison",
    "Verdict",
    "bench_compare",
    "check_options",
    "choose_baseline",
    "compare_files",
    "cpu_name",
    "invariant_problems",
    "load_bench_json",
    "time_change",
]

#: default relative slowdown of the normalized median that can fail
THRESHOLD = 0.25
#: default significance level of the one-sided Mann-Whitney U test
ALPHA = 0.01
#: allocated-bytes gate: current <= base * (1 + BYTES_RTOL) + BYTES_SLACK
BYTES_RTOL = 0.10
BYTES_SLACK = 64 * 1024
#: error gate: |cur - base| <= ERR_ATOL + ERR_RTOL * |base|
ERR_RTOL = 1e-6
ERR_ATOL = 1e-6
#: raw samples (seconds per call) outside this range are refused: no timer measures them,
#: and within it every ratio of the statistics stays far from overflow and underflow
SAMPLE_RANGE_S = (1e-12, 1e6)
#: benchmarks whose name contains this are the machine's calibration
CALIBRATION = "calibration"

FAILING = ("REGRESSION", "CHANGED", "MISSING")


class BenchFile(NamedTuple):
    """One pytest-benchmark JSON file: calibration-normalized samples per benchmark.

    Entries with the same ``extra_info["bench_id"]`` (the suite runs every case in several
    passes spread over the session) are one benchmark: their normalized samples are pooled.
    An entry without ``bench_id`` is a benchmark of its own, keyed by its name.
    """

    path: Path
    benchmarks: dict[str, list[dict[str, Any]]]  # bench id -> entries, calibration excluded
    samples: dict[str, np.ndarray]  # bench id -> (n,) pooled samples, calibration units
    calibration_medians: np.ndarray  # (k,) median seconds of each calibration entry
    machine: dict[str, Any]  # machine_info["lshbench"] when present, else {}
    cpu: str  # "GenuineIntel family 6 model 167" from machine_info["cpu"]; "" when absent

    def normalized(self, bench_id: str) -> np.ndarray:
        """Pooled samples of ``bench_id`` in calibration units, (n,)."""
        return self.samples[bench_id]

    def extra_info(self, bench_id: str) -> dict[str, Any]:
        """``extra_info`` of the benchmark's first entry."""
        return self.benchmarks[bench_id][0].get("extra_info") or {}


class Comparison(NamedTuple):
    """One benchmark's verdict."""

    name: str
    status: str  # ok | faster | new | REGRESSION | CHANGED | MISSING
    change: float  # normalized median current / baseline - 1 (nan when not compared)
    p_value: float  # one-sided Mann-Whitney p (current slower); nan when not compared
    base_norm: float  # normalized medians (calibration units)
    cur_norm: float
    detail: str  # what changed, for invariants; "" otherwise


def _raw_samples(entry: Any, role: str, path: Path) -> tuple[str, np.ndarray]:
    """``(name, stats.data)`` of one entry, checked."""
    name = entry.get("name") if isinstance(entry, dict) else None
    stats = entry.get("stats") if isinstance(name, str) else None
    data = stats.get("data") if isinstance(stats, dict) else None
    if not isinstance(name, str) or not isinstance(data, list) or not data:
        fail(role, str(path), f"benchmark {name!r} has no raw samples (stats.data)")
    try:
        samples = np.asarray(data, dtype=float)  # (rounds,)
    except (TypeError, ValueError):
        samples = np.array([np.nan])
    if samples.ndim != 1 or not np.all(np.isfinite(samples)) or np.any(samples <= 0):
        fail(role, str(path), f"benchmark {name!r} has non-positive or non-finite samples")
    low, high = SAMPLE_RANGE_S
    if samples.min() < low or samples.max() > high:
        fail(
            role,
            str(path),
            f"benchmark {name!r} has samples of {samples.min():.3g}..{samples.max():.3g} s; "
            f"seconds per call must lie in {low:g}..{high:g}",
        )
    return name, samples


def check_options(threshold: float, alpha: float) -> None:
    """Raise ConfigError unless ``threshold`` is a finite number > 0 and ``alpha`` a finite
    number strictly between 0 and 1 (NaN compares false with everything, so it would turn
    every check into a pass)."""
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
        fail("threshold", threshold, "must be a finite number > 0 (0.25 = 25% slower)")
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or not 0 < alpha < 1:
        fail("alpha", alpha, "must be a finite number strictly between 0 and 1")


def load_bench_json(path: str | Path, role: str) -> BenchFile:
    """Read, check and normalize one pytest-benchmark JSON file; ``role`` names it in errors.

    Every benchmark entry is divided by the median of the calibration entry that ran last
    before it (pytest-benchmark writes entries in the order they ran), or by the median of
    all calibration samples when none ran before it. Raises ConfigError (one line: field,
    value, rule) for an unreadable file, no ``benchmarks`` list, an entry without raw
    samples or with samples outside :data:`SAMPLE_RANGE_S`, or no calibration benchmark.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(role, str(path), f"not a readable pytest-benchmark JSON file ({reason})")
    entries = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        fail(role, str(path), "no 'benchmarks' list (write it with pytest --benchmark-json)")
    checked = [(entry, *_raw_samples(entry, role, path)) for entry in entries]
    calibration = [samples for _, name, samples in checked if CALIBRATION in name]
    if not calibration:
        fail(role, str(path), f"no benchmark named '*{CALIBRATION}*' to normalize by")
    scale = float(np.median(np.concatenate(calibration)))  # fallback: pooled calibration
    benchmarks: dict[str, list[dict[str, Any]]] = {}
    pooled: dict[str, list[np.ndarray]] = {}
    for entry, name, samples in checked:
        if CALIBRATION in name:
            scale = float(np.median(samples))  # the machine's speed from here on
            continue
        extra = entry.get("extra_info")
        key = str(extra.get("bench_id", name) if isinstance(extra, dict) else name)
        benchmarks.setdefault(key, []).append(entry)
        pooled.setdefault(key, []).append(samples / scale)
    info = doc.get("machine_info", {}) if isinstance(doc, dict) else {}
    info = info if isinstance(info, dict) else {}
    machine = info.get("lshbench", {})
    return BenchFile(
        path,
        benchmarks,
        {key: np.concatenate(parts) for key, parts in pooled.items()},
        np.array([np.median(c) for c in calibration]),
        machine if isinstance(machine, dict) else {},
        cpu_name(info.get("cpu")),
    )


def cpu_name(cpu: Any) -> str:
    """``"<vendor> family F model M"`` of pytest-benchmark's ``machine_info["cpu"]``
    (py-cpuinfo's ``vendor_id_raw``, ``family``, ``model``); "" when any is missing. CPUs of
    one name run the same instructions at the same relative speeds: a baseline recorded on
    one is comparable with a run on another."""
    if not isinstance(cpu, dict):
        return ""
    parts = (cpu.get("vendor_id_raw"), cpu.get("family"), cpu.get("model"))
    if any(part is None or part == "" for part in parts):
        return ""
    vendor, family, model = parts
    return f"{vendor} family {family} model {model}"


def choose_baseline(candidates: list[BenchFile], cur: BenchFile) -> tuple[BenchFile, str]:
    """The baseline recorded on ``cur``'s CPU (the first of them by path), else the first
    candidate with a warning: calibration cancels a uniformly slower machine, not a CPU
    whose GEMM, exp and memory speeds stand in other ratios (the dense kernel measured 30 %
    slower against the calibration on an Intel Xeon than on the AMD EPYC it was tuned on).
    ``candidates`` is not empty."""
    ordered = sorted(candidates, key=lambda f: str(f.path))
    same = [f for f in ordered if cur.cpu and f.cpu == cur.cpu]
    if same:
        return same[0], ""
    return ordered[0], (
        f"no baseline recorded on this CPU ({cur.cpu or 'unknown'}); compared with "
        f"{ordered[0].path.name} ({ordered[0].cpu or 'unknown'}): times of one CPU against "
        "another's can differ by 30 % without a change, so record a baseline on this CPU "
        "(docs/performance-gate.md)"
    )


def time_change(
    base: np.ndarray, cur: np.ndarray, threshold: float = THRESHOLD, alpha: float = ALPHA
) -> tuple[float, float, str]:
    """Compare normalized samples: ``(median change, p, status)``.

    status is ``REGRESSION`` (slower than ``threshold`` and significant), ``faster``
    (faster by as much, and significant in that direction) or ``ok``.
    """
    from scipy.stats import mannwhitneyu

    check_options(threshold, alpha)
    ratio = float(np.median(cur)) / float(np.median(base))  # both > 0 (checked samples)
    change = ratio - 1.0
    p_slower = float(mannwhitneyu(cur, base, alternative="greater").pvalue)
    if change > threshold and p_slower < alpha:
        return change, p_slower, "REGRESSION"
    if ratio > 0 and 1.0 / ratio - 1.0 > threshold:
        p_faster = float(mannwhitneyu(cur, base, alternative="less").pvalue)
        if p_faster < alpha:
            return change, p_slower, "faster"
    return change, p_slower, "ok"


def _close(a: Any, b: Any, atol: float, rtol: float) -> bool:
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= atol + rtol * abs(b)


def invariant_problems(base: Mapping[str, Any], cur: Mapping[str, Any]) -> list[str]:
    """What changed among the deterministic ``extra_info`` numbers (empty list: nothing).

    Only keys present in the baseline are checked; one missing from ``cur`` is a change.
    """
    problems = []
    for key in ("flops", "config"):
        if key in base and cur.get(key) != base[key]:
            problems.append(f"{key} {base[key]} -> {cur.get(key)}")
    if "mem_alloc_peak_bytes" in base:
        b, c = base["mem_alloc_peak_bytes"], cur.get("mem_alloc_peak_bytes")
        if c is None or c > b * (1 + BYTES_RTOL) + BYTES_SLACK:
            grown = f" ({c / b - 1:+.0%})" if c is not None and b else ""
            problems.append(f"alloc {fmt_bytes(b)} -> {fmt_bytes(c)}{grown}")
    if "rel_err" in base and not _close(cur.get("rel_err"), base["rel_err"], ERR_ATOL, ERR_RTOL):
        problems.append(f"rel_err {base['rel_err']:.9g} -> {cur.get('rel_err')}")
    return problems


def compare_files(
    base: BenchFile, cur: BenchFile, threshold: float = THRESHOLD, alpha: float = ALPHA
) -> list[Comparison]:
    """Every benchmark of either file, baseline order first, then new ones."""
    nan = float("nan")
    rows = []
    for name in base.benchmarks:
        if name not in cur.benchmarks:
            rows.append(Comparison(name, "MISSING", nan, nan, nan, nan, "not in current run"))
            continue
        b, c = base.normalized(name), cur.normalized(name)
        change, p, status = time_change(b, c, threshold, alpha)
        problems = invariant_problems(base.extra_info(name), cur.extra_info(name))
        if problems:
            status = "CHANGED" if status != "REGRESSION" else status
        medians = float(np.median(b)), float(np.median(c))
        rows.append(Comparison(name, status, change, p, *medians, "; ".join(problems)))
    for name in cur.benchmarks:
        if name not in base.benchmarks:
            c = cur.normalized(name)
            rows.append(Comparison(name, "new", nan, nan, nan, float(np.median(c)), ""))
    return rows


def _table(rows: list[Comparison]) -> str:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "benchmark": [r.name for r in rows],
            "status": [r.status for r in rows],
            "time": ["-" if math.isnan(r.change) else f"{r.change:+.1%}" for r in rows],
            "p": ["-" if math.isnan(r.p_value) else f"{r.p_value:.2g}" for r in rows],
            "base/cal": ["-" if math.isnan(r.base_norm) else f"{r.base_norm:.3f}" for r in rows],
            "cur/cal": ["-" if math.isnan(r.cur_norm) else f"{r.cur_norm:.3f}" for r in rows],
            "invariants": [r.detail or "same" for r in rows],
        }
    )
    return frame.to_string(index=False)


def _describe(role: str, run: BenchFile) -> str:
    cal = run.calibration_medians * 1e3  # (k,) ms
    timer = run.machine.get("timer", "?")
    return (
        f"{role}: {run.path} ({run.cpu or 'CPU unknown'}; {len(run.benchmarks)} benchmarks; "
        f"{len(cal)} calibrations, "
        f"median {np.median(cal):.3f} ms, range {cal.min():.3f}-{cal.max():.3f} ms; "
        f"timer {timer})"
    )


def _warnings(base: BenchFile, cur: BenchFile) -> list[str]:
    out = []
    for key in ("timer",):
        if base.machine.get(key) != cur.machine.get(key):
            out.append(f"{key} differs: {base.machine.get(key)} vs {cur.machine.get(key)}")
    bt, ct = base.machine.get("threads", {}), cur.machine.get("threads", {})
    for var in sorted(set(bt) | set(ct)):
        if var.endswith("_NUM_THREADS") and bt.get(var) != ct.get(var):
            out.append(f"{var} differs: {bt.get(var)} (baseline) vs {ct.get(var)} (current)")
    return out


class Verdict(NamedTuple):
    """What ``lshbench bench-compare`` ends with: its exit status and the text it prints."""

    status: int  # 0 pass, 1 regression
    text: str


def bench_compare(
    baseline: str | Path,
    current: str | Path,
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
) -> Verdict:
    """Compare CURRENT's benchmarks with BASELINE's: status 1 when any regressed, else 0.

    ``baseline`` is a file, or a folder of them (``*.json``, one per CPU), of which the one
    recorded on the CPU that ``current`` ran on is compared (:func:`choose_baseline`). A
    missing ``baseline`` file, or a folder without one, passes (there is nothing to compare
    against). Raises
    ConfigError (one line) for a non-finite or out-of-range option, an unreadable file, one
    without raw samples (or with samples outside :data:`SAMPLE_RANGE_S`) or without a
    calibration benchmark; nothing is compared then.
    """
    check_options(threshold, alpha)
    baseline, current = Path(baseline), Path(current)
    cur = load_bench_json(current, "current")
    folder = baseline.is_dir()
    files = sorted(baseline.glob("*.json")) if folder else [f for f in [baseline] if f.exists()]
    if not files:
        return Verdict(
            0,
            f"bench-compare: no baseline at {baseline}; nothing to compare against, passing "
            f"({len(cur.benchmarks)} benchmarks in {current}).",
        )
    if folder:
        base, mismatch = choose_baseline([load_bench_json(f, "baseline") for f in files], cur)
    else:
        base, mismatch = load_bench_json(baseline, "baseline"), ""
    rows = compare_files(base, cur, threshold, alpha)
    lines = [_describe("baseline", base), _describe("current ", cur)]
    warnings = ([mismatch] if mismatch else []) + _warnings(base, cur)
    lines += [f"warning: {line}" for line in warnings]
    lines.append(_table(rows))
    failed = [r for r in rows if r.status in FAILING]
    rule = (
        f"time: median > +{threshold:.0%} and Mann-Whitney p < {alpha:g}; invariants: flops "
        f"equal, alloc <= +{BYTES_RTOL:.0%} + {BYTES_SLACK // 1024} KiB, rel_err within "
        f"{ERR_ATOL:g} + {ERR_RTOL:g} x base"
    )
    if not failed:
        lines.append(f"\nPASS: {len(rows)} benchmarks ({rule}).")
        return Verdict(0, "\n".join(lines))
    lines.append(f"\nFAIL: {len(failed)} of {len(rows)} benchmarks ({rule}):")
    for r in failed:
        what = f"{r.change:+.1%} slower (p={r.p_value:.2g})" if r.status == "REGRESSION" else ""
        lines.append(f"  {r.status:<10} {r.name}  {'; '.join(filter(None, [what, r.detail]))}")
    return Verdict(1, "\n".join(lines))
