"""How the flywheel reads as text: table cells, the history table's columns, ages and durations, and
the terminal's ``status`` and ``archive`` views. The engine returns records (:func:`forge.flywheel.status.snapshot`,
:func:`forge.flywheel.archive_rows.iteration_rows`); the panel, the archive index and the CLI show them
through these functions, so they cannot disagree on how a value reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forge.flywheel.archive_rows import iteration_rows
from forge.flywheel.notes import notes_or_none
from forge.flywheel.paths import Workspace
from forge.flywheel.records import PRIMARY_METRIC, metric_label
from forge.flywheel.state import load_state
from forge.flywheel.status import HISTORY_PAGE, DiskGrowth, RunningStage, Snapshot
from forge.ml.catalog import CATALOG
from forge.ui.metric_info import column_info, flag_text

#: How a metric column's label says where the metric comes from (val and play-out metrics: the
#: catalogue's label alone; their splits are in the column's meaning).
_SPLIT_PREFIX = {"val": "", "playout": "", "test": "test ", "delta_prev": "Δ "}


def metric_column(split: str, name: str) -> tuple[str, tuple[str, str]]:
    """A history column of metric ``name`` measured on ``split`` (or its change, ``delta_prev``): its
    label is the catalogue's (forge.ml.catalog), prefixed by where it comes from (``test Q-gap``)."""
    return _SPLIT_PREFIX[split] + CATALOG[name].label, (split, name)


#: History columns shown everywhere: (label, where in a history entry). Durations are seconds in
#: the record and minutes on screen: :func:`column_text` does that in one place.
HISTORY_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("iter", ("iteration",)),
    ("seeds", ("seed_range",)),
    ("total seeds", ("total_seeds",)),
    *(metric_column(split, name) for split, name in (
        ("val", "accuracy"), ("val", "q_gap"), ("val", "zero_regret"), ("val", "blunder_rate"),
        ("val", "value_mae"), ("val", "q_mae"), ("val", "game_value_mae"), ("playout", "playout_points_lost"),
        ("test", "q_gap"),
        ("delta_prev", "q_gap"))),
    ("minutes", ("timings", "total")),
    ("train share", ("timings",)),
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
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}..{value[1] - 1}"
    return str(value)


def column_text(label: str, entry: dict[str, Any], path: tuple[str, ...]) -> str:
    """One history cell as every view shows it (the record keeps seconds; tables show minutes)."""
    value = pick(entry, path)
    if label == "minutes":
        return "-" if not isinstance(value, (int, float)) else f"{value / 60:.1f}"
    if label == "train share":
        share = train_share(value)
        return "-" if share is None else f"{share:.0%}"
    return cell(value)


def train_share(timings: Any) -> float | None:
    """The share of an iteration's time its train stage took, all attempts over every run's time
    (forge.flywheel.timekeeping: at most 1; pauses between runs are not the iteration's time)."""
    if not isinstance(timings, dict):
        return None
    train, total = timings.get("train"), timings.get("total")
    return train / total if isinstance(train, (int, float)) and isinstance(total, (int, float)) and total > 0 \
        else None


def disk_growth_text(growth: DiskGrowth | None) -> str:
    """How fast the workspace grows at the current rate (the loop notes its size after each iteration)."""
    rate = growth.rate if growth is not None else None
    if growth is None or not rate:
        return "disk growth: not known yet (the loop notes the workspace's size after each iteration)"
    span = duration(rate.over_s) if rate.over_s < 5400 else f"{rate.over_s / 3600:.1f} h"
    per_it = rate.bytes_per_iteration
    each = f"{per_it / 2**20:,.2f} MB per iteration, " if per_it is not None else ""
    return (f"disk growth: {rate.bytes_per_day / 2**20:,.1f} MB/day at the current rate ({each}over the last "
            f"{rate.over_iterations} iteration(s), {span}); workspace {growth.bytes / 2**20:,.1f} MB after "
            f"iteration {growth.iteration} (retention: docs/disk.md)")


def format_text(snap: Snapshot) -> str:
    """The ``status`` command's plain-text view."""
    lines = [f"status: {snap.status}   preset {snap.preset}   iteration {snap.iteration}   "
             f"seeds trained {snap.total_seeds}   ({snap.root})"]
    cur = snap.current
    if cur:
        done = ", ".join(cur.stages_completed) or "none"
        line = (f"current: iteration {cur.iteration} seeds {cell(cur.seed_range)}, "
                f"stage {cur.stage or '-'} ({cur.progress}: {done})")
        if snap.status in ("running", "crashed"):
            line += f", pid {cur.pid} on {cur.host}, heartbeat {ago(cur.heartbeat_age_s)}"
        lines.append(line)
        if cur.modified:
            lines.append(f"modified notebooks ran: {', '.join(cur.modified)} (differs from the committed version)")
        for a in cur.attempts:
            where = f"{a.notebook}" + (f" cell {a.cell}" if a.cell else "") if a.notebook else "-"
            lines.append(f"attempt {a.number} failed in {a.stage}: {a.error}  [{where}]")
    run = snap.running
    if run and run.active:
        lines.append(f"running: {run.stage} ({'by hand' if run.by == 'hand' else 'loop'}, pid {run.pid}) "
                     f"for {duration(run.elapsed_s)}: {progress_text(run)}")
        lines += [f"  | {line}" for line in run.log_tail]
    for s in snap.stages:
        if s.state == "stale":
            lines.append(f"stale: {s.stage} will run again ({'; '.join(s.reasons)})")
    if snap.last_error:
        lines.append(f"last error: {snap.last_error}")
    if snap.next_action:
        lines.append(f"next: {snap.next_action}")
    if snap.disk:
        lines.append("disk: " + ", ".join(f"{kind} {size / 2**20:,.1f} MB" for kind, size in snap.disk.items()))
        lines.append(disk_growth_text(snap.disk_growth))
    if snap.history:
        lines.append("")
        lines.append(format_history(snap.history, snap.best_iteration))
        if snap.history_count > len(snap.history):
            lines.append(f"(the newest {len(snap.history)} of {snap.history_count} recorded iterations; "
                         "every one is in history.jsonl)")
        shares = [s for s in (train_share(h.get("timings")) for h in snap.history[-3:]) if s is not None]
        if shares:
            lines.append(f"training took {sum(shares) / len(shares):.0%} of the last {len(shares)} iteration(s)' "
                         "time (train stage / iteration, over every run; pauses not counted)")
        flagged = [(h["iteration"], f) for h in snap.history for f in h.get("flags") or []]
        if flagged:
            lines.append("flagged (worse than the best earlier iteration's when recorded):")
            lines += [f"  iteration {i}: {flag_text(f)}" for i, f in flagged]
    return "\n".join(lines)


def progress_text(run: RunningStage) -> str:
    parts = [str(run.phase or "starting")]
    if run.total:
        parts.append(f"{run.done or 0}/{run.total}")
    if run.detail:
        parts.append(str(run.detail))
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


def format_archive(root: str | os.PathLike = ".") -> str:
    """The archive as a text table (the flywheel command's ``archive``)."""
    ws = Workspace.at(root)
    state = load_state(ws.root)
    columns = [metric_column(*m) for m in (("val", "accuracy"), ("val", "q_gap"), ("val", "blunder_rate"),
                                             ("playout", "playout_points_lost"))]
    metrics = [path for _, path in columns]
    labels = ["iter", "seeds", "status", *(label for label, _ in columns), "notebooks (archive/)",
              "by hand", "modified", "failed attempts", "", "note"]
    units = ["", "", ""] + [column_info(m).unit for m in metrics] + [""] * 6
    notes = notes_or_none(ws.root)
    rows = [labels, units]
    best = state.history.best()
    for row in iteration_rows(state, last=HISTORY_PAGE):
        books = row.get("notebooks") or {}
        folder = Path(next(iter(books.values()))).parent.name if books else "-"
        mark = ("*" if best is not None and row["status"] == "done" and row["iteration"] == best.iteration else ""
                ) + ("!" if row.get("flags") else "")
        rows.append([
            str(row["iteration"]), cell(row.get("seed_range")), row["status"],
            *(cell(pick(row, m)) for m in metrics),
            f"{folder}/ ({len(books)} stages)" if books else "-",
            ", ".join(row.get("by_hand") or []) or "-",
            ", ".join(row["modified"]) or "-",
            ", ".join(f"{a['stage']} ({a['notebook'] or 'no notebook'})" for a in row.get("attempts") or []) or "-",
            mark,
            notes.get(row["iteration"], ""),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(labels))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    if len(state.history) > HISTORY_PAGE:
        lines.append(f"(the newest {HISTORY_PAGE} of {len(state.history)} recorded iterations; every one is in "
                     "history.jsonl)")
    lines.append(f"(* the best iteration by {metric_label(*PRIMARY_METRIC)}; ! a tracked metric was worse than "
                 "the best earlier iteration's when it was recorded; by hand: stages a person ran in a notebook)")
    index = ws.root / "archive" / "index.html"
    lines.append(f"\nindex: {index if index.exists() else '(not written yet)'}")
    return "\n".join(lines)
