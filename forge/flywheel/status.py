"""A snapshot of the workspace for humans: what the ``status`` command, the panels and the archive index show.

Everything a view shows comes from :func:`snapshot` as plain data (also ``status --json``), so
the text status, the live panel and the archive page cannot disagree; how each shows it is
:mod:`forge.ui` (text: :mod:`forge.ui.text`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from forge.commandline import FLYWHEEL
from forge.flywheel.context import context
from forge.flywheel.lock import heartbeat_age, liveness, pid_alive
from forge.flywheel.paths import Workspace
from forge.flywheel.progress import read_progress
from forge.flywheel.records import PRIMARY_METRIC, metric_label
from forge.flywheel.retention import disk_rate, read_disk_log, tree_size
from forge.flywheel.stages import REGISTRY, iteration_status
from forge.flywheel.state import State, load_state

LOG_TAIL_LINES = 8
#: The history rows a view shows at first: the newest ones (the history file holds the rest; reading
#: all of it would cost a view more the longer the flywheel runs).
HISTORY_PAGE = 50


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open(errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines) if line.strip()]
    except OSError:
        return []


def _running(ws: Workspace, iteration: int) -> dict[str, Any] | None:
    """The stage running now (or last) for ``iteration``, by the loop or by hand, with its log tail."""
    progress = read_progress(ws, iteration)
    if progress is None:
        return None
    alive = progress.get("finished_at") is None and isinstance(progress.get("pid"), int) and pid_alive(
        progress["pid"])
    progress["active"] = alive
    if alive and isinstance(progress.get("started"), (int, float)):
        progress["elapsed_s"] = round(time.time() - progress["started"], 1)
    progress["log_tail"] = _log_tail(ws.stage_log(iteration, progress.get("stage", ""))) if alive else []
    return progress


def _stages(ws: Workspace, state: State) -> list[dict[str, Any]]:
    """Each stage of the iteration in progress (or the next one): done, stale (and why) or to do."""
    try:
        ctx = context(ws.root, state.iteration, state=state)
        found = iteration_status(ctx)
    except Exception as exc:  # noqa: BLE001 - a status view must show even when a result is damaged
        return [{"stage": s, "state": "unknown", "reasons": [str(exc)]} for s in REGISTRY]
    out = []
    for st in found:
        label = "done" if st.done else "stale" if st.stale else "to do"
        out.append({"stage": st.stage, "state": label, "reasons": st.reasons, "fingerprint": st.recorded})
    return out


def disk_use(ws: Workspace, hand_size: int) -> dict[str, int]:
    """Bytes per kind of data, for ``status`` (training shards are deleted once tokenized unless keep_shards: all)."""
    return {"golden shards": tree_size(ws.golden(hand_size)), "training shards": tree_size(ws.shards(hand_size)),
            "tokens": tree_size(ws.root / "data" / "tokens"), "runs": tree_size(ws.root / "runs"),
            "archive": tree_size(ws.root / "archive")}


def disk_growth(ws: Workspace) -> dict[str, Any] | None:
    """The workspace's size as last noted by the loop and its growth at the current rate (bytes per day
    and per iteration, over the newest day of the loop's disk log: forge.flywheel.retention)."""
    samples = read_disk_log(ws)
    if not samples:
        return None
    return {"bytes": samples[-1][2], "iteration": samples[-1][1], "rate": disk_rate(samples)}


def snapshot(root: str | os.PathLike = ".", state: State | None = None, disk: bool = False,
             page: int = HISTORY_PAGE) -> dict[str, Any]:
    """Everything a status view shows, as plain data (also the ``status --json`` output): of the history,
    the newest ``page`` entries (``history_count`` says how many there are)."""
    ws = Workspace.at(root)
    state = state or load_state(ws.root)
    status = liveness(ws.root, state)
    cur = state.current
    next_action = state.next_action
    if status == "crashed":
        next_action = f"the loop died; recover with `{FLYWHEEL} retry`, then `{FLYWHEEL}`"
    current = None
    if cur is not None:
        age = heartbeat_age(state, ws.root)
        current = {
            "iteration": cur.iteration,
            "seeds": cur.seeds,
            "seed_range": cur.seed_range,
            "stage": cur.stage,
            "stages_completed": cur.stages_completed,
            "progress": f"{len(cur.stages_completed)}/{len(REGISTRY)} stages",
            "started_at": cur.started_at,
            "pid": cur.pid,
            "host": cur.host,
            "heartbeat": cur.heartbeat,
            "heartbeat_age_s": round(age, 1) if age is not None else None,
            "notebooks": cur.notebooks,
            "modified": sorted(s for s, p in cur.provenance.items() if p.modified),
            "by_hand": list(cur.by_hand),
            "attempts": [_attempt(a) for a in cur.attempts],
            "timings": dict(cur.timings),
            "usage": {k: dict(v) for k, v in cur.usage.items()},  # per stage: forge.flywheel.usage
        }
    history = [h.to_dict() for h in state.history.tail(page)]
    best = state.history.best()
    return {
        "root": str(ws.root),
        "status": status,
        "preset": state.config.preset,
        "iteration": state.iteration,
        "total_seeds": state.total_seeds,
        "current": current,
        "stages": _stages(ws, state),
        "running": _running(ws, state.iteration),
        "last_error": state.last_error,
        "next_action": next_action,
        "wandb": state.wandb,
        "primary_metric": metric_label(*PRIMARY_METRIC),
        # the one best iteration by the primary metric, for every view (an entry's is_best says only
        # that it was a new best when it was recorded)
        "best_iteration": best.iteration if best is not None else None,
        "history": history,
        "history_count": len(state.history),
        "disk": disk_use(ws, state.config.data.hand_size) if disk else None,
        "disk_growth": disk_growth(ws) if disk else None,
    }


def _attempt(a: Any) -> dict[str, Any]:
    return {"number": a.number, "stage": a.stage, "error": a.error, "cell": a.cell, "notebook": a.notebook,
            "at": a.at}
