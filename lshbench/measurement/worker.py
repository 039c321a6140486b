"""Entry point of the fresh worker process that measures one sweep cell.

Started by an executor as ``python -m lshbench.measurement.worker`` (a new interpreter,
never a fork: Numba's OpenMP layer is not fork-safe) with the thread variables of the
cell's ``threads`` already in its environment, so NumPy's BLAS and Numba read them at import.

Protocol: the first line of stdin is the cell spec (JSON)::

    {"tasks": [Task.as_dict(), ...], "repeats": 5, "backends": {name: BackendSpec.as_dict()}}

All tasks (:class:`lshbench.results.cells.Task`) share the
:data:`lshbench.results.cells.CELL_AXES`. The worker answers with JSON lines on
its original stdout (anything else printed goes to stderr):

* ``{"event": "phase", "phase": NAME, "ids": [task id, ...]}`` before each phase, naming the
  rows it can fail (each :class:`lshbench.results.cells.Task`'s id, the rows' ``cell_id``); an
  executor that sees no event for ``--timeout`` seconds kills the worker and records those
  rows as timeouts;
* ``{"event": "row", "row": {...}}`` for each finished row (see
  :func:`lshbench.results.schema.make_row`), stamped with this process's ``machine_id`` and
  ``code_id`` (:func:`provenance_ids`) and host name;
* ``{"event": "done", "env": {...}}`` at the end, with the BLAS pools and the Numba threading
  layer seen in this process, and what each backend says of itself (``"backends"``:
  :meth:`~lshbench.backends.base.Backend.describe` by name, e.g. numba's kernel choice).

The worker exits when stdin reaches end-of-file (its executor died), so an orphan never
keeps running.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lshbench.results.columns import TRACEMALLOC_BLIND, TRAIN_FLOPS_FACTOR
from lshbench.util import one_line, utc_now

if TYPE_CHECKING:
    from lshbench.measurement.phases import TimingSummary
    from lshbench.results.cells import Task
    from lshbench.results.schema import Row, RowValue

__all__ = ["THREAD_VARS", "main", "provenance_ids", "thread_env"]

#: thread-pool sizes set from the cell's ``threads`` before the worker imports anything
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


_PROVENANCE: dict[str, str] = {}


def provenance_ids() -> dict[str, str]:
    """``{"machine_id": ..., "code_id": ...}`` of this process
    (:func:`lshbench.measurement.machine.provenance`, computed once per process): the stamp
    of every row measured here, so a row says which machine and code measured it wherever
    the sweep that records it runs (a Dask worker on another machine stamps its own)."""
    if not _PROVENANCE:
        from lshbench.measurement.machine import provenance

        ids = provenance()
        _PROVENANCE.update(machine_id=ids["machine_id"], code_id=ids["code_id"])
    return dict(_PROVENANCE)


def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) with every thread variable set to ``threads``."""
    env = dict(os.environ if base is None else base)
    env.update(dict.fromkeys(THREAD_VARS, str(int(threads))))
    return env


class _Channel:
    """JSON lines to the executor over the original stdout file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            os._exit(3)  # the executor is gone

    def phase(self, name: str, tasks: list[Task]) -> None:
        self.send({"event": "phase", "phase": name, "ids": [t.id for t in tasks]})


def _watch_stdin() -> None:
    """Exit as soon as stdin closes: the executor died (or gave up on this worker)."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        os._exit(4)


def _input_knobs(cell: Task) -> dict[str, Any]:
    """Keywords of ``make_inputs`` for the cell: ``target_entropy``, ``value_corr`` and
    ``local_share`` when the cell has them (not None), and the cell's ``causal`` (a target
    entropy is met under the cell's masks)."""
    knobs: dict[str, Any] = {}
    if cell.target_entropy is not None:
        knobs["target_entropy"] = cell.target_entropy
    if cell.value_corr is not None:
        knobs["value_corr"] = cell.value_corr
    if cell.local_share is not None:
        knobs["local_share"] = cell.local_share
    knobs["causal"] = bool(cell.causal)
    return knobs


def _make_cell_inputs(cell: Task, dtype: Any) -> tuple[Any, Any, Any]:
    """qk (B, L, d), v (B, L, dv) and the separate keys k (B, L, d) or None of the cell, in
    ``dtype``: the file's first L positions for a file input (``input_path``; the cell's
    layer and head alone when it names them), else the seeded generator's (k None)."""
    if cell.input_path is not None:
        from lshbench.measurement.input_files import crop, load_input_file, select_head

        data = load_input_file(cell.input_path)
        if data.sha256 != cell.input_sha256:
            raise RuntimeError(
                f"{cell.input} changed since the sweep was planned (SHA-256 "
                f"{data.sha256[:12]}, planned {str(cell.input_sha256)[:12]})"
            )
        if cell.layer is not None and cell.head is not None:
            data = select_head(data, cell.layer, cell.head)  # (1, L, ...)
        data = crop(data, cell.seqlen)
        k = None if data.k is None else data.k.astype(dtype, copy=False)
        return data.qk.astype(dtype, copy=False), data.v.astype(dtype, copy=False), k
    from lshbench.measurement.inputs import make_inputs

    qk, v = make_inputs(
        cell.input, cell.batch, cell.seqlen, cell.d, cell.dv, cell.seed, dtype,
        **_input_knobs(cell),
    )  # fmt: skip
    return qk, v, None


def _task_accuracy(cell: Task, out: Any, v: Any) -> float | None:
    """``task_acc`` of an output: for the ``duplicate`` input, the share of queries whose
    output is nearest to their copy's value (docs/design.md section 6); None for other inputs."""
    if cell.input != "duplicate":
        return None
    from lshbench.measurement.tasks import duplicate_copy_index, task_accuracy

    return task_accuracy(out, v, duplicate_copy_index(cell.seqlen))


def _check_finite(out: Any) -> None:
    """Raise when an attention output holds NaN or Inf: its row is never ``ok`` (the input
    was finite, so a non-finite output is the backend's fault, never a measurement)."""
    import numpy as np

    bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise FloatingPointError(f"{bad} of {np.size(out)} output values are NaN or Inf")


def _status_of(exc: BaseException) -> str:
    return "oom" if isinstance(exc, MemoryError) else "error"


def _environment() -> dict[str, Any]:
    """What this process ran with: thread variables, BLAS pools, Numba threading."""
    from lshbench.measurement.phases import read_proc_status

    env: dict[str, Any] = {"thread_vars": {k: os.environ.get(k) for k in THREAD_VARS}}
    try:
        from threadpoolctl import threadpool_info

        env["threadpools"] = [
            {
                k: info.get(k)
                for k in (
                    "user_api",
                    "internal_api",
                    "num_threads",
                    "version",
                    "filepath",
                    "threading_layer",
                    "architecture",
                )
            }
            for info in threadpool_info()
        ]
    except Exception as exc:  # threadpoolctl missing or failing: record why
        env["threadpools"] = f"unavailable: {one_line(exc)}"
    numba = sys.modules.get("numba")
    if numba is not None:
        env["numba_num_threads"] = numba.config.NUMBA_NUM_THREADS
        try:
            env["numba_threading_layer"] = numba.threading_layer()
        except ValueError:
            env["numba_threading_layer"] = "not initialized (no parallel function ran)"
    env["vm_hwm_bytes"] = read_proc_status("VmHWM").get("VmHWM")
    torch = sys.modules.get("torch")
    if torch is not None:  # a torch backend ran here: its versions, the GPU when present
        from lshbench.measurement.devices import gpu_facts

        env["torch"] = {"torch": torch.__version__, "cuda": torch.version.cuda, **gpu_facts(torch)}
    return env


class _CellRunner:
    """Runs the tasks of one cell: input, reference, then each group of backends."""

    def __init__(self, spec: dict[str, Any], channel: _Channel) -> None:
        import numpy as np

        from lshbench.backends import register_backend
        from lshbench.results.cells import Task

        self.spec = spec
        self.channel = channel
        self.tasks = [Task.from_dict(t) for t in spec["tasks"]]
        self.repeats = int(spec["repeats"])
        self.cell = self.tasks[0]  # every task has the cell's axes and input file
        #: the torch dtype name of the cell; numpy inputs of half-precision cells are float32
        self.torch_dtype = self.cell.dtype
        half = self.torch_dtype in ("bfloat16", "float16")
        self.dtype = np.dtype(np.float32 if half else self.cell.dtype)
        self.train = self.cell.pass_ == "train"
        self.device = self.cell.device
        #: forward on the CPU in float32/64 runs Backend.attend; everything else a torch step
        self.torch_steps = self.train or self.device != "cpu" or half
        for entry in spec.get("backends", {}).values():
            register_backend(**entry)
        self.host = socket.gethostname()
        self.ids = provenance_ids()
        self.backends: dict[str, Any] = {}
        self.compile_s: dict[str, float] = {}
        self.described: dict[str, dict[str, Any]] = {}  # Backend.describe() by name

    def row(self, task: Task, status: str, message: str = "", **values: RowValue) -> None:
        from lshbench.results.store import make_row

        stamp = utc_now()
        row = make_row(
            task, status, message, host=self.host, finished_at=stamp, **self.ids, **values
        )
        self.channel.send({"event": "row", "row": row})

    def fail_all(self, tasks: list[Task], exc: BaseException, where: str) -> None:
        for task in tasks:
            self.row(task, _status_of(exc), f"{where}: {one_line(exc)}")

    def run(self) -> None:
        from lshbench.measurement.metrics import dense_reference

        c = self.cell
        if self.device == "cuda":  # the sweep skips these rows already where it runs
            from lshbench.measurement.devices import cuda_unavailable_reason

            no_cuda = cuda_unavailable_reason()
            if no_cuda is not None:
                for task in self.tasks:
                    self.row(task, "skipped", no_cuda)
                return
        self.channel.phase("input", self.tasks)
        try:
            self.qk, self.v, self.k = _make_cell_inputs(c, self.dtype)
            self.channel.phase("reference", self.tasks)
            self.ref = dense_reference(self.qk, self.v, bool(c.causal), k=self.k)
            if self.train:
                from lshbench.core.dense import dense_attention_grads
                from lshbench.measurement.torch_passes import train_g

                self.g = train_g(self.v.shape, c.seed)  # (B, L, dv)
                self.ref_grads = dense_attention_grads(self.qk, self.v, self.g, bool(c.causal))
        except Exception as exc:  # MemoryError included: it becomes an oom row
            self.fail_all(self.tasks, exc, "input or dense reference")
            return
        oracle = [task for task in self.tasks if task.is_oracle]  # no backend to load
        remaining = self.load_backends([t for t in self.tasks if not t.is_oracle]) + oracle
        # Everything imported so far lives as long as the process: move it out of the
        # collector's reach so each gc.collect() of the measurement phases stays cheap.
        gc.collect()
        gc.freeze()
        groups: dict[str, list[Task]] = {}
        for task in remaining:  # the oracle's budgets share one configuration's windows
            key = task.replace(oracle_k=None).group_key if task.is_oracle else task.group_key
            groups.setdefault(key, []).append(task)
        for tasks in groups.values():
            self.channel.phase("measure", tasks)
            try:
                if tasks[0].is_oracle:
                    self.run_oracle(tasks)
                else:
                    self.run_group(tasks)
            except Exception as exc:  # anything not caught per backend
                self.fail_all(tasks, exc, "measure")

    def load_backends(self, tasks: list[Task]) -> list[Task]:
        """Import and compile the backend of every task once; tasks of failing backends
        become rows."""
        from lshbench.backends import BackendUnavailable, get_backend

        remaining = []
        by_name: dict[str, list[Task]] = {}
        for task in tasks:
            by_name.setdefault(task.backend, []).append(task)
        for name, tasks in by_name.items():
            self.channel.phase("compile", tasks)
            try:
                backend = get_backend(name)
                self.compile_s[name] = float(backend.compile(self.dtype))
            except BackendUnavailable as exc:
                for task in tasks:
                    self.row(task, "skipped", str(exc))
                continue
            except Exception as exc:
                self.fail_all(tasks, exc, "import or compile")
                continue
            self.backends[name] = backend
            self.described[name] = backend.describe()
            remaining.extend(tasks)
        return remaining

    def run_group(self, tasks: list[Task]) -> None:
        """Measure the backends of one configuration: first call, warm-up, interleaved timing,
        memory, accuracy."""
        from lshbench.core.hashing import pipeline_buckets, random_rotations
        from lshbench.measurement.metrics import (
            exact_windows,
            gradient_errors,
            output_errors,
            window_metrics,
        )
        from lshbench.measurement.phases import measure_memory, summarize, time_interleaved
        from lshbench.results.cells import rotation_seed

        c = self.cell
        config = tasks[0].config()
        hashing = tasks[0].uses_hashing
        rotations = None
        if hashing:
            seed = rotation_seed(c.seed, tasks[0].rotation_seed)  # the group's draw
            rotations = random_rotations(c.d, config, seed, self.dtype)
        calls, outputs, first_s, number = self.first_calls(tasks, config, rotations)
        live = [task for task in tasks if task.backend in calls]
        if not live:
            return
        self.channel.phase("timing", live)
        memory = {}
        if self.device == "cuda":
            from lshbench.measurement.phases import MemoryPeak
            from lshbench.measurement.torch_passes import cuda_memory, time_cuda

            samples = time_cuda(calls, self.repeats, number)
            for task in live:
                self.channel.phase("memory", [task])
                memory[task.backend] = MemoryPeak(cuda_memory(calls[task.backend]), None)
        else:
            samples = time_interleaved(calls, self.repeats, number)
            for task in live:
                self.channel.phase("memory", [task])
                memory[task.backend], _ = measure_memory(calls[task.backend])
        self.channel.phase("accuracy", live)
        windows = exact_windows(c.seqlen)  # exact attention: every key, once
        if hashing:
            assert rotations is not None  # drawn for every hashing group
            buckets = pipeline_buckets(self.qk, rotations, config)  # (B, rounds, L)
            key_buckets = None if self.k is None else pipeline_buckets(self.k, rotations, config)
            windows = window_metrics(
                self.qk, buckets, config, self.ref, k=self.k, key_buckets=key_buckets
            )
            del buckets, key_buckets
        for task in live:
            name = task.backend
            timing = summarize(samples[name])
            flops, cost = self.cost_values(task, config, memory[name])
            values: Row = {
                **self.timing_values(name, timing, first_s[name], number[name]),
                **cost,
                "attn_entropy": self.ref.attn_entropy,
                "task_acc": _task_accuracy(c, outputs[name].out, self.v),
            }
            median = timing.time_median_s
            values["gflops"] = flops / median / 1e9
            values["tokens_per_s"] = c.batch * c.seqlen / median
            backend = self.backends[name]
            values["kernel"] = self.described[name].get("kernel")
            notes = []
            if backend.spec.exact:
                values.update(windows._asdict())
                values.update(output_errors(outputs[name].out, self.ref)._asdict())
                if self.train:
                    d_qk, d_v = outputs[name].d_qk, outputs[name].d_v
                    values.update(gradient_errors(d_qk, d_v, *self.ref_grads)._asdict())
            else:
                notes.append(
                    f"no error metrics: {name} does not compute the reference attention of "
                    f"docs/design.md section 2 ({backend.description})"
                )
            if self.device == "cuda":
                notes.append("memory: torch.cuda.max_memory_allocated (mem_alloc_peak_bytes)")
            elif not backend.spec.tracemalloc_sees:
                values["mem_alloc_peak_bytes"] = None  # the NumPy conversions', not its own
                notes.append(f"{name}'s {TRACEMALLOC_BLIND}: read mem_rss_peak_bytes")
            if self.device != "cuda" and memory[name].rss_peak_bytes is None:
                notes.append("resident peak unavailable (/proc/self/clear_refs not writable)")
            self.row(task, "ok", "; ".join(notes), **values)

    def run_oracle(self, tasks: list[Task]) -> None:
        """The oracle rows of one LSH configuration (docs/design.md section 2b): k is the
        configuration's mean distinct keys per query, rounded (``oracle_k`` distinct), or its
        window slots per query (slots), from the windows of the LSH rows' own rotations;
        metrics only, no backend call and no time."""
        from lshbench.core.hashing import pipeline_buckets, random_rotations
        from lshbench.measurement.metrics import oracle_metrics, window_metrics
        from lshbench.results.cells import rotation_seed

        c = self.cell
        config = tasks[0].config()  # the LSH configuration (method lsh, count-once)
        self.channel.phase("accuracy", tasks)
        seed = rotation_seed(c.seed, tasks[0].rotation_seed)  # the LSH rows' draw
        rotations = random_rotations(c.d, config, seed, self.dtype)
        buckets = pipeline_buckets(self.qk, rotations, config)  # (B, rounds, L)
        key_buckets = None if self.k is None else pipeline_buckets(self.k, rotations, config)
        lsh = window_metrics(self.qk, buckets, config, self.ref, k=self.k, key_buckets=key_buckets)
        del buckets, key_buckets
        budgets = {"distinct": round(lsh.keys_distinct), "slots": lsh.keys_slots}
        ks = [budgets[str(task.oracle_k)] for task in tasks]
        found = oracle_metrics(self.qk, ks, bool(c.causal), self.ref, k=self.k)
        for task, kk, metrics in zip(tasks, ks, found, strict=True):
            what = (
                f"the LSH windows' mean distinct keys per query, {lsh.keys_distinct:.1f}, rounded"
                if task.oracle_k == "distinct"
                else "the LSH windows' slots per query"
            )
            note = (
                f"not a method you can run (it needs the exact scores): each query's {kk} "
                f"best keys, k = {what}; no time"
            )
            values: Row = {**metrics._asdict(), "attn_entropy": self.ref.attn_entropy}
            self.row(task, "ok", note, **values)

    def first_calls(
        self, tasks: list[Task], config: Any, rotations: Any
    ) -> tuple[dict[str, Callable[[], Any]], dict[str, Any], dict[str, float], dict[str, int]]:
        """First call and warm-up of each task's backend; a failing one becomes its row.

        Returns, by backend name, for those that ran: the call, its first output, the first
        call's seconds and the calls per timing sample."""
        from lshbench.measurement.phases import calibrate_number, first_call, warm_up

        calls: dict[str, Callable[[], Any]] = {}
        outputs: dict[str, Any] = {}
        first_s: dict[str, float] = {}
        number: dict[str, int] = {}

        for task in tasks:
            name = task.backend
            backend = self.backends[name]
            self.channel.phase("first call and warm-up", [task])
            try:
                call, result = self.make_call(backend, config, rotations)
                first_s[name], first = first_call(call)
                outputs[name] = result(first)
                _check_finite(outputs[name].out)
                number[name] = calibrate_number(min(warm_up(call)))
            except Exception as exc:
                self.row(task, _status_of(exc), f"first call: {one_line(exc)}")
                continue
            calls[name] = call
        return calls, outputs, first_s, number

    def make_call(
        self, backend: Any, config: Any, rotations: Any
    ) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        """``(call, result)``: the timed call of ``backend`` in this cell and what turns its
        return value into a :class:`~lshbench.measurement.torch_passes.StepResult`."""
        from lshbench.measurement.torch_passes import StepResult, make_step

        if not self.torch_steps:

            def call() -> Any:
                return backend.attend(self.qk, self.v, config, rotations, k=self.k)

            return call, lambda out: StepResult(out, None, None)
        return make_step(
            backend, self.qk, self.v, config, rotations, device=self.device,
            dtype=self.torch_dtype, g=self.g if self.train else None,
        )  # fmt: skip

    def timing_values(self, name: str, timing: TimingSummary, first_s: float, number: int) -> Row:
        """The timing columns of a row: compile, first call, the samples' statistics."""
        return {
            "compile_s": self.compile_s[name] + first_s,
            "first_call_s": first_s,
            "time_median_s": timing.time_median_s,
            "time_iqr_s": timing.time_iqr_s,
            "time_min_s": timing.time_min_s,
            "time_mean_s": timing.time_mean_s,
            "n_samples": timing.n_samples,
            "number": number,
            "time_samples_s": timing.samples,
            "unstable": timing.unstable,
        }

    def cost_values(self, task: Task, config: Any, memory: Any) -> tuple[int, Row]:
        """The FLOPs of one call, and the memory and FLOP columns of a row; ``config`` is the
        cell's (an exact backend's FLOPs ignore it; its memory model reads ``qk``)."""
        from lshbench.measurement.cost_model import attention_flops, memory_model

        c = self.cell
        facts = self.backends[task.backend].spec
        B, L, d, dv = c.batch, c.seqlen, c.d, c.dv
        flops = attention_flops(facts.uses_hashing, B, L, d, dv, config)
        if self.train:
            flops *= TRAIN_FLOPS_FACTOR  # the backward pass: twice the forward's products
        model = memory_model(
            facts.memory_model, B, L, d, dv, self.dtype.itemsize, config, c.threads
        )
        return flops, {
            "mem_alloc_peak_bytes": memory.alloc_peak_bytes,
            "mem_rss_peak_bytes": memory.rss_peak_bytes,
            "mem_model_bytes": model,
            "flops": flops,
        }


def main() -> None:
    """Read the cell spec from stdin, run it, stream JSON lines to the original stdout."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed by backends goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    line = sys.stdin.buffer.readline()
    if not line:
        return
    spec = json.loads(line)
    threading.Thread(target=_watch_stdin, name="lshbench-stdin-watch", daemon=True).start()
    channel = _Channel(proto_fd)
    try:
        runner = _CellRunner(spec, channel)
        runner.run()
    except BaseException:
        traceback.print_exc()
        channel.send({"event": "done", "env": {}})
        sys.stderr.flush()
        os._exit(1)  # not a normal shutdown: the stdin watcher thread holds stdin's lock
    channel.send({"event": "done", "env": {**_environment(), "backends": runner.described}})


if __name__ == "__main__":
    main()
