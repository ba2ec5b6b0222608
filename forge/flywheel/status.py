"""A snapshot of the workspace for humans: what the ``status`` command, the panels and the archive index show.

Everything a view shows comes from :func:`snapshot` as one typed record, :class:`Snapshot` (its
:meth:`Snapshot.to_dict` is the ``status --json`` output), so the text status, the live panel and
the archive page cannot disagree, and a view that names a field wrongly fails (AttributeError)
instead of showing a blank; how each shows it is :mod:`forge.ui` (text: :mod:`forge.ui.text`).
The history's entries stay the recorded JSON (``HistoryEntry.to_dict()``): the history tables read
them by column path, as they read the archive's rows.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.commandline import FLYWHEEL
from forge.flywheel.context import context
from forge.flywheel.lock import heartbeat_age, liveness, pid_alive
from forge.flywheel.paths import Workspace
from forge.flywheel.progress import read_progress
from forge.flywheel.records import PRIMARY_METRIC, Attempt, metric_label
from forge.flywheel.retention import disk_rate, read_disk_log, tree_size
from forge.flywheel.stages import REGISTRY, iteration_status
from forge.flywheel.state import State, load_state

LOG_TAIL_LINES = 8
#: The history rows a view shows at first: the newest ones (the history file holds the rest; reading
#: all of it would cost a view more the longer the flywheel runs).
HISTORY_PAGE = 50


def plain(view: Any) -> Any:
    """A view (or a tuple/list/dict of them) as JSON-able data: a dataclass by its fields in order."""
    if dataclasses.is_dataclass(view) and not isinstance(view, type):
        return {f.name: plain(getattr(view, f.name)) for f in dataclasses.fields(view)}
    if isinstance(view, (list, tuple)):
        return [plain(v) for v in view]
    if isinstance(view, Mapping):
        return {k: plain(v) for k, v in view.items()}
    return view


@dataclass(frozen=True)
class AttemptView:
    """A failed attempt at the iteration in progress (its executed notebook kept for review)."""

    number: int
    stage: str
    error: str
    cell: int | None  # the failing cell as the user numbers it
    notebook: str | None  # archive/iter-NNNN/attempt-K/<stage notebook>.ipynb
    at: str

    @classmethod
    def of(cls, a: Attempt) -> AttemptView:
        return cls(number=a.number, stage=a.stage, error=a.error, cell=a.cell, notebook=a.notebook, at=a.at)


@dataclass(frozen=True)
class CurrentIteration:
    """The iteration in progress (or interrupted), as the views show it."""

    iteration: int
    seeds: tuple[int, ...]
    seed_range: tuple[int, int]  # [first, last + 1]
    stage: str | None
    stages_completed: tuple[str, ...]
    progress: str  # "2/4 stages"
    started_at: str | None
    pid: int | None
    host: str | None
    heartbeat: str | None
    heartbeat_age_s: float | None
    notebooks: dict[str, str]
    modified: tuple[str, ...]  # stages that ran a notebook differing from the committed one
    by_hand: tuple[str, ...]  # stages a person ran in a notebook
    attempts: tuple[AttemptView, ...]
    timings: dict[str, float]
    usage: dict[str, dict[str, float]]  # per stage: forge.flywheel.usage


@dataclass(frozen=True)
class StageView:
    """One stage of the iteration in progress (or the next one): "done", "stale" (and why), "to do",
    or "unknown" (its status could not be read: the reason says why)."""

    stage: str
    state: str
    reasons: tuple[str, ...]
    fingerprint: str | None  # of the recorded result, if any


@dataclass(frozen=True)
class RunningStage:
    """The stage running now (or last) for the iteration, by the loop or by hand: what it published in
    ``progress.json`` (forge.flywheel.progress, read as written), whether it is alive, its log's tail."""

    iteration: int | None
    stage: str | None
    by: str | None  # "loop" or "hand"
    pid: int | None
    host: str | None
    started_at: str | None
    started: float | None  # epoch seconds
    phase: str | None
    done: int | None
    total: int | None
    detail: str | None
    finished_at: str | None
    ok: bool | None
    updated_at: str | None
    elapsed_s: float | None
    active: bool  # its process is alive and it has not finished
    log_tail: tuple[str, ...]  # the last lines of its log while it runs


@dataclass(frozen=True)
class DiskRate:
    """The workspace's growth at the current rate (forge.flywheel.retention.disk_rate)."""

    bytes_per_day: float
    bytes_per_iteration: float | None
    over_s: float
    over_iterations: int


@dataclass(frozen=True)
class DiskGrowth:
    """The workspace's size as the loop last noted it, and its growth at the current rate."""

    bytes: int
    iteration: int
    rate: DiskRate | None


@dataclass(frozen=True)
class Snapshot:
    """Everything a status view shows (:func:`snapshot`)."""

    root: str
    status: str  # ready, running, failed, crashed, ...: forge.flywheel.lock.liveness
    preset: str
    iteration: int
    total_seeds: int
    current: CurrentIteration | None
    stages: tuple[StageView, ...]
    running: RunningStage | None
    last_error: str | None
    next_action: str | None
    wandb: dict[str, str]  # project, group, mode (and a report's URL, once made)
    primary_metric: str  # "val/q_gap"
    # the one best iteration by the primary metric, for every view (an entry's is_best says only that it
    # was a new best when it was recorded)
    best_iteration: int | None
    history: list[dict[str, Any]]  # the newest entries, oldest first, as recorded (HistoryEntry.to_dict())
    history_count: int  # how many iterations are recorded (the history shown is a page)
    disk: dict[str, int] | None  # bytes per kind of data, when asked for
    disk_growth: DiskGrowth | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the ``status --json`` output."""
        return plain(self)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
    try:
        with path.open(errors="replace") as fh:
            return tuple(line.rstrip("\n") for line in deque(fh, maxlen=lines) if line.strip())
    except OSError:
        return ()


#: What a stage publishes in progress.json, that a view shows (RunningStage's fields but the derived ones).
_PUBLISHED = tuple(f.name for f in dataclasses.fields(RunningStage) if f.name not in ("active", "log_tail"))


def _running(ws: Workspace, iteration: int) -> RunningStage | None:
    """The stage running now (or last) for ``iteration``, by the loop or by hand, with its log tail."""
    progress = read_progress(ws, iteration)
    if progress is None:
        return None
    alive = progress.get("finished_at") is None and isinstance(progress.get("pid"), int) and pid_alive(
        progress["pid"])
    if alive and isinstance(progress.get("started"), (int, float)):
        progress["elapsed_s"] = round(time.time() - progress["started"], 1)
    tail = _log_tail(ws.stage_log(iteration, progress.get("stage") or "")) if alive else ()
    return running_stage(progress, alive, tail)


def running_stage(progress: dict[str, Any], active: bool, log_tail: tuple[str, ...] = ()) -> RunningStage:
    """A stage's ``progress.json`` as read (forge.flywheel.progress) as the typed view: unknown keys dropped."""
    return RunningStage(**{k: progress.get(k) for k in _PUBLISHED}, active=active, log_tail=log_tail)


def _stages(ws: Workspace, state: State) -> tuple[StageView, ...]:
    """Each stage of the iteration in progress (or the next one): done, stale (and why) or to do."""
    try:
        ctx = context(ws.root, state.iteration, state=state)
        found = iteration_status(ctx)
    except Exception as exc:  # noqa: BLE001 - a status view must show even when a result is damaged
        return tuple(StageView(stage=s, state="unknown", reasons=(str(exc),), fingerprint=None) for s in REGISTRY)
    return tuple(StageView(stage=st.stage, state="done" if st.done else "stale" if st.stale else "to do",
                           reasons=tuple(st.reasons), fingerprint=st.recorded) for st in found)


def disk_use(ws: Workspace, hand_size: int) -> dict[str, int]:
    """Bytes per kind of data, for ``status`` (training shards are deleted once tokenized unless keep_shards: all)."""
    return {"golden shards": tree_size(ws.golden(hand_size)), "training shards": tree_size(ws.shards(hand_size)),
            "tokens": tree_size(ws.root / "data" / "tokens"), "runs": tree_size(ws.root / "runs"),
            "archive": tree_size(ws.root / "archive")}


def disk_growth(ws: Workspace) -> DiskGrowth | None:
    """The workspace's size as last noted by the loop and its growth at the current rate (bytes per day
    and per iteration, over the newest day of the loop's disk log: forge.flywheel.retention)."""
    samples = read_disk_log(ws)
    if not samples:
        return None
    rate = disk_rate(samples)
    return DiskGrowth(bytes=samples[-1][2], iteration=samples[-1][1], rate=DiskRate(**rate) if rate else None)


def _current(ws: Workspace, state: State) -> CurrentIteration | None:
    cur = state.current
    if cur is None:
        return None
    age = heartbeat_age(state, ws.root)
    return CurrentIteration(
        iteration=cur.iteration,
        seeds=tuple(cur.seeds),
        seed_range=(cur.seed_range[0], cur.seed_range[1]),
        stage=cur.stage,
        stages_completed=tuple(cur.stages_completed),
        progress=f"{len(cur.stages_completed)}/{len(REGISTRY)} stages",
        started_at=cur.started_at,
        pid=cur.pid,
        host=cur.host,
        heartbeat=cur.heartbeat,
        heartbeat_age_s=round(age, 1) if age is not None else None,
        notebooks=dict(cur.notebooks),
        modified=tuple(sorted(s for s, p in cur.provenance.items() if p.modified)),
        by_hand=tuple(cur.by_hand),
        attempts=tuple(AttemptView.of(a) for a in cur.attempts),
        timings=dict(cur.timings),
        usage={k: dict(v) for k, v in cur.usage.items()},
    )


def snapshot(root: str | os.PathLike = ".", state: State | None = None, disk: bool = False,
             page: int = HISTORY_PAGE) -> Snapshot:
    """Everything a status view shows (``to_dict()``: the ``status --json`` output): of the history,
    the newest ``page`` entries (``history_count`` says how many there are)."""
    ws = Workspace.at(root)
    state = state or load_state(ws.root)
    status = liveness(ws.root, state)
    next_action = state.next_action
    if status == "crashed":
        next_action = f"the loop died; recover with `{FLYWHEEL} retry`, then `{FLYWHEEL}`"
    best = state.history.best()
    return Snapshot(
        root=str(ws.root),
        status=status,
        preset=state.config.preset,
        iteration=state.iteration,
        total_seeds=state.total_seeds,
        current=_current(ws, state),
        stages=_stages(ws, state),
        running=_running(ws, state.iteration),
        last_error=state.last_error,
        next_action=next_action,
        wandb=dict(state.wandb),
        primary_metric=metric_label(*PRIMARY_METRIC),
        best_iteration=best.iteration if best is not None else None,
        history=[h.to_dict() for h in state.history.tail(page)],
        history_count=len(state.history),
        disk=disk_use(ws, state.config.data.hand_size) if disk else None,
        disk_growth=disk_growth(ws) if disk else None,
    )
