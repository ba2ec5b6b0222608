"""Where a running stage is, published for the panel: ``runs/iter-NNNN/progress.json``.

Every stage writes it, whether the loop runs it or a person steps through its notebook, so the
panel shows both: the stage, who runs it (pid, loop or by hand), since when, its phase and
done/total (deals solved, shards tokenized, steps trained, ...), and a free-form detail (loss,
ETA). Writes are atomic and throttled; a stage that ends records whether it succeeded.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Literal

from forge.atomic import atomic_write_text
from forge.flywheel.paths import Workspace
from forge.flywheel.state import now

#: Environment variable the loop sets for its kernels, so a stage knows who runs it.
LOOP_ENV = "FORGE_LOOP"
#: Where JupyterLab (jupyter_server) tells a kernel the path of its notebook.
SESSION_ENV = "JPY_SESSION_NAME"
MIN_INTERVAL_S = 0.5


def ran_by() -> Literal["loop", "hand"]:
    """Who runs a stage in this process: the loop's kernel, or a person (a notebook, a script)."""
    return "loop" if os.environ.get(LOOP_ENV) else "hand"


def ran_in() -> str | None:
    """The notebook a stage run by hand runs in, where the kernel knows it (JupyterLab says; papermill
    and plain scripts do not): what the loop archives for it (:mod:`forge.flywheel.by_hand`)."""
    session = os.environ.get(SESSION_ENV) or ""
    return str(Path(session).resolve()) if ran_by() == "hand" and session.endswith(".ipynb") else None


class StageProgress:
    """Context manager a stage reports through; :meth:`update` is cheap to call often."""

    def __init__(self, ws: Workspace, iteration: int, stage: str):
        self.path = ws.progress(iteration)
        self.data: dict[str, Any] = {
            "iteration": iteration, "stage": stage, "by": ran_by(),
            "pid": os.getpid(), "host": socket.gethostname(), "started_at": now(), "started": time.time(),
            "phase": None, "done": None, "total": None, "detail": None, "finished_at": None, "ok": None,
        }
        self._last = 0.0

    def __enter__(self) -> StageProgress:
        self._write()
        return self

    def update(self, phase: str | None = None, done: int | None = None, total: int | None = None,
               detail: str | None = None, force: bool = False) -> None:
        for key, value in (("phase", phase), ("done", done), ("total", total), ("detail", detail)):
            if value is not None:
                self.data[key] = value
        if force or time.monotonic() - self._last >= MIN_INTERVAL_S:
            try:
                self._write()
            except OSError:
                self._last = time.monotonic()  # a display file: its failure must never fail the stage

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.data.update(finished_at=now(), ok=exc_type is None)
        try:
            self._write()
        except OSError:
            pass  # a full disk must not hide the stage's own error

    def _write(self) -> None:
        self.data["updated_at"] = now()
        self.data["elapsed_s"] = round(time.time() - self.data["started"], 1)
        atomic_write_text(self.path, json.dumps(self.data), fsync=False)
        self._last = time.monotonic()


def read_progress(ws: Workspace, iteration: int) -> dict[str, Any] | None:
    """The iteration's last published progress, or None (never written, or unreadable mid-rename)."""
    try:
        data = json.loads(Path(ws.progress(iteration)).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
