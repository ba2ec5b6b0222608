"""A snapshot of the workspace for humans: the ``status`` command, the panels and the archive index."""

from __future__ import annotations

import os
from typing import Any

from forge.flywheel.lock import heartbeat_age, liveness
from forge.flywheel.paths import Workspace
from forge.flywheel.state import STAGES, State, load_state

RUN = "python -m forge.cli.flywheel"
#: History columns shown everywhere: (label, where in a history entry).
HISTORY_COLUMNS = (
    ("iter", ("iteration",)),
    ("seeds", ("seed_range",)),
    ("total seeds", ("total_seeds",)),
    ("accuracy", ("val", "accuracy")),
    ("Q-gap", ("val", "q_gap")),
    ("blunder", ("val", "blunder_rate")),
    ("value MAE", ("val", "value_mae")),
    ("play-out lost", ("playout", "playout_points_lost")),
    ("test Q-gap", ("test", "q_gap")),
    ("Δ Q-gap", ("delta_prev", "q_gap")),
    ("minutes", ("timings", "total")),
)


def pick(entry: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry


def snapshot(root: str | os.PathLike = ".", state: State | None = None) -> dict[str, Any]:
    """Everything a status view shows, as plain data (also the ``status --json`` output)."""
    ws = Workspace.at(root)
    state = state or load_state(ws.root)
    status = liveness(ws.root, state)
    cur = state.current
    next_action = state.next_action
    if status == "crashed":
        next_action = f"the loop died; recover with `{RUN} retry`, then `{RUN}`"
    current = None
    if cur is not None:
        current = {
            "iteration": cur.iteration,
            "seeds": cur.seeds,
            "seed_range": cur.seed_range,
            "stage": cur.stage,
            "stages_completed": cur.stages_completed,
            "progress": f"{len(cur.stages_completed)}/{len(STAGES)} stages",
            "started_at": cur.started_at,
            "pid": cur.pid,
            "host": cur.host,
            "heartbeat": cur.heartbeat,
            "heartbeat_age_s": round(heartbeat_age(state), 1) if heartbeat_age(state) is not None else None,
            "notebooks": cur.notebooks,
        }
    return {
        "root": str(ws.root),
        "status": status,
        "preset": state.config.preset,
        "iteration": state.iteration,
        "total_seeds": state.total_seeds,
        "current": current,
        "last_error": state.last_error,
        "next_action": next_action,
        "wandb": state.wandb,
        "history": state.history,
    }


def format_text(snap: dict[str, Any]) -> str:
    """The ``status`` command's plain-text view."""
    lines = [f"status: {snap['status']}   preset {snap['preset']}   iteration {snap['iteration']}   "
             f"seeds trained {snap['total_seeds']}   ({snap['root']})"]
    cur = snap["current"]
    if cur:
        from forge.ui.render import ago

        done = ", ".join(cur["stages_completed"]) or "none"
        line = (f"current: iteration {cur['iteration']} seeds {cell(cur['seed_range'])}, "
                f"stage {cur['stage'] or '-'} ({cur['progress']}: {done})")
        if snap["status"] in ("running", "crashed"):
            line += f", pid {cur['pid']} on {cur['host']}, heartbeat {ago(cur['heartbeat_age_s'])}"
        lines.append(line)
    if snap["last_error"]:
        lines.append(f"last error: {snap['last_error']}")
    if snap["next_action"]:
        lines.append(f"next: {snap['next_action']}")
    if snap["history"]:
        lines.append("")
        lines.append(format_history(snap["history"]))
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}..{value[1] - 1}"
    return str(value)


def format_history(history: list[dict[str, Any]]) -> str:
    rows = [[label for label, _ in HISTORY_COLUMNS]]
    for h in history:
        row = [cell(pick(h, path)) for _, path in HISTORY_COLUMNS]
        minutes = pick(h, ("timings", "total"))
        row[-1] = "-" if minutes is None else f"{minutes / 60:.1f}"
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows)
