"""The accuracy half of ``lshbench report`` on synthetic tables with the newer columns.

The fixture holds what a sweep with ``--method lsh,random,local --weighting
multiplicity,count-once`` stores (docs/design.md sections 2b, 6, 7): on ``gaussian`` input LSH is
no better than random keys at the same budget, on ``clustered`` input it cuts the error
several-fold, on ``duplicate`` input the task accuracy rises with n_hashes as measured with
lshbench 0.1.0 (docs/metrics.md section 5). The tests read the figures' data and the
tables' numbers, not pixels.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import (
    CPU_MODEL,
    MACHINE,
    MACHINE_LABEL,
    NO_HASHING,
    _labelled,
    _row,
    dense_time,
    make_rows,
    render,
    table_rows,
    write_results,
)

LENGTHS = (1024, 4096)
HASHES = (1, 2, 4, 8)
M = 64  # chunk length of every LSH-family row
METHODS = ("lsh", "random", "local")
WEIGHTINGS = ("multiplicity", "count-once")
INPUTS = ("clustered", "duplicate", "gaussian")
#: attn_tv at H = 1, L = 1024, multiplicity, per input and method.
BASE_TV = {
    "gaussian": {"lsh": 0.71, "random": 0.72, "local": 0.80},
    "clustered": {"lsh": 0.22, "random": 0.78, "local": 0.65},
    "duplicate": {"lsh": 0.30, "random": 0.60, "local": 0.55},
}
#: Duplication-task accuracy of LSH by n_hashes (measured with lshbench 0.1.0 at L = 2048,
#: docs/metrics.md section 5).
TASK_ACC = {1: 0.851, 2: 0.963, 4: 0.996, 8: 1.0}
#: Time of each method relative to LSH (local: one round of sorted positions, cheaper).
TIME_FACTOR = {"lsh": 1.0, "random": 1.02, "local": 0.5}
OTHER_MACHINE = "ffee00112233aabb"
OTHER_CPU = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"


def tv(inp: str, method: str, weighting: str, H: int, L: int) -> float:
    """The fixture's attn_tv: falls with n_hashes, a little lower counting each key once."""
    scale = (1 - 0.1 * math.log2(H)) * (0.9 if weighting == "count-once" else 1.0)
    return BASE_TV[inp][method] * scale * (1 + 0.02 * math.log2(L / 1024))


def rel_err(inp: str, method: str, weighting: str, H: int, L: int) -> float:
    """A relative error that orders configurations differently from attn_tv (it grows with
    H on purpose), so a table that used it would pick other configurations."""
    return 0.02 * H + 0.001 * METHODS.index(method)


def t_lsh(method: str, H: int, L: int) -> float:
    return 7e-7 * H * L**1.05 * TIME_FACTOR[method]


def variant_rows(machine: str = MACHINE, code: str = "c0de000000000002") -> list[dict]:
    """LSH, random and local rows for both weightings, and dense, on three inputs."""
    rows = []
    for L in LENGTHS:
        for inp in INPUTS:
            extra = {"task_acc": 1.0} if inp == "duplicate" else {}
            rows.append(_row(backend="dense", seqlen=L, input=inp, **NO_HASHING,
                             time_median_s=dense_time(L), rel_err=0.0, mass_recall=1.0,
                             attn_tv=0.0, machine_id=machine, code_id=code,
                             finished_at="2026-02-01T00:00:00+00:00", **extra))  # fmt: skip
            for method in METHODS:
                for weighting in WEIGHTINGS:
                    for H in HASHES:
                        value = tv(inp, method, weighting, H, L)
                        extra = {}
                        if inp == "duplicate":
                            extra["task_acc"] = TASK_ACC[H] if method == "lsh" else 0.5
                        rows.append(_row(
                            backend="numba", seqlen=L, input=inp, n_hashes=H,
                            n_buckets=None if method == "local" else 2 * L // M,
                            chunk_len=M, method=method, weighting=weighting,
                            time_median_s=t_lsh(method, H, L), attn_tv=value,
                            mass_recall=1 - value, rel_err=rel_err(inp, method, weighting, H, L),
                            machine_id=machine, code_id=code,
                            finished_at="2026-02-01T00:00:00+00:00", **extra,
                        ))  # fmt: skip
    # a random row with no LSH partner at its budget (another chunk length): never paired
    rows.append(_row(backend="numba", seqlen=4096, input="gaussian", n_hashes=8, n_buckets=256,
                     chunk_len=32, method="random", weighting="multiplicity",
                     time_median_s=1e-3, attn_tv=0.5, mass_recall=0.5, rel_err=0.1,
                     machine_id=machine, code_id=code))  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("variants")
    results = write_results(base / "variants", variant_rows())
    out = base / "out"
    return results, out, render([results], out)


@pytest.fixture(scope="module")
def points(variants) -> pd.DataFrame:
    from lshbench.report import analysis as ra

    results, _, _ = variants
    return ra.series_points(ra.prepare([ra.load_run(results)]))


# --------------------------------------------------------------------------- budgets


def test_budgets_pick_by_attn_tv_not_rel_err(points) -> None:
    from lshbench.report.tradeoffs import BUDGETS, budget_picks, error_metric

    assert BUDGETS == (0.05, 0.10, 0.20)
    assert error_metric(points) == "attn_tv"
    picks = budget_picks(points)
    assert set(picks["metric"]) == {"attn_tv"}
    for (inp, L), g in picks.groupby(["input", "seqlen"]):
        options = [("dense", dense_time(L), 0.0)]
        options += [((m, w, H), t_lsh(m, H, L), tv(inp, m, w, H, L))
                    for m in METHODS for w in WEIGHTINGS for H in HASHES]  # fmt: skip
        for budget in BUDGETS:
            row = g[g["budget"] == budget].iloc[0]
            best = min((o for o in options if o[2] <= budget), key=lambda o: o[1])
            assert row["error"] == pytest.approx(best[2], rel=1e-12)
            assert row["time_seq"] == pytest.approx(best[1], rel=1e-12)
    # clustered at L=4096: no configuration is within attn_tv 0.05, so dense is picked,
    # while by rel_err (0.02 H in the fixture) LSH at H=1 would meet 0.05
    clustered = picks[(picks["input"] == "clustered") & (picks["seqlen"] == 4096)]
    assert clustered.loc[clustered["budget"] == 0.05, "series"].iloc[0].startswith("dense")
    assert "lsh" in clustered.loc[clustered["budget"] == 0.2, "series"].iloc[0]
    by_rel = budget_picks(points, budgets=(0.05,), metric="rel_err")
    by_rel = by_rel[(by_rel["input"] == "clustered") & (by_rel["seqlen"] == 4096)]
    assert not by_rel["series"].iloc[0].startswith("dense")


def test_budget_table_names_its_metric(variants) -> None:
    _, _, md = variants
    section = md.split("## Appendix: Best configuration under an error budget", 1)[1]
    header = next(ln for ln in section.splitlines() if ln.startswith("|"))
    assert header == (
        "| input | L | attn_tv <= 0.05 | attn_tv <= 0.1 | attn_tv <= 0.2 | exact baseline |"
    )
    assert "rel_err" not in section.split("## Appendix: Failed cells")[0]


# --------------------------------------------------------------------------- Pareto


def test_pareto_draws_the_baselines_and_a_front_over_lsh_only(points) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.figures_accuracy import figure_pareto
    from lshbench.report.plotting import Palette

    plot = figure_pareto(points, Palette(points), ra.varying_axes(points))
    legend = [t.get_text() for t in plot.figure.legends[0].texts]
    assert len(legend) == len(set(legend))
    for name in ("LSH (hashed buckets)", "random keys, same budget", "local window, same budget",
                 "Pareto front (over LSH points)", "count-once weighting (hollow)"):  # fmt: skip
        assert name in legend
    assert "front over the LSH points" in plot.caption
    L = 4096
    ax = next(a for a in plot.figure.axes if a.get_title() == "input=gaussian, L=4K")
    assert ax.get_ylabel() == "attn_tv (attention distance)"
    unit = ax.get_xlabel().removeprefix("time per sequence (").removesuffix(")")
    ms = {"s": 1.0, "ms": 1e3, "µs": 1e6}[unit]  # times are drawn in the axis' unit
    dots = [ln for ln in ax.lines if len(ln.get_xdata()) == 1 and ln.get_linestyle() == "None"]
    by_marker: dict[str, set] = {}
    for ln in dots:
        by_marker.setdefault(ln.get_marker(), set()).add(
            (round(ln.get_xdata()[0], 9), round(ln.get_ydata()[0], 12)))  # fmt: skip
    for method, marker in (("lsh", "o"), ("random", "X"), ("local", "s")):
        want = {(round(ms * t_lsh(method, H, L), 9), round(tv("gaussian", method, w, H, L), 12))
                for w in WEIGHTINGS for H in HASHES}  # fmt: skip
        if method == "random":
            want.add((round(ms * 1e-3, 9), 0.5))  # the unpaired random row (m=32) is drawn too
        assert by_marker[marker] == want, method
    hollow = [ln for ln in dots if ln.get_markerfacecolor() == "none"]
    assert len(hollow) == len(dots) // 2  # count-once: half of the points
    lsh = [(ms * t_lsh("lsh", H, L), tv("gaussian", "lsh", w, H, L))
           for w in WEIGHTINGS for H in HASHES]  # fmt: skip
    every = lsh + [(ms * t_lsh(m, H, L), tv("gaussian", m, w, H, L))
                   for m in ("random", "local") for w in WEIGHTINGS for H in HASHES]  # fmt: skip

    def front(pts):
        return sorted(c for c in pts if not any(o[0] <= c[0] and o[1] <= c[1] and o != c
                                                for o in pts))  # fmt: skip

    (step,) = [ln for ln in ax.lines if ln.get_drawstyle() == "steps-post"]
    got = np.c_[step.get_xdata(), step.get_ydata()]
    np.testing.assert_allclose(got, front(lsh), rtol=1e-12)
    assert front(every) != front(lsh)  # the fixture tells the two apart (local is fastest)


# --------------------------------------------------------------------------- hashing buys


def test_hashing_table_pairs_rows_at_the_same_budget(points) -> None:
    from lshbench.report.baselines import hashing_table, key_budget

    table = hashing_table(points)
    assert len(table) == len(LENGTHS) * len(INPUTS) * len(WEIGHTINGS) * len(HASHES)
    assert set(table["chunk_len"]) == {M}  # the m=32 random row has no LSH partner
    for _, r in table.iterrows():
        args = (r["input"], r["weighting"], int(r["n_hashes"]), int(r["seqlen"]))
        for method in METHODS:
            inp, w, H, L = args
            assert r[f"err_{method}"] == pytest.approx(tv(inp, method, w, H, L), rel=1e-12)
            assert r[f"time_{method}"] == pytest.approx(t_lsh(method, H, L), rel=1e-12)
        assert r["gain_random"] == pytest.approx(r["err_random"] - r["err_lsh"], rel=1e-12)
        assert r["keys"] == key_budget(r["n_hashes"], M, 1, 0) == r["n_hashes"] * M * 2


def _representative(inp: str) -> tuple[float, float, float]:
    """(LSH, random, local) attn_tv the verdict quotes: largest L and budget, multiplicity."""
    L, H = max(LENGTHS), max(HASHES)
    return tuple(tv(inp, m, "multiplicity", H, L) for m in METHODS)


def test_verdicts_follow_the_numbers(variants) -> None:
    """Clustered: LSH wins (cuts the error); gaussian: it does not (no better than random)."""
    _, _, md = variants
    section = md.split("## 6. What hashing buys", 1)[1].split("## 7.", 1)[0]
    lsh, rnd, loc = _representative("clustered")
    assert lsh / rnd <= 0.75
    assert (f"On clustered input LSH cuts attn_tv from {rnd:.2f} (random keys) to {lsh:.2f} "
            "at the same key budget") in section  # fmt: skip
    assert f"against a local window of the same size (attn_tv {loc:.2f}) it is far better" in (
        section
    )
    lsh, rnd, loc = _representative("gaussian")
    assert 0.9 < lsh / rnd < 1 / 0.9
    assert (f"On gaussian input LSH is no better than random keys at the same key budget "
            f"(attn_tv {lsh:.2f} vs {rnd:.2f})") in section  # fmt: skip
    assert "(L=4096, H=8, m=64, multiplicity weighting, 1024 keys per query)" in section
    assert "Over its 16 pair(s) with random keys, LSH is at least 25 % lower in 0." in section
    rows = table_rows(md, "## Appendix: What hashing buys, pair by pair")
    assert len(rows) == len(LENGTHS) * len(INPUTS) * len(WEIGHTINGS) * len(HASHES)


def test_verdict_words_change_with_the_numbers() -> None:
    """The same code says 'worse' and 'slightly better' when the numbers say so."""
    from lshbench.report.baselines import judge, verdicts

    assert [judge(0.2, 0.8), judge(0.7, 0.8), judge(0.5, 0.5), judge(0.9, 0.5)] == [
        "cuts", "better", "same", "worse"]  # fmt: skip
    assert judge(0.0, 0.0) == "same" and judge(0.1, 0.0) == "worse"
    base = {"run_index": 0, "run": "r", "seqlen": 2048.0, "n_hashes": 4.0, "chunk_len": 32.0,
            "weighting": "multiplicity", "keys": 256.0, "metric": "attn_tv"}  # fmt: skip
    table = pd.DataFrame([
        {**base, "input": "peaked", "err_lsh": 0.9, "err_random": 0.5, "err_local": 0.3},
        {**base, "input": "other", "err_lsh": 0.40, "err_random": 0.47, "err_local": np.nan},
    ])  # fmt: skip
    text = "\n".join(verdicts(table))
    assert ("On peaked input LSH is worse than random keys at the same key budget "
            "(attn_tv 0.90 vs 0.50); against a local window of the same size (attn_tv 0.30) "
            "it is worse") in text  # fmt: skip
    assert "On other input LSH is only slightly better than random keys" in text
    assert "(attn_tv 0.40 vs 0.47)" in text


# --------------------------------------------------------------------------- n_hashes figure


def test_error_vs_n_hashes_has_both_weightings_and_every_method(points) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.figures_accuracy import figure_error
    from lshbench.report.plotting import Palette

    plot = figure_error(points, "n_hashes", ("method", "weighting"), "error_hashes",
                        Palette(points), ra.varying_axes(points))  # fmt: skip
    L = max(LENGTHS)
    assert "attn_tv" in plot.figure._suptitle.get_text()
    assert f"L={L}" in plot.caption and "one line per method and weighting" in plot.caption
    tv_axes = [ax for ax in plot.figure.axes if ax.get_ylabel().startswith("attn_tv")]
    assert sorted(ax.get_title() for ax in tv_axes) == [f"input={i}" for i in INPUTS]
    for ax in tv_axes:
        inp = ax.get_title().removeprefix("input=")
        lines = _labelled(ax)
        assert set(lines) == {f"{m}, {w}" for m in METHODS for w in WEIGHTINGS}
        for m in METHODS:
            for w in WEIGHTINGS:
                x, y = lines[f"{m}, {w}"]
                np.testing.assert_array_equal(x, HASHES)
                np.testing.assert_allclose(y, [tv(inp, m, w, H, L) for H in HASHES], rtol=1e-12)
        styles = {ln.get_label(): ln.get_linestyle() for ln in ax.lines}
        assert styles["lsh, count-once"] == "--" and styles["lsh, multiplicity"] == "-"


# --------------------------------------------------------------------------- Table 2 view


def test_copy_retrieval_view(points, variants) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.figures_task import PAPER_TABLE2, figure_task, task_table
    from lshbench.report.plotting import Palette

    assert PAPER_TABLE2 == {8: 0.948, 4: 0.925, 2: 0.769, 1: 0.525}
    table, hashes = task_table(points)
    assert hashes == list(HASHES)
    assert (table["dense"] == 1.0).all()
    assert len(table) == len(LENGTHS) * len(WEIGHTINGS)
    for _, r in table.iterrows():
        assert [r.loc[h] for h in HASHES] == [TASK_ACC[h] for h in HASHES]
    plot = figure_task(points, Palette(points), ra.varying_axes(points))
    (ax,) = plot.figure.axes
    assert ax.get_title() == "input=duplicate"
    assert ax.get_xlabel() == "n_hashes (LSH-H)" and "task_acc" in ax.get_ylabel()
    assert list(ax.get_xticks()) == list(HASHES)  # only the measured n_hashes
    lines = _labelled(ax)
    assert not [k for k in lines if "Kitaev" in k or "Table 2" in k]  # the paper is not drawn
    assert "trained with full attention" in plot.caption and "not comparable" in plot.caption
    dense = next(v for k, v in lines.items() if k.startswith("dense (exact)"))
    assert set(dense[1]) == {100.0}
    for L in LENGTHS:
        for w in WEIGHTINGS:
            key = next(k for k in lines if k.startswith(f"L={L // 1024}K") and k.endswith(w))
            np.testing.assert_allclose(lines[key][1], [100 * TASK_ACC[h] for h in HASHES])
    _, out, md = variants
    assert (out / "task_acc_vs_n_hashes.png").is_file()
    assert "Reformer Table 2 view" not in md
    rows = table_rows(md, "## 7. Copy retrieval on the duplication input")
    assert all(r[-1] == "100.0 %" for r in rows)
    assert rows[0][-5:-1] == ["85.1 %", "96.3 %", "99.6 %", "100.0 %"]
    section = md.split("## 7. Copy retrieval on the duplication input")[1]
    assert "top-1 recall" in section and "trained with full attention" in section


def _task_points(values: dict[str, dict[int, float]], spread: float = 0.0) -> pd.DataFrame:
    """Tidy points of LSH duplicate rows: input label -> n_hashes -> task_acc (L = 1024)."""
    rows = []
    for label, by_h in values.items():
        for H, acc in by_h.items():
            rows.append({
                "input_kind": "duplicate", "input": label, "status": "ok", "task_acc": acc,
                "task_acc_lo": acc - spread, "task_acc_hi": acc + spread, "short": False,
                "exact": False, "method": "lsh", "run_index": 0, "run": "r", "backend": "numpy",
                "seqlen": 1024, "chunk_len": 64, "chunks_before": 1, "chunks_after": 0,
                "weighting": "count-once", "n_hashes": H,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_copy_retrieval_draws_one_panel_for_identical_inputs_and_no_unmeasured_segment() -> None:
    from lshbench.report.figures_task import figure_task, task_panels, task_table
    from lshbench.report.plotting import Palette

    same = {1: 0.85, 4: 0.99, 8: 1.0}
    points = _task_points({
        "duplicate (entropy 1 nats)": same,
        "duplicate (entropy 4 nats)": same,
        "duplicate (entropy 2 nats)": {1: 0.80, 2: 0.9, 8: 1.0},
    }, spread=0.02)  # fmt: skip
    table, hashes = task_table(points)
    assert hashes == [1, 2, 4, 8]
    panels = task_panels(table, hashes)
    assert panels == [
        ["duplicate (entropy 1 nats)", "duplicate (entropy 4 nats)"],
        ["duplicate (entropy 2 nats)"],
    ]
    plot = figure_task(points, Palette(points), set())
    axes = plot.figure.axes
    assert len(axes) == 2
    assert axes[0].get_title() == (
        "input=duplicate (entropy 1 nats) = duplicate (entropy 4 nats) (identical numbers)"
    )
    # the first lines lack H = 2: a gap there, no segment drawn from H = 1 to H = 4
    (line,) = [ln for ln in axes[0].lines if ln.get_label().startswith("L=1K")]
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    np.testing.assert_array_equal(x, [1, 2, 4, 8])
    assert np.isnan(y[1]) and np.isfinite(y[[0, 2, 3]]).all()
    assert table["lo 1"].iloc[0] == pytest.approx(0.83)  # the spread over draws
    assert table["hi 8"].iloc[0] == pytest.approx(1.02)
    # the table: one row for the inputs with identical numbers, spread in brackets
    from lshbench.report.document import Doc
    from lshbench.report.sections import table_task

    doc = Doc()
    table_task(doc, points, several_runs=False)
    md = doc.markdown()
    rows = [ln for ln in md.splitlines() if ln.startswith("| duplicate")]
    assert len(rows) == 2
    assert rows[0].startswith("| duplicate (entropy 1 nats) = duplicate (entropy 4 nats) | 1024 |")
    assert "85.0 % (83.0-87.0)" in rows[0] and "| - |" in rows[0]  # H = 2 not measured


# --------------------------------------------------------------------------- machines


def _two_machine_dir(tmp_path: Path) -> Path:
    """One directory holding two machines' rows (and an older code's rows on the first)."""
    import json

    rows = make_rows(lengths=(512, 1024, 2048), failures=False, hashes=(1, 2))
    rows = [dict(r, kernel="blas" if r["backend"] == "numba" else None) for r in rows]
    other = [dict(r, machine_id=OTHER_MACHINE, time_median_s=2 * r["time_median_s"],
                  kernel="tiled" if r["backend"] == "numba" else None)
             for r in rows]  # fmt: skip
    old = [dict(r, code_id="01dc0de000000000", time_median_s=5 * r["time_median_s"],
                finished_at="2025-01-01T00:00:00+00:00") for r in rows]  # fmt: skip
    new = [dict(r, finished_at="2026-01-01T00:00:00+00:00") for r in rows]
    folder = write_results(tmp_path / "mixed", old + new + other)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["machines"][OTHER_MACHINE] = {"cpu_model": OTHER_CPU, "logical_cpus": 4}
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_two_machines_are_two_series(tmp_path) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.figures_cost import figure_time
    from lshbench.report.plotting import Palette
    from lshbench.report.scaling import crossovers, fit_exponents

    folder = _two_machine_dir(tmp_path)
    run = ra.load_run(folder)
    assert [(d["code_id"], d["rows"]) for d in run.superseded] == [
        ("01dc0de000000000", len(run.table) // 2)]  # fmt: skip
    df = ra.prepare([run])
    other_label = "Intel Xeon Platinum 8375C (ffee0011)"
    assert sorted(set(df["run"])) == sorted([MACHINE_LABEL, other_label])
    points = ra.series_points(df)
    plot = figure_time(points, fit_exponents(points), crossovers(points), Palette(points),
                       ra.varying_axes(df))  # fmt: skip
    lines = _labelled(plot.figure.axes[0])
    assert plot.figure.axes[0].get_ylabel() == "time per sequence (ms)"
    dense = {k: v for k, v in lines.items() if " dense" in k}
    assert set(dense) == {f"[{MACHINE_LABEL}] dense", f"[{other_label}] dense"}
    mine, theirs = dense[f"[{MACHINE_LABEL}] dense"][1], dense[f"[{other_label}] dense"][1]
    np.testing.assert_allclose(theirs, 2 * mine, rtol=1e-12)  # never merged, never old code
    np.testing.assert_allclose(mine, [1e3 * dense_time(L) for L in (512, 1024, 2048)], rtol=1e-12)


def test_report_lists_each_machine_and_the_superseded_code(tmp_path) -> None:
    folder = _two_machine_dir(tmp_path)
    md = render([folder], tmp_path / "out")
    rows = table_rows(md, "## Appendix: Machines")
    assert [r[0] for r in rows] == sorted([MACHINE_LABEL, "Intel Xeon Platinum 8375C (ffee0011)"])
    assert {r[2] for r in rows} == {MACHINE, OTHER_MACHINE}
    assert {r[3] for r in rows} == {CPU_MODEL, OTHER_CPU}
    first = next(
        ln for ln in md.split("## Appendix: Machines", 1)[1].splitlines() if ln.startswith("|")
    )
    header = [c.strip() for c in first.strip("|").split(" | ")]
    kernels = {r[2]: r[header.index("kernels")] for r in rows}
    assert kernels == {MACHINE: "numba: blas", OTHER_MACHINE: "numba: tiled"}
    assert any(r[-1].endswith("rows of 01dc0de000000000") for r in rows)
    assert "rows of older code `01dc0de000000000` on machine `a1b2c3d4` left out" in md


def test_two_directories_are_labelled_by_directory_and_machine(tmp_path) -> None:
    rows = make_rows(lengths=(512, 1024), failures=False, hashes=(1, 2))
    mine = write_results(tmp_path / "mine" / "quick", rows)
    ref = write_results(tmp_path / "reference" / "quick",
                        [dict(r, machine_id=OTHER_MACHINE) for r in rows])  # fmt: skip
    md = render([mine, ref], tmp_path / "out")
    labels = [r[0] for r in table_rows(md, "## Runs")]
    assert labels == ["mine/quick: AMD EPYC 7B13 (a1b2c3d4)", "reference/quick: machine ffee0011"]


# --------------------------------------------------------------------------- old tables


def test_old_table_without_the_new_columns_still_renders(tmp_path) -> None:
    rows = make_rows(lengths=(512, 1024, 2048), failures=False, hashes=(1, 2), schema="old")
    assert "attn_tv" not in rows[0] and "method" not in rows[0] and "top1_agree" in rows[0]
    folder = write_results(tmp_path / "old", rows)
    md = render([folder], tmp_path / "out")
    # method and weighting are filled in when read (old hashing rows are lsh/multiplicity)
    assert re.search(r"the table has no `machine_id`, `code_id`, "
                     r"`attn_tv`, `top1_recall`, `out_err_v`, `attn_entropy`", md)  # fmt: skip
    section = md.split("## Appendix: Best configuration under an error budget", 1)[1]
    assert "their budgets are on `rel_err`" in section
    header = next(ln for ln in section.splitlines() if ln.startswith("|"))
    assert header == (
        "| input | L | rel_err <= 0.01 | rel_err <= 0.05 | rel_err <= 0.1 | exact baseline |"
    )
    assert (tmp_path / "out" / "pareto.png").is_file()
    assert (tmp_path / "out" / "error_vs_n_hashes.png").is_file()
    assert "Left out: no LSH configuration has a random or local baseline" in md
    assert "Figure left out: no duplicate-input rows with a task accuracy" in md


def test_old_table_figures_fall_back_to_rel_err(tmp_path) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.figures_accuracy import figure_error, figure_pareto
    from lshbench.report.plotting import Palette

    rows = make_rows(lengths=(512, 1024, 2048), failures=False, hashes=(1, 2), schema="old")
    df = ra.prepare([ra.load_run(write_results(tmp_path / "old", rows))])
    points = ra.series_points(df)
    palette, varying = Palette(points), ra.varying_axes(df)
    plot = figure_error(points, "n_hashes", ("method", "weighting"), "error_hashes", palette,
                        varying)  # fmt: skip
    labels = {ax.get_ylabel() for ax in plot.figure.axes}
    assert labels == {"rel_err (relative output error)", "mass_recall (exact mass on keys seen)"}
    assert "drawn with rel_err" in plot.caption
    plot = figure_pareto(points, palette, varying)
    assert {ax.get_ylabel() for ax in plot.figure.axes} == {"rel_err (relative output error)"}


def test_input_labels_carry_their_parameters(tmp_path) -> None:
    from lshbench.report import analysis as ra
    from lshbench.report.columns import input_label

    assert input_label("peaked", 1.0, 0.5) == "peaked (entropy 1 nats, rho 0.5)"
    assert input_label("duplicate", 0.5, None) == "duplicate (entropy 0.5 nats)"
    assert input_label("gaussian", np.nan, np.nan) == "gaussian"
    assert input_label("gaussian", 2.0, 0.0) == "gaussian"  # parameters it does not take
    assert input_label("file:heads.npz", 1.0, 0.5) == "file:heads.npz"
    rows = make_rows(lengths=(512, 1024), failures=False, hashes=(1, 2))
    peaked = [dict(r, input="peaked", target_entropy=te, value_corr=0.5)
              for te in (1.0, 4.0) for r in rows if r["input"] == "gaussian"]  # fmt: skip
    df = ra.prepare([ra.load_run(write_results(tmp_path / "peaked", rows + peaked))])
    assert set(df["input"]) == {"clustered", "gaussian", "peaked (entropy 1 nats, rho 0.5)",
                                "peaked (entropy 4 nats, rho 0.5)"}  # fmt: skip
    assert set(df["input_kind"]) == {"clustered", "gaussian", "peaked"}
