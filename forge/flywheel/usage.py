"""CPU seconds and peak memory of a stage: the loop's process and every process below it (its kernel,
the kernel's workers), read from /proc, so whatever runs the stage is counted.

CPU: each process's user + system time, with that of its children it has reaped (/proc/PID/stat),
summed over the tree at the stage's start and end; the difference is the stage's (a process that
ended during the stage is in its parent's reaped time). Peak memory: each process's high-water
resident set (VmHWM), reset at the stage's start (/proc/PID/clear_refs), the largest of the tree
at its end: the biggest single process, not the sum. Where /proc is missing (not Linux) nothing is
recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The keys a stage's usage is recorded under (Current.usage / HistoryEntry.usage[stage]).
CPU = "cpu_s"
PEAK_RSS = "peak_rss_mb"
_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    parent = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parent[int(entry.name)] = int(fields[1])
    found, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return sorted(found)


def cpu_seconds(pids: list[int]) -> float:
    """User + system seconds of ``pids`` and of the children each has reaped."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:  # after ") ": state ppid ... utime(12) stime(13) cutime(14) cstime(15)
            total += sum(int(f) for f in fields[11:15])
    return total / _TICKS


def _reset_peak(pid: int) -> None:
    try:
        (_PROC / str(pid) / "clear_refs").write_text("5")  # 5: reset the peak resident set to the current
    except OSError:
        pass  # not permitted (another user's process): its peak is then over its lifetime


def peak_rss_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in (_PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))  # kB
        except (OSError, ValueError, IndexError):
            continue
    return peak / 1024


@dataclass
class Meter:
    """A stage's usage since :meth:`start`."""

    root: int
    cpu0: float

    @classmethod
    def start(cls, root: int | None = None) -> Meter | None:
        if not _PROC.is_dir():
            return None
        root = os.getpid() if root is None else root
        pids = tree(root)
        for pid in pids:
            _reset_peak(pid)
        return cls(root, cpu_seconds(pids))

    def read(self) -> dict[str, float]:
        pids = tree(self.root)
        return {CPU: round(max(0.0, cpu_seconds(pids) - self.cpu0), 2), PEAK_RSS: round(peak_rss_mb(pids), 1)}


def add(usage: dict[str, dict[str, float]], stage: str, used: dict[str, float]) -> None:
    """Fold an attempt's usage into the stage's: CPU seconds summed over its attempts, the peak the largest."""
    had: dict[str, Any] = usage.setdefault(stage, {})
    had[CPU] = round(had.get(CPU, 0.0) + used[CPU], 2)
    had[PEAK_RSS] = max(had.get(PEAK_RSS, 0.0), used[PEAK_RSS])


def describe(usage: dict[str, dict[str, float]], timings: dict[str, float] | None = None) -> str:
    """One line per the stages measured: wall seconds (where timed), CPU seconds, peak memory."""
    parts = []
    for stage, used in usage.items():
        wall = (timings or {}).get(stage)
        took = f"{wall:.1f} s, " if wall is not None else ""
        parts.append(f"{stage} {took}{used.get(CPU, 0.0):.1f} s CPU, {used.get(PEAK_RSS, 0.0):.0f} MB peak")
    return "; ".join(parts)
