"""What Linux's /proc says of a process or one of its threads (CPU time, memory), for the benchmarks that
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


def memory_kb(pid: int, field: str) -> float:
    """A /proc/<pid>/status memory figure in kB: "VmRSS" (resident now) or "VmHWM" (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def voluntary_switches(status: Path) -> int:
    """How often a process or thread gave up its CPU to wait (voluntary_ctxt_switches in a /proc `status`
    file): for a thread that shares the interpreter lock, mostly the times it waited for it or for work."""
    for line in status.read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise RuntimeError(f"{status} has no voluntary_ctxt_switches")
