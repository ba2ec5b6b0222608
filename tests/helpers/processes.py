"""Waiting for what another process does, and the processes below one: from /proc, never a fixed sleep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    """``condition()``'s first truthy value, polled until ``timeout`` seconds have passed (then the test
    fails, saying what it waited for): for a marker another process writes, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def live_processes() -> dict[int, list[str]]:
    """Each live (not zombie) process's /proc stat fields after its name: state, ppid, pgrp, session, ..."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = fields
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc."""
    parent = {p: int(fields[1]) for p, fields in live_processes().items()}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
