"""One forward or training step of a torch backend on a device, and its timing and memory
there (docs/design.md section 9).

A **train** step is the forward pass and the backward pass of ``sum(out * g)`` for a fixed
random ``g``: ``torch.autograd.grad`` gives ``d/d qk`` and ``d/d v`` (fresh each call, never
accumulated). On CUDA a step's time comes from CUDA events recorded around the timed calls
after a synchronization, and its memory is ``torch.cuda.max_memory_allocated`` above the
allocation before the call, the peak statistics reset per call. On the CPU the sweep's own
timer and memory probes (:mod:`lshbench.measurement.phases`) are used.

``bfloat16`` and ``float16`` inputs are the float32 inputs cast on the device; their outputs and
gradients are compared with the float32 inputs' exact reference.

torch is imported by name when a step is built (:func:`_torch`), as the registry imports a
backend: these functions run in a cell's worker process, and the sweep process, which imports
the worker module for its helpers, never imports torch.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from lshbench.core.config import LSHConfig

__all__ = ["StepResult", "cuda_memory", "make_step", "time_cuda", "train_g"]


def _torch() -> Any:
    """The torch module, imported on first use (see the module docstring)."""
    return importlib.import_module("torch")


class StepResult(NamedTuple):
    """What a step returns, as numpy float64 (gradients None for a forward step)."""

    out: np.ndarray  # (B, L, dv)
    d_qk: np.ndarray | None  # (B, L, d)
    d_v: np.ndarray | None  # (B, L, dv)


def train_g(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The fixed random ``g`` (float64, standard normal) of ``sum(out * g)``, from the cell's
    seed (its own stream, independent of the input's)."""
    return np.random.default_rng([int(seed), 2]).standard_normal(shape)


def make_step(
    backend: Any,
    qk: np.ndarray,
    v: np.ndarray,
    config: LSHConfig,
    rotations: np.ndarray | None,
    *,
    device: str,
    dtype: str,
    g: np.ndarray | None,
) -> tuple[Callable[[], Any], Callable[[Any], StepResult]]:
    """``(step, result)``: ``step()`` runs one forward (``g`` None) or train step of
    ``backend.forward_torch`` on the device and returns torch tensors; ``result`` turns them
    into a :class:`StepResult`. qk (B, L, d), v (B, L, dv), g (B, L, dv) numpy, moved to
    ``device`` in ``dtype`` once, here."""
    torch = _torch()

    dev = torch.device(device)
    tdtype = getattr(torch, dtype)
    q_t = torch.from_numpy(np.ascontiguousarray(qk)).to(dev, tdtype)  # (B, L, d)
    v_t = torch.from_numpy(np.ascontiguousarray(v)).to(dev, tdtype)  # (B, L, dv)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    if g is None:

        def step() -> Any:
            with torch.no_grad():
                out = backend.forward_torch(q_t, v_t, config, rotations)
            sync()
            return out, None, None

    else:
        g_t = torch.from_numpy(np.ascontiguousarray(g)).to(dev, tdtype)  # (B, L, dv)

        def step() -> Any:
            a = q_t.detach().requires_grad_(True)
            b = v_t.detach().requires_grad_(True)
            out = backend.forward_torch(a, b, config, rotations)
            d_qk, d_v = torch.autograd.grad((out * g_t).sum(), (a, b))
            sync()
            return out.detach(), d_qk, d_v

    def result(values: Any) -> StepResult:
        def host(x: Any) -> np.ndarray | None:
            return None if x is None else x.detach().to("cpu", torch.float64).numpy()

        out, d_qk, d_v = (host(x) for x in values)
        assert out is not None
        return StepResult(out, d_qk, d_v)

    return step, result


def time_cuda(
    calls: dict[str, Callable[[], Any]], repeats: int, number: dict[str, int]
) -> dict[str, list[float]]:
    """Like :func:`lshbench.measurement.phases.time_interleaved`, timed by CUDA events: per
    sample, a synchronization, an event, ``number`` calls, an event, a synchronization; the
    elapsed time between the events per call, in seconds."""
    torch = _torch()

    samples: dict[str, list[float]] = {name: [] for name in calls}
    gc.collect()
    for _ in range(repeats):
        for name, call in calls.items():
            n = number.get(name, 1)
            start = torch.cuda.Event(enable_timing=True)
            stop = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(n):
                call()
            stop.record()
            torch.cuda.synchronize()
            samples[name].append(start.elapsed_time(stop) / 1e3 / n)
    return samples


def cuda_memory(call: Callable[[], Any]) -> int:
    """Peak bytes ``torch.cuda.max_memory_allocated`` above the allocation before ``call``,
    the peak reset first; the call's result is held until the peak is read."""
    torch = _torch()

    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del result
    return max(0, int(peak - base))
