"""Provenance (docs/design.md section 7): machine_id and code_id fingerprints, rows
reused only by the same cell, machine and code, and run entries never rewritten."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

import lshbench
from lshbench import ConfigError
from lshbench.measurement import machine
from lshbench.results.store import ResultStore, make_row


def task(L: int) -> dict:
    return {"backend": "numpy", "seqlen": L, "batch": 2, "d": 4, "dv": 4, "input": "gaussian",
            "causal": False, "dtype": "float32", "threads": 1, "seed": 0, "n_hashes": 2,
            "n_buckets": 8, "chunk_len": 4, "chunks_before": 1, "chunks_after": 0}  # fmt: skip


def ok(L: int, t: float = 0.5, **ids: str) -> dict:
    return make_row(task(L), "ok", time_median_s=t, **ids)


def run(run_id: str, machine_id: str = "m1", code_id: str = "c1", **kw) -> dict:
    return {"run_id": run_id, "machine_id": machine_id, "code_id": code_id, **kw}


# --------------------------------------------------------------------------- fingerprints


def test_machine_id_is_stable_and_follows_every_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    facts = machine.machine_facts()
    assert machine.machine_id() == machine.machine_id() == machine.machine_id(facts)
    assert len(machine.machine_id()) == 16 and int(machine.machine_id(), 16) >= 0
    assert facts["logical_cpus"] >= 1 and facts["memory_mib"] > 0 and facts["arch"]
    assert facts["packages"]["numpy"] and facts["blas"] is not None
    for key, value in facts.items():
        assert machine.machine_id({**facts, key: f"other {value}"}) != machine.machine_id(facts)
    monkeypatch.setattr(machine, "_cpu_model", lambda: "Intel Xeon Other")
    assert machine.machine_facts()["cpu_model"] == "Intel Xeon Other"
    assert machine.machine_id() != machine.machine_id(facts)


def test_machine_id_ignores_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    before = machine.machine_id()
    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    assert machine.machine_id() == before
    assert "vm" not in json.dumps(machine.machine_facts())


def test_code_id_fingerprints_every_source_file(tmp_path: Path) -> None:
    src = tmp_path / "lshbench"
    shutil.copytree(Path(lshbench.__file__).parent, src, ignore=shutil.ignore_patterns("*.pyc"))
    first = machine.code_id(src)
    assert first == machine.code_id(src) and len(first) == 16
    assert machine.code_id() == machine.code_id(Path(lshbench.__file__).parent)
    (src / "__pycache__").mkdir(exist_ok=True)
    (src / "__pycache__" / "x.cpython.pyc").write_bytes(b"compiled")
    (src / "notes.txt").write_text("not code")
    assert machine.code_id(src) == first  # only .py files count
    util = src / "util.py"
    util.write_text(util.read_text() + "\n# a comment\n")
    edited = machine.code_id(src)
    assert edited != first
    util.rename(src / "util2.py")
    assert machine.code_id(src) != edited  # names count too


def test_provenance_bundles_the_ids_and_facts() -> None:
    prov = machine.provenance()
    assert prov["machine_id"] == machine.machine_id(prov["machine"])
    assert prov["code_id"] == machine.code_id()


# --------------------------------------------------------------------------- resume


def test_previous_only_returns_a_row_of_the_same_cell_machine_and_code(tmp_path: Path) -> None:
    row = ok(16, machine_id="m1", code_id="c1")
    cell = row["cell_id"]
    with ResultStore(tmp_path) as store:
        store.append(row)
        assert store.previous(cell, "m1", "c1")["time_median_s"] == 0.5
        assert store.previous(cell, "m2", "c1") is None  # another machine
        assert store.previous(cell, "m1", "c2") is None  # another version of the code
        assert store.previous(ok(32)["cell_id"], "m1", "c1") is None
        with pytest.raises(ValueError, match="machine_id"):
            store.previous(cell, "", "c1")
        store.append(ok(16, 0.7, machine_id="m1", code_id="c1"))  # --force
        assert store.previous(cell, "m1", "c1")["time_median_s"] == 0.7


def test_legacy_rows_are_never_reused(tmp_path: Path) -> None:
    row = ok(16)
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    with ResultStore(tmp_path) as store:
        assert row["machine_id"] is None and len(store.all_rows()) == 1
        assert store.previous(row["cell_id"], "m1", "c1") is None


def test_rows_of_another_machine_stay_as_its_rows(tmp_path: Path) -> None:
    """A directory copied to another machine: its rows stay, labelled by machine."""
    with ResultStore(tmp_path) as store:
        store.begin_run(run("r1", "m-amd"))
        store.append(ok(16))
        store.end_run("r1")
    with ResultStore(tmp_path) as store:
        store.begin_run(run("r2", "m-intel"))
        cell = ok(16)["cell_id"]
        assert store.previous(cell, "m-intel", "c1") is None  # measured again here
        store.append(ok(16, 0.9))
        store.end_run("r2")
        store.export()
    table = lshbench.load_results(tmp_path).set_index("machine_id")
    assert table.loc["m-amd", "time_median_s"] == 0.5 and table.loc["m-amd", "run_id"] == "r1"
    assert table.loc["m-intel", "time_median_s"] == 0.9 and table.loc["m-intel", "run_id"] == "r2"


def test_rows_without_ids_take_the_current_runs(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.append(ok(8))  # no run begun: no ids
        store.begin_run(run("r1", "m1", "c1"))
        store.append(ok(16))
        store.append(ok(32, machine_id="worker-machine", code_id="c1"))  # measured elsewhere
        rows = store.all_rows()
    assert [(r["run_id"], r["machine_id"], r["code_id"]) for r in rows] == [
        (None, None, None),
        ("r1", "m1", "c1"),
        ("r1", "worker-machine", "c1"),
    ]


# --------------------------------------------------------------------------- run entries


def test_run_entries_are_never_rewritten_by_a_later_run(tmp_path: Path) -> None:
    amd = {"cpu_model": "AMD EPYC"}
    intel = {"cpu_model": "Intel Xeon"}
    with ResultStore(tmp_path) as store:
        store.begin_run(run("r1", "m-amd", machine=amd, command_line=["a"]))
        store.update_run("r1", {"workers": {"1": {"threading_layer": "omp"}}})
        store.end_run("r1", {"rows_run": {"ok": 1}})
    with ResultStore(tmp_path) as store:
        store.begin_run(run("r2", "m-intel", machine=intel))
        with pytest.raises(ConfigError, match="never rewritten"):
            store.update_run("r1", {"machine": intel})
        with pytest.raises(ConfigError, match="never rewritten"):
            store.begin_run(run("r1", "m-intel", machine=intel))
        with pytest.raises(ConfigError, match="machine"):
            store.update_run("r2", {"machine": amd})
        with pytest.raises(ConfigError, match="machine_id"):
            store.begin_run({"run_id": "r3", "code_id": "c1"})
    meta = json.loads((tmp_path / "metadata.json").read_text())
    runs = {r["run_id"]: r for r in meta["runs"]}
    assert list(runs) == ["r1", "r2"]
    assert runs["r1"]["machine"] == amd and runs["r1"]["machine_id"] == "m-amd"
    assert runs["r1"]["workers"]["1"]["threading_layer"] == "omp"
    assert runs["r1"]["end_time"] and runs["r1"]["rows_run"] == {"ok": 1}
    assert runs["r2"]["machine"] == intel and runs["r2"]["end_time"] is None
    assert meta["machines"] == {"m-amd": amd, "m-intel": intel}
    assert meta["run_id"] == "r2"  # the top level is the latest run's entry
