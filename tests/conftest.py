import os
import sys
from pathlib import Path

import pytest

# make tests/golden.py importable as `golden` from every test module
sys.path.insert(0, str(Path(__file__).parent))

#: .ci/run sets this where every optional dependency (the `peers` extra) is installed: a
#: skipped test there means a check silently did not run, so the session fails.
NO_SKIPS = os.environ.get("LSHBENCH_NO_SKIPS") == "1"
_skipped: list[str] = []
_deselected_cuda: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if NO_SKIPS and report.skipped:
        _skipped.append(f"{report.nodeid}: {report.longrepr}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are deselected (not skipped) where torch sees no CUDA device: a
    machine without one cannot run them, which LSHBENCH_NO_SKIPS=1 does not count as a
    check that silently did not run; the summary names them."""
    cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda:
        return
    from lshbench.measurement.devices import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is None:
        return
    items[:] = [item for item in items if item.get_closest_marker("cuda") is None]
    config.hook.pytest_deselected(items=cuda)
    _deselected_cuda.extend(f"{item.nodeid} ({reason})" for item in cuda)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _deselected_cuda:
        terminalreporter.write_line(f"deselected, needs CUDA: {line}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped:
        print(f"\nLSHBENCH_NO_SKIPS=1 but {len(_skipped)} test(s) were skipped:", file=sys.stderr)
        for line in _skipped[:20]:
            print(f"  {line}", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="module")
def numba_backend():
    """The registry's numba backend, compiled for float32 and float64 (the numba test
    modules skip themselves where numba is not available)."""
    import numpy as np

    import lshbench

    backend = lshbench.get_backend("numba")
    backend.compile(np.float32)
    backend.compile(np.float64)
    return backend
