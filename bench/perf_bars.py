"""Performance bars of the ``numba`` backend (docs/design.md section 8): a script, not a test.

Everything that is compared is measured in ONE process, interleaved (every round times
every contender once, the order reversed on odd rounds: ABAB... BABA...), so load from
other jobs on the machine hits all contenders alike; ratios are taken per round and their
median reported. Memory is measured untimed, each contender in a fresh process
(``tracemalloc`` peak and resident-peak growth, :func:`lshbench.measurement.phases.measure_memory`).

Thread pools are pinned before NumPy, Numba or torch are imported: ``--threads`` (default
2) for OMP/OpenBLAS/MKL/Numba and ``torch.set_num_threads``; the numba backend itself keeps
BLAS at one thread inside its parallel loops.

Parts (``--part``, repeatable; default ``bars memory cache``)::

    python bench/perf_bars.py                          # the headline bars
    python bench/perf_bars.py --part table             # numba vs numpy, L 1K..64K, H 1..8
    python bench/perf_bars.py --part variants          # random / local / count-once vs lsh
    python bench/perf_bars.py --part dense             # dense vs torch-sdpa and the exact floor
    python bench/perf_bars.py --part table --table-backends numba,numpy,hf,dense,torch-sdpa
    python bench/perf_bars.py --part table --table-backends hf,torch-lsh \
        --table-seqlens 16384 --table-hashes 8        # torch-lsh / hf, paired per round

* ``bars``: L=16384, d=64, n_hashes=8, chunk 64, 1 back, float32: numba (its per-machine
  kernel choice, ``auto``, and each candidate kernel forced) vs hf for n_buckets=512 and
  (16, 32), vs torch-sdpa; each call over its floor: (attention FLOPs ``4*H*L*W*d`` +
  hashing FLOPs ``2*H*L*d*rot_size/2``) at the same round's float32 2048x2048
  ``np.matmul`` rate (docs/design.md section 8); and numba's stages in the same rounds: hash,
  sort, attention per candidate (gathers, the two chunk products, masks, exp and the online
  combine, which is fused into the chunk loop), the two products alone on in-cache blocks,
  and the rest of the call.
* ``memory``: numba vs hf at n_hashes 1 and 8 (tracemalloc cannot see torch's allocator,
  so hf's tracemalloc number is only its NumPy output; compare the resident peaks).
* ``cache``: a second process loads the compiled kernels from the on-disk cache.
* ``variants``: numba's section-2b variants (random, local, count-once) against its default
  on the bars configuration (nb=512), time ratios per round (bar: <= 1.3x).
* ``table``: time and memory per backend for every L and n_hashes (nb = 2L/chunk).
* ``dense``: the dense backend (exact attention) at L = 2048 to 16384 and 1 and 2 threads
  (``--dense-seqlens``, ``--dense-threads``): dense / torch-sdpa (bar <= 1.0) and dense /
  exact floor (bar <= 1.25), the floor being ``4*B*L^2*d`` at the same round's SGEMM rate
  at the same threads; causal dense / dense, and separate queries and keys (a captured
  model's exact baseline) / dense and its NumPy reference path / the kernel, in the same
  rounds (``--dense-d``: the head size, 64 by default).
"""

from __future__ import annotations

import os
import sys


def _option_from_argv(name: str, default: str) -> str:
    """An option's value, read before the imports below (thread pools read env at load)."""
    for i, arg in enumerate(sys.argv):
        if arg == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


THREADS = int(_option_from_argv("--threads", "2"))
WAIT_POLICY = _option_from_argv("--wait-policy", "passive")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
for _var in THREAD_VARS:
    os.environ[_var] = str(THREADS)  # before NumPy / Numba / torch are imported
if WAIT_POLICY != "default":
    # Idle threads of the OpenMP pools (Numba's, torch's) and of OpenBLAS sleep at once
    # instead of spinning (OpenBLAS spins 2**28 cycles by default), so a pool left spinning
    # by one contender does not steal the 2 cores from the next one in the interleaving.
    os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY.upper()
    if WAIT_POLICY == "passive":
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"  # 2**4 cycles, the minimum

import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402

import lshbench  # noqa: E402
from lshbench.measurement.phases import (  # noqa: E402
    calibrate_number,
    measure_memory,
    summarize,
    time_interleaved,
)

D = 64
CHUNK = 64
SEQLEN = 16384
N_HASHES = 8
GEMM_N = 2048
BAR_BUCKETS: dict[str, int | tuple[int, ...]] = {"nb=512": 512, "nb=(16,32)": (16, 32)}


# ------------------------------------------------------------------------- helpers


def inputs(seqlen: int, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian float32 qk (L, d) and v (L, d)."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((seqlen, d)).astype(np.float32),
        rng.standard_normal((seqlen, d)).astype(np.float32),
    )


def config(n_hashes: int, n_buckets: int | tuple[int, ...]) -> lshbench.LSHConfig:
    return lshbench.LSHConfig(n_hashes=n_hashes, n_buckets=n_buckets, chunk_len=CHUNK)


def paper_buckets(seqlen: int) -> int:
    """The paper's rule nb = 2L / chunk_len."""
    return max(2, 2 * seqlen // CHUNK)


def attention_flops(seqlen: int, n_hashes: int, d: int = D) -> int:
    """docs/design.md section 5: ``4*H*L*W*d`` for the chunked attention (d_v = d, W = 2*chunk)."""
    return 4 * n_hashes * seqlen * 2 * CHUNK * d


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int, number: dict[str, int]):
    """ABAB: ``rounds`` rounds, each timing every call once; odd rounds reversed."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        got = time_interleaved({n: calls[n] for n in order}, repeats=1, number=number)
        for n in order:
            samples[n] += got[n]
        click.echo(f"  round {r + 1}/{rounds} done", err=True)
    return samples


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Median, min and max over rounds of num[r] / den[r]."""
    r = np.asarray(num) / np.asarray(den)
    return float(np.median(r)), float(r.min()), float(r.max())


def ms(x: float) -> str:
    return f"{x * 1e3:.1f}"


def mib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2**20:.1f}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def available(name: str) -> bool:
    info = lshbench.list_backends().get(name)
    return bool(info and info.available)


def pin_torch() -> None:
    if available("torch-sdpa"):
        import torch

        torch.set_num_threads(THREADS)


def gemm_call() -> Callable[[], Any]:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    b = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    return lambda: np.matmul(a, b)


# ---------------------------------------------------------------------------- bars


def hash_flops(cfg: lshbench.LSHConfig, seqlen: int = SEQLEN, d: int = D) -> int:
    """Hashing FLOPs ``2*H*L*d*rot_size/2`` (the projections qk @ R per round)."""
    return 2 * cfg.n_hashes * seqlen * d * (cfg.rot_size // 2)


def floor_flops(cfg: lshbench.LSHConfig) -> int:
    """docs/design.md section 8: attention FLOPs + hashing FLOPs of the whole call."""
    return attention_flops(SEQLEN, cfg.n_hashes) + hash_flops(cfg)


def kernel_backends() -> dict[str, Any]:
    """The numba backend with its per-machine choice (``auto``) and forced to each candidate."""
    from lshbench.backends.numba_lsh import KERNELS, NumbaBackend

    auto = lshbench.get_backend("numba")
    out = {"auto": auto} | {k: NumbaBackend(kernel=k) for k in KERNELS}
    for backend in out.values():
        backend.compile(np.float32)
    return out


def stage_calls(numba_backends: dict[str, Any], qk, v, cfg, label: str) -> dict[str, Callable]:
    """numba's stages on the bars problem, each callable alone: hash (qk @ R and argmax),
    sort (counting sort of a copy of the buckets), attention per candidate kernel (key
    scales, gathers, the two chunk products, masks, exp and the online round combine, which
    is fused into the chunk loop)."""
    nb = numba_backends["auto"]
    rot = lshbench.random_rotations(D, cfg, seed=0)
    qk3, v3 = qk[None], v[None]
    with nb._blas.limit():
        buckets = nb._hash(qk3, cfg, rot)
        slots = buckets.copy()
        nb._sort(slots, cfg)

    def hashed() -> Any:
        with nb._blas.limit():
            return nb._hash(qk3, cfg, rot)

    def sort() -> Any:
        s = buckets.copy()  # (1, H*L) int32, 0.5 MiB: negligible next to the sort
        nb._sort(s, cfg)
        return s

    calls = {f"stage hash {label}": hashed, f"stage sort {label}": sort}
    for name, backend in numba_backends.items():
        if name != "auto":
            calls[f"stage attention[{name}] {label}"] = lambda b=backend: attention_stage(
                b, qk3, v3, cfg, slots
            )
    return calls


def attention_stage(backend, qk3, v3, cfg, slots) -> Any:
    """numba's attention stage alone (BLAS at one thread, as in a whole call)."""
    with backend._blas.limit():
        return backend._chunked_attention(qk3, v3, cfg, slots)


def products_calls(blas_limit: Callable, kernel_names: list[str]) -> dict[str, Callable]:
    """The attention stage's two chunk products alone, as many as the bars' call has
    (H*L/m chunks of W = 128 keys, d = dv = m = 64), on in-cache blocks: the stage's
    compute part without gathers, masks, exp and combine."""
    import numba

    from lshbench.backends import _numba_kernels as kernels
    from lshbench.backends.numba_lsh import _KERNEL_CODES

    nt, m, W = numba.get_num_threads(), CHUNK, 2 * CHUNK
    rng = np.random.default_rng(2)
    n_chunks = N_HASHES * SEQLEN // m
    calls = {}
    for name in kernel_names:
        code = _KERNEL_CODES[name]
        tiled = name != "blas"  # values product tiled: values held transposed
        rq = rng.standard_normal((nt, W, D)).astype(np.float32)
        rv = rng.standard_normal((nt, D, W) if tiled else (nt, W, D)).astype(np.float32)
        qt = rng.standard_normal((nt, D, m)).astype(np.float32)
        pt = rng.random((nt, m, W)).astype(np.float32)
        st = np.empty((nt, W, m), np.float32)
        o = np.empty((nt, m, D), np.float32)
        calls[f"stage products[{name}]"] = lambda c=code, a=(rq, rv, qt, pt, st, o): products(c, a)

    def products(code: int, arrays: tuple) -> None:
        with blas_limit():  # BLAS at one thread inside the parallel loop
            kernels.products_only(code, n_chunks, *arrays)

    return calls


def bars_calls(rounds: int) -> tuple[dict[str, Callable], dict[str, Any], float]:
    """Every call the bars part times, interleaved: GEMM, numba (auto and each candidate),
    hf and torch-sdpa, and numba's stages."""
    pin_torch()
    start = time.perf_counter()
    backends = kernel_backends()
    compile_s = time.perf_counter() - start
    qk, v = inputs(SEQLEN)
    calls: dict[str, Callable[[], Any]] = {"gemm 2048^3": gemm_call()}
    hf = lshbench.get_backend("hf") if available("hf") else None
    for label, nb in BAR_BUCKETS.items():
        cfg = config(N_HASHES, nb)
        rot = lshbench.random_rotations(D, cfg, seed=0)
        for name, backend in backends.items():
            calls[f"numba[{name}] {label}"] = lambda b=backend, c=cfg, r=rot: b.attend(qk, v, c, r)
        if hf is not None:
            calls[f"hf {label}"] = lambda c=cfg, r=rot: hf.attend(qk, v, c, r)
        calls.update(stage_calls(backends, qk, v, cfg, label))
    names = [k for k in backends if k != "auto"]
    calls.update(products_calls(backends["auto"]._blas.limit, names))
    if available("torch-sdpa"):
        sdpa = lshbench.get_backend("torch-sdpa")
        calls["torch-sdpa (dense)"] = lambda c=cfg: sdpa.attend(qk, v, c)
    return calls, backends, compile_s


def per_round_floor_ratio(samples, name: str, flops: int) -> tuple[float, float, float]:
    """Median (min, max) over rounds of time / floor, floor = flops / that round's GEMM rate."""
    floor = [flops * t / (2 * GEMM_N**3) for t in samples["gemm 2048^3"]]
    return paired_ratio(samples[name], floor)


def calls_table(samples, summary) -> list[list[Any]]:
    gemm_rate = 2 * GEMM_N**3 / summary["gemm 2048^3"].time_median_s
    rows = []
    for name, s in summary.items():
        rate = ""
        if name.startswith("numba"):
            cfg = config(N_HASHES, BAR_BUCKETS[name.split()[-1]])
            g = floor_flops(cfg) / s.time_median_s
            rate = f"{g / 1e9:.1f} ({g / gemm_rate:.0%} of GEMM)"
        elif name.startswith("gemm"):
            rate = f"{gemm_rate / 1e9:.1f}"
        rows.append([name, ms(s.time_median_s), ms(s.time_iqr_s), ms(s.time_min_s), rate])
    return rows


def ratio_table(samples, kernels: list[str]) -> list[list[Any]]:
    rows = []
    for label, nb in BAR_BUCKETS.items():
        flops = floor_flops(config(N_HASHES, nb))
        for k in kernels:
            me = f"numba[{k}] {label}"
            med, lo, hi = per_round_floor_ratio(samples, me, flops)
            rows.append([f"{me} / floor", f"{med:.2f}", f"{lo:.2f}-{hi:.2f}", "<= 1.5",
                         "yes" if med <= 1.5 else "NO"])  # fmt: skip
            if f"hf {label}" in samples:
                med, lo, hi = paired_ratio(samples[f"hf {label}"], samples[me])
                rows.append([f"hf / {me}", f"{med:.1f}", f"{lo:.1f}-{hi:.1f}", ">= 10",
                             "yes" if med >= 10 else "NO"])  # fmt: skip
        if f"hf {label}" in samples:  # numba at the floor would be this much faster than hf
            med, lo, hi = per_round_floor_ratio(samples, f"hf {label}", flops)
            rows.append([f"hf {label} / floor (the most hf / numba can be)", f"{med:.1f}",
                         f"{lo:.1f}-{hi:.1f}", ">= 10 for the 10x bar to be reachable",
                         "yes" if med >= 10 else "NO"])  # fmt: skip
        if "torch-sdpa (dense)" in samples:
            med, lo, hi = paired_ratio(
                samples["torch-sdpa (dense)"], samples[f"numba[auto] {label}"]
            )
            rows.append([f"torch-sdpa / numba[auto] {label}", f"{med:.2f}", f"{lo:.2f}-{hi:.2f}",
                         "> 1", "yes" if med > 1 else "NO"])  # fmt: skip
    return rows


def stage_table(samples, label: str, auto_kernel: str, kernels: list[str]) -> list[list[Any]]:
    """Stage, median ms, median per-round share of numba[auto]'s whole call, and stage /
    its floor (its FLOPs at the same round's GEMM rate)."""
    cfg = config(N_HASHES, BAR_BUCKETS[label])
    whole = samples[f"numba[auto] {label}"]
    attn = attention_flops(SEQLEN, N_HASHES)
    stages: list[tuple[str, list[float], int | None]] = [
        ("hash", samples[f"stage hash {label}"], hash_flops(cfg)),
        ("sort", samples[f"stage sort {label}"], None),
    ]
    for k in kernels:
        stages.append((f"attention[{k}]", samples[f"stage attention[{k}] {label}"], attn))
        stages.append((f"  of which products[{k}] (in cache)", samples[f"stage products[{k}]"],
                       attn))  # fmt: skip
    parts = [samples[f"stage hash {label}"], samples[f"stage sort {label}"],
             samples[f"stage attention[{auto_kernel}] {label}"]]  # fmt: skip
    rest = [w - sum(p[r] for p in parts) for r, w in enumerate(whole)]
    stages.append((f"rest (whole - hash - sort - attention[{auto_kernel}])", rest, None))
    stages.append((f"whole call numba[auto = {auto_kernel}]", whole, floor_flops(cfg)))
    rows = []
    floor_s = [2 * GEMM_N**3 / t for t in samples["gemm 2048^3"]]  # GEMM FLOP/s per round
    for name, got, flops in stages:
        share, _, _ = paired_ratio(got, whole)
        vs_floor = "-"
        if flops is not None:
            med, lo, hi = paired_ratio(got, [flops / g for g in floor_s])
            vs_floor = f"{med:.2f} ({lo:.2f}-{hi:.2f})"
        floor_ms = "-" if flops is None else ms(flops / float(np.median(floor_s)))
        rows.append([name, ms(float(np.median(got))), f"{share:.0%}", floor_ms, vs_floor])
    return rows


def part_bars(rounds: int) -> str:
    calls, backends, compile_s = bars_calls(rounds)
    for call in calls.values():
        call()  # warm-up (first call of each)
    samples = interleaved(calls, rounds, {})
    summary = {n: summarize(s) for n, s in samples.items()}
    kernels = [k for k in backends if k != "auto"]
    facts = backends["auto"].describe()
    text = [
        f"### Bars: L={SEQLEN}, d={D}, n_hashes={N_HASHES}, chunk {CHUNK}, 1 back, float32, "
        f"{THREADS} threads, {rounds} interleaved rounds",
        f"numba compile/cache-load (auto + {len(kernels)} forced instances): {compile_s:.2f} s; "
        f"auto kernel: {facts['kernel']} (source {facts['kernel_source']}, candidate times "
        f"{facts['kernel_times_s']}); CPU {facts['cpu_model']}; threading layer "
        f"{facts['threading_layer']}",
        "floor = (attention FLOPs 4*H*L*W*d + hashing FLOPs 2*H*L*d*rot_size/2) / the same "
        "round's float32 GEMM rate (np.matmul 2048x2048); GFLOP/s below count those FLOPs",
        "",
        table(
            ["call", "median ms", "IQR ms", "min ms", "GFLOP/s (floor FLOPs)"],
            calls_table(samples, summary),
        ),
        "",
        table(
            ["ratio (per round)", "median", "range", "bar", "met"],
            ratio_table(samples, ["auto", *kernels]),
        ),
        "",
    ]
    for label in BAR_BUCKETS:
        text += [
            f"Stages, {label} (share: median per-round stage / whole numba[auto] call):",
            "",
            table(
                ["stage", "median ms", "share of whole", "floor ms", "stage / floor"],
                stage_table(samples, label, facts["kernel"], kernels),
            ),
            "",
        ]
    if not available("hf") or not available("torch-sdpa"):
        text.append("(peers not installed: pip install 'lshbench[peers]')\n")
    return "\n".join(text)


# ------------------------------------------------------------------------ variants

#: docs/design.md section 2b variants timed against the default (lsh, multiplicity); bar 1.3x
VARIANTS: dict[str, dict[str, str]] = {
    "random": {"method": "random"},
    "local": {"method": "local"},
    "count-once": {"weighting": "count-once"},
}
VARIANT_BAR = 1.3


def part_variants(rounds: int) -> str:
    """numba's variants vs its default on the bars configuration (nb=512), interleaved; on
    the bars' Gaussian input (the bar) and on clustered input (count-once does one step per
    extra occurrence of a key, and clustered input has many)."""
    from lshbench.measurement.inputs import make_inputs

    numba_backend = lshbench.get_backend("numba")
    compile_s = numba_backend.compile(np.float32)
    rounds = max(rounds, 7)
    base = config(N_HASHES, 512)
    rot = lshbench.random_rotations(D, base, seed=0)
    configs = {"default (lsh, multiplicity)": base}
    configs.update({name: replace(base, **fields) for name, fields in VARIANTS.items()})
    text = [
        f"### Variants: L={SEQLEN}, d={D}, n_hashes={N_HASHES}, chunk {CHUNK}, 1 back, "
        f"nb=512, float32, {THREADS} threads, {rounds} interleaved rounds per input",
        f"numba compile/cache-load in this process: {compile_s:.2f} s",
        "",
    ]
    for kind in ("gaussian", "clustered"):
        qk, v = inputs(SEQLEN) if kind == "gaussian" else make_inputs(kind, 1, SEQLEN, D)
        calls: dict[str, Callable[[], Any]] = {
            name: (lambda c=cfg, x=qk, y=v: numba_backend.attend(x, y, c, rot))
            for name, cfg in configs.items()
        }
        for call in calls.values():
            call()  # warm-up (compiles the count-once kernels if compile() did not)
        samples = interleaved(calls, rounds, {})
        default = samples["default (lsh, multiplicity)"]
        rows = []
        for name, got in samples.items():
            s = summarize(got)
            ratio, met = "1", ""
            if name in VARIANTS:
                med, lo, hi = paired_ratio(got, default)
                ratio = f"{med:.2f} ({lo:.2f}-{hi:.2f})"
                met = ("yes" if med <= VARIANT_BAR else "NO") if kind == "gaussian" else "-"
            rows.append([name, ms(s.time_median_s), ms(s.time_iqr_s), ms(s.time_min_s), ratio, met])
        header = ["variant", "median ms", "IQR ms", "min ms", "time / default (per round)"]
        bar = f"<= {VARIANT_BAR}x" + (" (the bar)" if kind == "gaussian" else " (information)")
        text += [f"{kind} input:", "", table([*header, bar], rows), ""]
    return "\n".join(text)


# --------------------------------------------------------------------------- dense

#: bars of the dense part: dense / torch-sdpa and dense / exact floor, per L and threads
DENSE_SDPA_BAR = 1.0
DENSE_FLOOR_BAR = 1.25


def dense_floor_flops(seqlen: int, batch: int = 1, d: int = D) -> int:
    """Exact attention's FLOPs ``4*B*L^2*d`` (scores and value product, d_v = d)."""
    return 4 * batch * seqlen * seqlen * d


def part_dense(rounds: int, seqlens: list[int], threads_list: list[int], d: int = D) -> str:
    """The dense backend against torch SDPA and the exact floor (``4*B*L^2*d`` at the same
    round's SGEMM rate at the same threads: np.matmul 2048^3 with BLAS at that many
    threads), float32, B = 1, head size ``d``, interleaved; causal dense / dense, separate
    queries and keys / dense (the exact baseline of a captured model) and dense-numpy /
    dense on separate queries and keys, in the same rounds."""
    import numba
    from threadpoolctl import threadpool_limits

    pin_torch()
    dense = lshbench.get_backend("dense")
    reference = lshbench.get_backend("dense-numpy")
    compile_s = dense.compile(np.float32)
    sdpa = lshbench.get_backend("torch-sdpa") if available("torch-sdpa") else None
    cfg, causal = lshbench.LSHConfig(), lshbench.LSHConfig(causal=True)
    separate = lshbench.LSHConfig(qk="separate")
    gemm = gemm_call()
    rows = []
    for threads in threads_list:
        numba.set_num_threads(threads)
        if sdpa is not None:
            import torch

            torch.set_num_threads(threads)

        def sgemm(t: int = threads) -> Any:
            with threadpool_limits(limits=t, user_api="blas"):
                return gemm()

        for L in seqlens:
            qk, v = inputs(L, d)
            keys, _ = inputs(L, d, seed=1)
            calls: dict[str, Callable[[], Any]] = {
                "sgemm": sgemm,
                "dense": lambda x=qk, y=v: dense.attend(x, y, cfg),
                "dense causal": lambda x=qk, y=v: dense.attend(x, y, causal),
                "dense separate": lambda x=qk, y=v, k=keys: dense.attend(x, y, separate, k=k),
                "dense-numpy separate": lambda x=qk, y=v, k=keys: reference.attend(
                    x, y, separate, k=k
                ),
            }
            if sdpa is not None:
                calls["torch-sdpa"] = lambda x=qk, y=v: sdpa.attend(x, y, cfg)
            number = {}
            for name, call in calls.items():
                call()  # warm-up
                start = time.perf_counter()
                call()
                number[name] = calibrate_number(time.perf_counter() - start)  # short L: several
            samples = interleaved(calls, rounds, number)
            flops = dense_floor_flops(L, d=d)
            floor = [flops * t / (2 * GEMM_N**3) for t in samples["sgemm"]]
            gemm_rate = 2 * GEMM_N**3 / float(np.median(samples["sgemm"]))
            dense_s = float(np.median(samples["dense"]))
            vs_floor, lo_f, hi_f = paired_ratio(samples["dense"], floor)
            half, _, _ = paired_ratio(samples["dense causal"], samples["dense"])
            apart, _, _ = paired_ratio(samples["dense separate"], samples["dense"])
            numpy_path, _, _ = paired_ratio(
                samples["dense-numpy separate"], samples["dense separate"]
            )
            vs_sdpa, sdpa_ms = "-", "-"
            met_sdpa = "-"
            if sdpa is not None:
                med, lo, hi = paired_ratio(samples["dense"], samples["torch-sdpa"])
                vs_sdpa = f"{med:.2f} ({lo:.2f}-{hi:.2f})"
                sdpa_ms = ms(float(np.median(samples["torch-sdpa"])))
                met_sdpa = "yes" if med <= DENSE_SDPA_BAR else "NO"
            rows.append([
                threads, L, ms(dense_s), sdpa_ms, f"{gemm_rate / 1e9:.0f}",
                f"{flops / dense_s / 1e9:.0f}", vs_sdpa, met_sdpa,
                f"{vs_floor:.2f} ({lo_f:.2f}-{hi_f:.2f})",
                "yes" if vs_floor <= DENSE_FLOOR_BAR else "NO", f"{half:.2f}", f"{apart:.2f}",
                f"{numpy_path:.2f}",
            ])  # fmt: skip
            click.echo(f"dense: threads={threads} L={L} done", err=True)
    header = [
        "threads", "L", "dense ms", "torch-sdpa ms", "SGEMM GFLOP/s", "dense GFLOP/s",
        f"dense / SDPA (bar <= {DENSE_SDPA_BAR})", "met",
        f"dense / floor (bar <= {DENSE_FLOOR_BAR})", "met", "causal / dense",
        "separate QK / dense", "separate QK: dense-numpy / dense",
    ]  # fmt: skip
    from lshbench.backends._numba_choice import cpu_model

    text = [
        f"### Dense: exact attention, B=1, d={d}, float32, {rounds} interleaved rounds per "
        f"cell; CPU {cpu_model()}",
        f"dense compile/cache-load: {compile_s:.2f} s; floor = 4*B*L^2*d at the same round's "
        f"SGEMM rate (np.matmul {GEMM_N}^3, BLAS at the row's threads); ratios are medians "
        "(min-max) of per-round ratios",
        "",
        table(header, rows),
        "",
    ]
    if sdpa is None:
        text.append("(torch-sdpa not installed: pip install 'lshbench[peers]')\n")
    return "\n".join(text)


# -------------------------------------------------------------------------- memory


def memory_in_fresh_process(
    backend: str, seqlen: int, n_hashes: int, n_buckets: int | tuple[int, ...]
) -> dict[str, Any]:
    """Run :func:`mem_worker` in a new interpreter; its JSON line."""
    cmd = [
        sys.executable,
        __file__,
        "--threads",
        str(THREADS),
        "mem-worker",
        backend,
        str(seqlen),
        str(n_hashes),
        json.dumps(n_buckets),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def part_memory() -> str:
    rows = []
    peaks: dict[tuple[str, int], dict[str, Any]] = {}
    for backend in ("numba", "hf"):
        if not available(backend):
            continue
        for h in (1, N_HASHES):
            got = memory_in_fresh_process(backend, SEQLEN, h, 512)
            peaks[backend, h] = got
            rows.append(
                [
                    backend,
                    h,
                    mib(got.get("alloc_peak_bytes")),
                    mib(got.get("rss_peak_bytes")),
                    got.get("error", ""),
                ]
            )
    text = [
        f"### Memory: L={SEQLEN}, d={D}, nb=512, chunk {CHUNK}, float32 (fresh process each)",
        "",
        table(["backend", "n_hashes", "tracemalloc peak MiB", "resident peak MiB", "error"], rows),
        "",
        "tracemalloc does not see torch's CPU allocator: hf's tracemalloc peak is only its "
        "NumPy output; the resident peak (VmHWM growth) is comparable across backends.",
        "",
    ]
    n1, n8, h8 = (
        peaks.get(("numba", 1)),
        peaks.get(("numba", N_HASHES)),
        peaks.get(("hf", N_HASHES)),
    )
    if n1 and n8 and "error" not in n1 and "error" not in n8:
        text.append(
            f"numba peak H={N_HASHES} / H=1: tracemalloc "
            f"{n8['alloc_peak_bytes'] / n1['alloc_peak_bytes']:.2f}, resident "
            f"{(n8['rss_peak_bytes'] or 0) / max(1, n1['rss_peak_bytes'] or 1):.2f}"
        )
    if n8 and h8 and "error" not in h8 and h8.get("rss_peak_bytes"):
        resident = h8["rss_peak_bytes"] / n8["rss_peak_bytes"]
        text.append(
            f"hf / numba at H={N_HASHES}: resident {resident:.0f}x,"
            f" hf resident vs numba tracemalloc "
            f"{h8['rss_peak_bytes'] / n8['alloc_peak_bytes']:.0f}x (bar: >= 20x)"
        )
    return "\n".join(text) + "\n"


# --------------------------------------------------------------------------- cache


def part_cache() -> str:
    lshbench.get_backend("numba").compile(np.float32)  # make sure the cache is written
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import json, numpy as np, lshbench\n"
        "b = lshbench.get_backend('numba'); t1 = time.perf_counter()\n"
        "c = b.compile(np.float32); t2 = time.perf_counter()\n"
        "from lshbench.backends import _numba_kernels as k\n"
        "miss = sum(sum(getattr(k, n).stats.cache_misses.values())\n"
        "           for n in ('hash_all', 'sort_rounds', 'key_scales', 'attend_all',\n"
        "                     'chunk_ids'))\n"
        "print(json.dumps({'import_s': t1 - t0, 'compile_s': c, 'misses': miss}))\n"
    )
    first = []
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        first.append(json.loads(res.stdout.strip().splitlines()[-1]))
    rows = [
        [i + 1, f"{f['import_s']:.2f}", f"{f['compile_s']:.2f}", f["misses"]]
        for i, f in enumerate(first)
    ]
    return "\n".join(
        [
            "### Second process: kernels from the on-disk cache",
            "",
            table(
                [
                    "process",
                    "import lshbench+backend s",
                    "compile() (cache load + first calls) s",
                    "kernels recompiled",
                ],
                rows,
            ),
            "",
        ]
    )


# --------------------------------------------------------------------------- table


def part_table(seqlens: list[int], hashes: list[int], backends: list[str], rounds: int) -> str:
    pin_torch()
    backends = [b for b in backends if available(b)]
    base = backends[0]  # the ratio column divides by the first backend listed
    objs = {b: lshbench.get_backend(b) for b in backends}
    if "numba" in objs:
        objs["numba"].compile(np.float32)
    rows = []
    times: dict[tuple[str, int, int], float] = {}
    for L in seqlens:
        qk, v = inputs(L)
        for h in hashes:
            cfg = config(h, paper_buckets(L))
            rot = lshbench.random_rotations(D, cfg, seed=0)
            calls = {}
            for b in backends:
                if not objs[b].uses_hashing and h != hashes[0]:
                    continue  # dense peers ignore n_hashes: measured once per L
                calls[b] = lambda o=objs[b], c=cfg, r=rot, x=qk, y=v: o.attend(x, y, c, r)
            number = {}
            for b, call in calls.items():
                start = time.perf_counter()
                call()  # warm-up, and the calls per sample
                number[b] = calibrate_number(time.perf_counter() - start)
            samples = interleaved(calls, rounds, number)
            for b in calls:
                s = summarize(samples[b])
                times[b, L, h] = s.time_median_s
                peak, _ = measure_memory(calls[b])
                ratio = ""
                if b != base and base in samples:
                    med, lo, hi = paired_ratio(samples[b], samples[base])
                    ratio = f"{med:.3g}x ({lo:.3g}-{hi:.3g})"
                rows.append(
                    [
                        L,
                        h,
                        b,
                        ms(s.time_median_s),
                        ms(s.time_iqr_s),
                        mib(peak.alloc_peak_bytes),
                        mib(peak.rss_peak_bytes),
                        ratio,
                    ]
                )
            click.echo(f"L={L} H={h} done", err=True)
    text = [
        f"### Table: d={D}, chunk {CHUNK}, 1 back, nb=2L/chunk, float32, {THREADS} threads, "
        f"{rounds} interleaved rounds per cell",
        "",
        table(
            [
                "L",
                "n_hashes",
                "backend",
                "median ms",
                "IQR ms",
                "tracemalloc MiB",
                "resident MiB",
                f"time / {base} (per round)",
            ],
            rows,
        ),
        "",
    ]
    if "numba" in objs and len(seqlens) >= 2:
        fits = []
        for h in hashes:
            y = [times.get(("numba", L, h)) for L in seqlens]
            if all(t is not None for t in y):
                slope = np.polyfit(np.log(seqlens), np.log(y), 1)[0]
                fits.append([h, f"{slope:.2f}"])
        text += [table(["n_hashes", "numba time ~ L^k, k (bar <= 1.15)"], fits), ""]
    if "numpy" in objs and "numba" in objs:
        slower = [
            (L, h)
            for L in seqlens
            for h in hashes
            if times.get(("numba", L, h), 0) >= times.get(("numpy", L, h), np.inf)
        ]
        text.append(f"cells where numba is not faster than numpy: {slower or 'none'}\n")
    return "\n".join(text)


# ----------------------------------------------------------------------------- CLI


@click.group(invoke_without_command=True)
@click.option("--threads", type=int, default=2, show_default=True, help="thread pools")
@click.option(
    "--wait-policy",
    type=click.Choice(["passive", "active", "default"]),
    default="passive",
    show_default=True,
    help="idle thread pools: passive = OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4; "
    "'default' leaves both unset",
)
@click.option(
    "--part",
    "parts",
    multiple=True,
    default=("bars", "memory", "cache"),
    type=click.Choice(["bars", "memory", "cache", "table", "variants", "dense"]),
    show_default=True,
)
@click.option("--rounds", type=int, default=7, show_default=True, help="interleaved rounds")
@click.option("--table-seqlens", default="1024,2048,4096,8192,16384,32768,65536", show_default=True)
@click.option("--table-hashes", default="1,2,4,8", show_default=True)
@click.option(
    "--table-backends",
    default="numba,numpy",
    show_default=True,
    help="backends of the table part; its ratio column divides by the first",
)
@click.option("--table-rounds", type=int, default=3, show_default=True)
@click.option("--dense-seqlens", default="2048,4096,8192,16384", show_default=True)
@click.option(
    "--dense-d",
    type=click.IntRange(min=1),
    default=D,
    show_default=True,
    help="head size of the dense part",
)
@click.option(
    "--dense-threads",
    default="1,2",
    show_default=True,
    help="thread counts of the dense part (each at most --threads)",
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="also write here")
@click.pass_context
def main(
    ctx,
    threads,
    wait_policy,
    parts,
    rounds,
    table_seqlens,
    table_hashes,
    table_backends,
    table_rounds,
    dense_seqlens,
    dense_d,
    dense_threads,
    out,
) -> None:
    """Measure the numba backend's performance bars; print markdown tables."""
    if ctx.invoked_subcommand is not None:
        return
    header = [
        f"## lshbench numba performance bars ({time.strftime('%Y-%m-%d %H:%M')})",
        f"threads: {', '.join(f'{v}={os.environ[v]}' for v in THREAD_VARS)}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
        f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')}; "
        "numba backend: "
        "BLAS at 1 thread inside its parallel loops; torch.set_num_threads"
        f"({threads}); CPU: {os.cpu_count()} logical; load average before: "
        f"{os.getloadavg()[0]:.2f}",
        "",
    ]
    body = []
    for part in parts:
        click.echo(f"part {part} ...", err=True)
        if part == "bars":
            body.append(part_bars(rounds))
        elif part == "memory":
            body.append(part_memory())
        elif part == "cache":
            body.append(part_cache())
        elif part == "variants":
            body.append(part_variants(rounds))
        elif part == "dense":
            threads_list = [int(x) for x in dense_threads.split(",")]
            if max(threads_list) > threads:
                raise click.BadParameter(
                    f"at most --threads ({threads}), got {dense_threads}",
                    param_hint="--dense-threads",
                )
            body.append(
                part_dense(
                    rounds, [int(x) for x in dense_seqlens.split(",")], threads_list, dense_d
                )
            )
        elif part == "table":
            body.append(
                part_table(
                    [int(x) for x in table_seqlens.split(",")],
                    [int(x) for x in table_hashes.split(",")],
                    table_backends.split(","),
                    table_rounds,
                )
            )
    text = "\n".join(header + body) + f"\nload average after: {os.getloadavg()[0]:.2f}\n"
    click.echo(text)
    if out:
        with open(out, "w") as fh:
            fh.write(text)


@main.command("mem-worker", hidden=True)
@click.argument("backend")
@click.argument("seqlen", type=int)
@click.argument("n_hashes", type=int)
@click.argument("n_buckets")
def mem_worker(backend: str, seqlen: int, n_hashes: int, n_buckets: str) -> None:
    """One untimed call in this fresh process: print tracemalloc and resident peaks (JSON)."""
    pin_torch()
    nb = json.loads(n_buckets)
    cfg = config(n_hashes, tuple(nb) if isinstance(nb, list) else nb)
    qk, v = inputs(seqlen)
    rot = lshbench.random_rotations(D, cfg, seed=0)
    obj = lshbench.get_backend(backend)
    obj.attend(qk, v, cfg, rot)  # compile / load caches, first-touch
    peak, _ = measure_memory(lambda: obj.attend(qk, v, cfg, rot))
    click.echo(
        json.dumps(
            {"alloc_peak_bytes": peak.alloc_peak_bytes, "rss_peak_bytes": peak.rss_peak_bytes}
        )
    )


if __name__ == "__main__":
    main()
