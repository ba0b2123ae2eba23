"""What Linux's /proc says of a process or one of its threads (CPU time, memory, waits), for the benchmarks that
measure another process, or one thread of their own."""

from __future__ import annotations

import os
from pathlib import Path


def stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU time from a /proc `stat` file (fields 14 and 15; the name in parentheses may hold spaces)."""
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system, all its threads)."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def status_field(status: Path, field: str) -> float:
    """The number after `field:` in a /proc `status` file (of a process or of one of its threads)."""
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    raise RuntimeError(f"{status} has no {field}")


def memory_kb(pid: int, field: str) -> float:
    """A process's memory figure in kB: "VmRSS" (resident now) or "VmHWM" (its peak)."""
    return status_field(Path(f"/proc/{pid}/status"), field)


def voluntary_switches(status: Path) -> float:
    """How often a process or thread gave up its CPU to wait (voluntary_ctxt_switches in a /proc `status`
    file): for a thread that shares the interpreter lock, mostly the times it waited for it or for work."""
    return status_field(status, "voluntary_ctxt_switches")
