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


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if NO_SKIPS and report.skipped:
        _skipped.append(f"{report.nodeid}: {report.longrepr}")


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
