"""A snapshot of the workspace for humans: the ``status`` command, the panels and the archive index.

Everything a view shows comes from :func:`snapshot` as plain data (also ``status --json``), so
the text status, the live panel and the archive page cannot disagree.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from forge.flywheel.context import context
from forge.flywheel.fingerprint import iteration_status
from forge.flywheel.lock import heartbeat_age, liveness, pid_alive
from forge.flywheel.metric_info import column_info
from forge.flywheel.paths import Workspace
from forge.flywheel.progress import read_progress
from forge.flywheel.records import PRIMARY_METRIC, STAGES, best_of, metric_label
from forge.flywheel.state import RUN, State, load_state

LOG_TAIL_LINES = 8
#: History columns shown everywhere: (label, where in a history entry). Durations are seconds in
#: the record and minutes on screen: :func:`column_text` does that in one place.
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


def pick(entry: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry


def ago(seconds: float | None) -> str:
    """A readable age: 42s ago, 5 min ago, 3.2 h ago, 4 days ago."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def cell(value: Any) -> str:
    """A value as shown in a table: floats to 4 significant places (3e-05, not 0.0000), ranges as a..b."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.3g}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}..{value[1] - 1}"
    return str(value)


def column_text(label: str, entry: dict[str, Any], path: tuple[str, ...]) -> str:
    """One history cell as every view shows it (the record keeps seconds; tables show minutes)."""
    value = pick(entry, path)
    if label == "minutes":
        return "-" if not isinstance(value, (int, float)) else f"{value / 60:.1f}"
    return cell(value)


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
        return [{"stage": s, "state": "unknown", "reasons": [str(exc)]} for s in STAGES]
    out = []
    for st in found:
        label = "done" if st.done else "stale" if st.stale else "to do"
        out.append({"stage": st.stage, "state": label, "reasons": st.reasons, "fingerprint": st.recorded})
    return out


def _size(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    total += _size(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total


def disk_use(ws: Workspace, hand_size: int) -> dict[str, int]:
    """Bytes per kind of data, for ``status`` (training shards are deleted once tokenized unless keep_shards: all)."""
    return {"golden shards": _size(ws.golden(hand_size)), "training shards": _size(ws.shards(hand_size)),
            "tokens": _size(ws.root / "data" / "tokens"), "runs": _size(ws.root / "runs"),
            "archive": _size(ws.root / "archive")}


def snapshot(root: str | os.PathLike = ".", state: State | None = None, disk: bool = False) -> dict[str, Any]:
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
        age = heartbeat_age(state)
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
            "heartbeat_age_s": round(age, 1) if age is not None else None,
            "notebooks": cur.notebooks,
            "modified": sorted(s for s, p in cur.provenance.items() if p.modified),
            "by_hand": list(cur.by_hand),
            "attempts": [_attempt(a) for a in cur.attempts],
        }
    history = [h.to_dict() for h in state.history]
    best = best_of(state.history, *PRIMARY_METRIC)
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
        "disk": disk_use(ws, state.config.hand_size) if disk else None,
    }


def _attempt(a: Any) -> dict[str, Any]:
    return {"number": a.number, "stage": a.stage, "error": a.error, "cell": a.cell, "notebook": a.notebook,
            "at": a.at}


def format_text(snap: dict[str, Any]) -> str:
    """The ``status`` command's plain-text view."""
    lines = [f"status: {snap['status']}   preset {snap['preset']}   iteration {snap['iteration']}   "
             f"seeds trained {snap['total_seeds']}   ({snap['root']})"]
    cur = snap["current"]
    if cur:
        done = ", ".join(cur["stages_completed"]) or "none"
        line = (f"current: iteration {cur['iteration']} seeds {cell(cur['seed_range'])}, "
                f"stage {cur['stage'] or '-'} ({cur['progress']}: {done})")
        if snap["status"] in ("running", "crashed"):
            line += f", pid {cur['pid']} on {cur['host']}, heartbeat {ago(cur['heartbeat_age_s'])}"
        lines.append(line)
        if cur["modified"]:
            lines.append(f"modified notebooks ran: {', '.join(cur['modified'])} (differs from the committed version)")
        for a in cur["attempts"]:
            where = f"{a['notebook']}" + (f" cell {a['cell']}" if a.get("cell") else "") if a["notebook"] else "-"
            lines.append(f"attempt {a['number']} failed in {a['stage']}: {a['error']}  [{where}]")
    run = snap.get("running")
    if run and run.get("active"):
        lines.append(f"running: {run['stage']} ({'by hand' if run['by'] == 'hand' else 'loop'}, pid {run['pid']}) "
                     f"for {duration(run.get('elapsed_s'))}: {progress_text(run)}")
        lines += [f"  | {line}" for line in run.get("log_tail", [])]
    stale = [s for s in snap.get("stages", []) if s["state"] == "stale"]
    for s in stale:
        lines.append(f"stale: {s['stage']} will run again ({'; '.join(s['reasons'])})")
    if snap["last_error"]:
        lines.append(f"last error: {snap['last_error']}")
    if snap["next_action"]:
        lines.append(f"next: {snap['next_action']}")
    if snap.get("disk"):
        lines.append("disk: " + ", ".join(f"{kind} {size / 2**20:,.1f} MB" for kind, size in snap["disk"].items()))
    if snap["history"]:
        lines.append("")
        lines.append(format_history(snap["history"], snap.get("best_iteration")))
        flagged = [(h["iteration"], f) for h in snap["history"] for f in h.get("flags") or []]
        if flagged:
            lines.append("flagged (worse than the best earlier iteration's when recorded):")
            lines += [f"  iteration {i}: {f}" for i, f in flagged]
    return "\n".join(lines)


def progress_text(run: dict[str, Any]) -> str:
    parts = [str(run.get("phase") or "starting")]
    if run.get("total"):
        parts.append(f"{run.get('done') or 0}/{run['total']}")
    if run.get("detail"):
        parts.append(str(run["detail"]))
    return ", ".join(parts)


def format_history(history: list[dict[str, Any]], best_iteration: int | None = None) -> str:
    """The history table with a units row; ``*`` marks the one best iteration, ``!`` a flagged one."""
    rows = [[label for label, _ in HISTORY_COLUMNS] + [""],
            [column_info(path).unit for _, path in HISTORY_COLUMNS] + [""]]
    for h in history:
        mark = ("*" if best_iteration is not None and h.get("iteration") == best_iteration else "") + (
            "!" if h.get("flags") else "")
        rows.append([column_text(label, h, path) for label, path in HISTORY_COLUMNS] + [mark])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)).rstrip() for r in rows)
    meanings = [f"  {label}: {column_info(path).meaning}" for label, path in HISTORY_COLUMNS
                if path[0] in ("val", "test", "playout", "delta_prev", "timings")]
    return (text + f"\n(* the best iteration by {metric_label(*PRIMARY_METRIC)}; ! a tracked metric was worse than "
            "the best earlier iteration's when it was recorded)\n" + "\n".join(meanings))
