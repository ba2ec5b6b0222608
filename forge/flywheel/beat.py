"""The loop's heartbeat: ``.flywheel.heartbeat``, a few hundred bytes rewritten every few seconds.

Why not state.yaml: rewriting the whole state (validated, backed up, fsynced) every few seconds
cost more the longer the flywheel ran. This file says which process beats, for which iteration,
and which stage it runs since when (so the seconds of a stage a kill cut short can still be counted:
:func:`forge.flywheel.timekeeping.fold_crash`). Written atomically without fsync: a lost beat after
a power cut only makes the loop look older, which is what it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text
from forge.flywheel.paths import Workspace


def path(root: str | os.PathLike) -> Path:
    return Workspace(Path(root)).heartbeat


def write(root: str | os.PathLike, data: dict[str, Any]) -> None:
    atomic_write_text(path(root), json.dumps(data), fsync=False)


def read(root: str | os.PathLike) -> dict[str, Any] | None:
    """The last beat, or None (none yet, or unreadable)."""
    try:
        data = json.loads(path(root).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear(root: str | os.PathLike) -> None:
    path(root).unlink(missing_ok=True)


def overlay(root: str | os.PathLike, current: Any) -> None:
    """Show the latest beat of the loop that runs ``current`` as its ``heartbeat`` (in memory only)."""
    if current is None:
        return
    data = read(root)
    if not data or data.get("pid") != current.pid or data.get("iteration") != current.iteration:
        return
    at = data.get("at")
    if isinstance(at, str) and (current.heartbeat is None or at > current.heartbeat):
        current.__dict__["heartbeat"] = at
