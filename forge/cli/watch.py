"""What the loop's terminal says while a stage runs and when the command ends.

The loop prints one line per stage, when the stage is over; a stage takes minutes. While one runs,
:class:`StageLines` prints that it started and then, every ``every`` seconds, how far it got (the
progress the stage publishes for the panel: deals solved, shards tokenized, training step, ...).
When the command ends, :func:`next_steps` says where to look: ``status``, the archive index, and
JupyterLab with the live panel.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge.commandline import FLYWHEEL
from forge.flywheel.paths import NOTEBOOKS, Workspace
from forge.flywheel.status import running_stage
from forge.ui.text import duration, progress_text

#: Seconds between two progress lines of one stage.
EVERY = 30.0


def _latest_progress(ws: Workspace, since: float) -> dict[str, Any] | None:
    """The progress file most recently written by a stage that started after ``since``."""
    import json

    newest: tuple[float, Path] | None = None
    for path in (ws.root / "runs").glob("iter-*/progress.json"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime >= since and (newest is None or mtime > newest[0]):
            newest = (mtime, path)
    if newest is None:
        return None
    try:
        data = json.loads(newest[1].read_text())
    except (OSError, ValueError):  # mid-rename: the next poll reads it
        return None
    return data if isinstance(data, dict) else None


class StageLines:
    """A thread printing a line when a stage starts and its progress every ``every`` seconds."""

    def __init__(self, root: str | Path, say: Callable[[str], None], every: float = EVERY, poll: float = 1.0):
        self.ws = Workspace.at(root)
        self.say, self.every, self.poll = say, every, poll
        self._stop = threading.Event()
        self._since = time.time()
        self._thread = threading.Thread(target=self._watch, name="forge-stage-lines", daemon=True)

    def __enter__(self) -> StageLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        seen: tuple[Any, Any] | None = None
        last = 0.0
        while not self._stop.wait(self.poll):
            run = _latest_progress(self.ws, self._since)
            if not run or run.get("finished_at") is not None:
                continue
            key = (run.get("stage"), run.get("started"))
            now = time.monotonic()
            if key != seen:
                seen, last = key, now
                self.say(f"  {run.get('stage', '?'):9s} started (progress every {self.every:.0f} s)")
            elif now - last >= self.every:
                last = now
                elapsed = time.time() - run["started"] if isinstance(run.get("started"), (int, float)) else None
                text = progress_text(running_stage(run, active=True))
                self.say(f"  {run.get('stage', '?'):9s} {duration(elapsed)} in: {text}")


def next_steps(root: str | Path) -> str:
    """Where to look once the command ends: the status, the archive index, the live panel."""
    ws = Workspace.at(root)
    where = "" if ws.root == Path.cwd().resolve() else f" --root {ws.root}"
    jupyter = Path(sys.executable).parent / "jupyter"
    lines = ["look at:", f"  {FLYWHEEL} status{where}   where the flywheel stands, and every iteration"]
    index = ws.root / "archive" / "index.html"
    if index.is_file():
        lines.append(f"  {index}   every iteration's metrics and notebooks; compare any two (open in a browser)")
    lab = f"{jupyter} lab --config=jupyter_server_config.py --notebook-dir=. notebooks/00_status.ipynb"
    if ws.root == NOTEBOOKS.parent:
        lines.append(f"  cd {ws.root} && {lab}   the live panel, with Start / Stop / Retry")
    else:
        lines.append(f"  cd {NOTEBOOKS.parent} && {lab}   the live panel (set root = \"{ws.root}\" in its first "
                     "cell), with Start / Stop / Retry")
    return "\n".join(lines)
