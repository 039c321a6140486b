"""Small helpers shared by test modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import lshbench

#: the small sweep grid the sweep and Dask executor tests share (a few seconds per backend)
SMALL_GRID = {
    "seqlen": [64, 128],
    "chunk_len": [32],
    "n_hashes": [1, 2],
    "threads": 1,
    "input": "gaussian",
    "method": "lsh",  # the grid stays small whatever the quick preset's variants
    "weighting": "multiplicity",
}


def backend_params(*names: str) -> list:
    """pytest params for backends, each skipped with the reason when not available here."""
    infos = lshbench.list_backends()
    params = []
    for name in names:
        info = infos.get(name)
        why = f"backend {name!r} not available here" + (f": {info.reason}" if info else "")
        params.append(
            pytest.param(
                name, marks=pytest.mark.skipif(info is None or not info.available, reason=why)
            )
        )
    return params


def full_scores(qk, causal: bool):
    """Masked scores of every (query, key) pair, written out plainly: qk (B, L, d) ->
    float64 (B, L, L) (docs/design.md section 2, steps 4-5)."""
    import numpy as np

    qk = np.asarray(qk, dtype=np.float64)
    _, L, d = qk.shape
    keys = qk / np.sqrt((qk**2).mean(-1, keepdims=True) + 1e-6) / np.sqrt(d)
    s = qk @ keys.transpose(0, 2, 1)  # (B, L, d) @ (B, d, L) -> (B, L, L)
    i, j = np.indices((L, L))
    if causal:
        s[:, j > i] = -1e9
    s[:, j == i] = -1e5
    return s


def full_multiplicities(qk, rotations, config):
    """C (B, L, L): occurrences of key j in ALL of query i's windows, by counting the
    window lists of :func:`lshbench.window_positions` one query at a time."""
    import numpy as np

    from lshbench.core.hashing import pipeline_buckets

    windows = lshbench.window_positions(pipeline_buckets(qk, rotations, config), config)
    B, _, L, _ = windows.shape
    C = np.zeros((B, L, L), dtype=np.int64)
    for b in range(B):
        for i in range(L):
            np.add.at(C[b, i], windows[b, :, i, :].ravel(), 1)
    return C


def full_softmax(logits):
    """Row softmax of (..., L) float64 logits (-inf allowed where a row has a finite one)."""
    import numpy as np

    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def naive_window_attention(qk, rotations, config):
    """(exact a, LSH ahat), each float64 (B, L, L), by the definitions of docs/design.md
    section 6: a = softmax(s); ahat_ij = C_ij exp(s_ij) / sum_k C_ik exp(s_ik), with
    C -> 1 where C > 0 for count-once weighting. O(L^2): small cases only."""
    import numpy as np

    s = full_scores(qk, config.causal)
    C = full_multiplicities(qk, rotations, config)
    if config.weighting == "count-once":
        C = (C > 0).astype(np.int64)
    with np.errstate(divide="ignore"):
        ahat = full_softmax(s + np.log(C))  # -inf where key j is in no window
    return full_softmax(s), ahat


def assert_one_line_exit_2(res: Any, *fragments: str) -> None:
    """A CliRunner result: exit status 2, ONE line ``Error: ...`` holding every fragment,
    no traceback."""
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_sweep_refused(tmp_path: Path, args: list[str], field: str) -> None:
    """``lshbench sweep --out tmp_path/never *args`` (run in ``tmp_path``) exits 2 with one
    stderr line naming ``field``, no traceback, and writes nothing, not even results/quick."""
    res = subprocess.run(
        [sys.executable, "-m", "lshbench", "sweep", "--out", str(tmp_path / "never"), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and field in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def refuse_writes_under(monkeypatch: pytest.MonkeyPatch, folder: Path, err: int) -> None:
    """Make ``folder`` (and everything under it) behave like an immutable or read-only
    directory for this process, whoever runs the tests (root ignores file modes): creating a
    file or directory there, opening a file there for writing, renaming into it or deleting
    from it raises ``OSError(err)``. Reading is untouched."""
    import builtins
    import errno
    import io
    import os

    root = os.path.abspath(folder)

    def inside(path: Any) -> bool:
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:  # a file descriptor
            return False
        return p == root or p.startswith(root + os.sep)

    def refuse(path: Any) -> None:
        cls = PermissionError if err in (errno.EACCES, errno.EPERM) else OSError
        raise cls(err, os.strerror(err), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open
    real = {name: getattr(os, name) for name in ("mkdir", "unlink", "remove", "rmdir")}
    real_replace, real_rename = os.replace, os.rename

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        if writing and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(fn: Any) -> Any:
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            if inside(path):
                refuse(path)
            return fn(path, *args, **kwargs)

        return guarded

    def guard_move(fn: Any) -> Any:
        def guarded(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if inside(src) or inside(dst):
                refuse(dst)
            return fn(src, dst, *args, **kwargs)

        return guarded

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    for name, fn in real.items():
        monkeypatch.setattr(os, name, guard(fn))
    monkeypatch.setattr(os, "replace", guard_move(real_replace))
    monkeypatch.setattr(os, "rename", guard_move(real_rename))
    import pathlib

    accessor = getattr(pathlib, "_NormalAccessor", None)  # Python 3.10: bound at import
    if accessor is not None:
        monkeypatch.setattr(accessor, "open", staticmethod(guarded_open), raising=False)
        for name in ("mkdir", "unlink", "rmdir"):
            monkeypatch.setattr(accessor, name, staticmethod(guard(real[name])), raising=False)
        for name, fn in (("replace", real_replace), ("rename", real_rename)):
            monkeypatch.setattr(accessor, name, staticmethod(guard_move(fn)), raising=False)


def limited_file_size(limit: int) -> Any:
    """A ``preexec_fn`` for a child process whose files cannot grow beyond ``limit`` bytes
    (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it fails with EFBIG): a disk that fills
    up mid-write, for any user, root included."""
    import resource
    import signal

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


def cache_stats_in_new_process(backend: str, module: str, names: list[str]) -> dict:
    """In a new interpreter: ``compile`` ``backend`` for float32 and float64, then
    ``{kernel: [cache hits, cache misses]}`` of the Numba kernels ``names`` of ``module``."""
    code = (
        "import json, numpy as np, lshbench, importlib\n"
        f"b = lshbench.get_backend({backend!r})\n"
        "b.compile(np.float32); b.compile(np.float64)\n"
        f"k = importlib.import_module({module!r})\n"
        f"names = {names!r}\n"
        "print(json.dumps({n: [sum(getattr(k, n).stats.cache_hits.values()),\n"
        "                      sum(getattr(k, n).stats.cache_misses.values())] for n in names}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])
