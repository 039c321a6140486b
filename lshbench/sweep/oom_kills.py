"""Did the kernel's OOM killer act? Counters read before and after a worker runs.

A worker that dies by SIGKILL the executor did not send was killed either by the kernel's
OOM killer or by someone else (a user, a job scheduler, a container runtime). Only the
kernel's counters tell them apart; the executor reads every one readable here before a
worker starts and again after it died:

* ``/proc/vmstat`` ``oom_kill``: every OOM kill on this machine, global or in any memory
  cgroup (Linux >= 4.13);
* cgroup v2 ``memory.events`` ``oom_kill`` of this process's cgroup (hierarchical: its
  children included), where the cgroup file system is visible;
* cgroup v1 ``memory.oom_control`` ``oom_kill`` of this process's memory cgroup.

A counter that rose while the worker ran means an OOM kill happened meanwhile, most likely
of the worker; none readable (not Linux, no ``/proc``) means the cause is unknown.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["oom_kill_counts", "oom_killed_since"]


def _counter(path: Path, key: str = "oom_kill") -> int | None:
    """The value of the ``key value`` line of a kernel counter file (None: unreadable)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def _cgroup_files(proc: Path, cgroup_root: Path) -> dict[str, Path]:
    """The OOM counter files of this process's cgroups (v2 and v1), by source name."""
    files = {"cgroup2": cgroup_root / "memory.events"}
    v1 = cgroup_root / "memory"
    files["cgroup1"] = v1 / "memory.oom_control"
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return files
    for line in lines:
        _, controllers, relative = [*line.split(":", 2), "", ""][:3]
        relative = relative.strip().lstrip("/")
        if controllers == "" and relative:  # v2: "0::/path"
            candidate = cgroup_root / relative / "memory.events"
            if candidate.exists():
                files["cgroup2"] = candidate
        elif "memory" in controllers.split(",") and relative:  # v1: "4:memory:/path"
            candidate = v1 / relative / "memory.oom_control"
            if candidate.exists():
                files["cgroup1"] = candidate
    return files


def oom_kill_counts(
    proc: str | Path = "/proc", cgroup_root: str | Path = "/sys/fs/cgroup"
) -> dict[str, int]:
    """Every OOM-kill counter readable here, by source (``vmstat``, ``cgroup2``,
    ``cgroup1``); {} where none is."""
    proc, cgroup_root = Path(proc), Path(cgroup_root)
    files = {"vmstat": proc / "vmstat", **_cgroup_files(proc, cgroup_root)}
    counts = {}
    for source, path in files.items():
        value = _counter(path)
        if value is not None:
            counts[source] = value
    return counts


def oom_killed_since(before: dict[str, int], after: dict[str, int] | None = None) -> bool:
    """Whether any counter of ``before`` rose by ``after`` (default: read now)."""
    after = oom_kill_counts() if after is None else after
    return any(after.get(source, value) > value for source, value in before.items())
