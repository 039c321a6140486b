"""Whether this machine has a CUDA device for the torch backends (docs/design.md section 9),
asked of a fresh interpreter so that the sweep process never imports torch.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys

from lshbench.util import one_line

__all__ = ["cuda_unavailable_reason", "gpu_facts"]

_PROBE = (
    "import json, torch\n"
    "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
    "print(json.dumps({'count': n, 'torch': torch.__version__, 'cuda': torch.version.cuda}))\n"
)


@functools.lru_cache(maxsize=1)
def cuda_unavailable_reason() -> str | None:
    """None when torch sees a CUDA device here; else the reason, one line (``no CUDA device
    here: torch 2.13.0+cpu built without CUDA``)."""
    if importlib.util.find_spec("torch") is None:
        return "no CUDA device here: torch is not installed (pip install 'lshbench[peers]')"
    try:
        res = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300
        )
        facts = json.loads(res.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return f"no CUDA device here: probing torch failed ({one_line(exc)})"
    if facts["count"] > 0:
        return None
    built = "built without CUDA" if facts["cuda"] is None else f"CUDA {facts['cuda']}, no device"
    return f"no CUDA device here: torch {facts['torch']} ({built})"


def gpu_facts(torch: object) -> dict[str, object]:
    """GPU name, driver and torch/CUDA versions, given the imported torch module (for the
    run's metadata; ``{}`` without a CUDA device)."""
    t: object = torch
    cuda = getattr(t, "cuda", None)
    if cuda is None or not cuda.is_available():
        return {}
    facts: dict[str, object] = {
        "gpu_name": cuda.get_device_name(0),
        "torch": getattr(t, "__version__", None),
        "cuda": getattr(getattr(t, "version", None), "cuda", None),
    }
    try:
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        facts["driver"] = res.stdout.strip().splitlines()[0] if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        facts["driver"] = None
    return facts
