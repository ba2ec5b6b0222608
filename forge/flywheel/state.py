"""``state.yaml``: the flywheel's state machine, validated on load and written atomically.

    ready --run--> running --success--> ready (next iteration)
    running --failure--> failed --retry--> ready
    ready --stop condition met--> done

A loop that died leaves ``running`` behind; :func:`forge.flywheel.lock.liveness` tells it apart
from a live one ("crashed"). Every write goes to a temp file, is fsynced and renamed over the old
file, whose previous version is kept as ``state.yaml.bak``. A file that fails validation is never
silently re-initialised: the error names the bad field.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forge.atomic import atomic_write, atomic_write_text, fsync_dir
from forge.errors import ForgeError
from forge.flywheel.config import Config, ConfigError, config_from_dict
from forge.flywheel.paths import STATE_FILE

BACKUP_FILE = "state.yaml.bak"
STATE_VERSION = 1
STATUSES = ("ready", "running", "failed", "done")
STAGES = ("generate", "tokenize", "train", "evaluate")

_write_lock = threading.Lock()


class StateError(ForgeError, ValueError):
    """state.yaml is missing, unreadable or invalid; the message names the field."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Current:
    """The iteration in progress (or interrupted)."""

    iteration: int
    seeds: list[int]
    seed_range: list[int]  # [first, last + 1] of the seeds, golden seeds skipped in between
    stages_completed: list[str] = field(default_factory=list)
    stage: str | None = None
    started_at: str | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notebooks: dict[str, str] = field(default_factory=dict)


@dataclass
class State:
    config: Config
    status: str = "ready"
    wandb: dict[str, str] = field(default_factory=lambda: {"project": "forge-texas42", "group": "default",
                                                           "mode": "offline"})
    baseline_checkpoint: str | None = None
    next_seed: int = 0
    current: Current | None = None
    last_error: str | None = None
    next_action: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    version: int = STATE_VERSION

    @property
    def iteration(self) -> int:
        """Number of the iteration in progress, or of the next one."""
        if self.current is not None:
            return self.current.iteration
        return (self.history[-1]["iteration"] + 1) if self.history else 1

    @property
    def total_seeds(self) -> int:
        return self.history[-1]["total_seeds"] if self.history else 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        order = ["version", "status", "next_action", "last_error", "wandb", "config", "baseline_checkpoint",
                 "next_seed", "current", "history"]
        return {k: data[k] for k in order}


def plan_seeds(config: Config, start: int) -> list[int]:
    """The next ``seeds_per_iter`` training seeds from ``start``, skipping golden seeds."""
    seeds, s = [], start
    golden = config.golden_seeds
    while len(seeds) < config.seeds_per_iter:
        if s not in golden:
            seeds.append(s)
        s += 1
    return seeds


def _field(data: dict, name: str, kinds: tuple[type, ...], where: str, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise StateError(f"{where}{name} must be {want}{' or null' if optional else ''}, got {value!r}")
    return value


def state_from_dict(data: Any) -> State:
    """Validate parsed YAML into a State; StateError names the first bad field."""
    if not isinstance(data, dict):
        raise StateError(f"top level must be a mapping, got {type(data).__name__}")
    version = _field(data, "version", (int,), "")
    if version != STATE_VERSION:
        raise StateError(f"version must be {STATE_VERSION}, got {version}")
    status = _field(data, "status", (str,), "")
    if status not in STATUSES:
        raise StateError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    wandb = _field(data, "wandb", (dict,), "")
    for key in ("project", "group", "mode"):
        _field(wandb, key, (str,), "wandb.")
    if wandb["mode"] not in ("online", "offline", "disabled"):
        raise StateError(f"wandb.mode must be online, offline or disabled, got {wandb['mode']!r}")
    try:
        config = config_from_dict(data.get("config"))
    except ConfigError as exc:
        raise StateError(str(exc)) from None
    current = None
    raw = data.get("current")
    if raw is not None:
        if not isinstance(raw, dict):
            raise StateError(f"current must be a mapping or null, got {raw!r}")
        it = _field(raw, "iteration", (int,), "current.")
        seeds = _field(raw, "seeds", (list,), "current.")
        if not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise StateError(f"current.seeds must be non-negative integers, got {seeds!r}")
        done = _field(raw, "stages_completed", (list,), "current.")
        if any(s not in STAGES for s in done):
            raise StateError(f"current.stages_completed holds an unknown stage: {done!r}")
        known = {f for f in Current.__dataclass_fields__}
        extra = sorted(set(raw) - known)
        if extra:
            raise StateError(f"current has unknown field(s): {', '.join(extra)}")
        current = Current(**{**raw, "iteration": it, "seeds": seeds, "stages_completed": done})
    history = _field(data, "history", (list,), "")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not isinstance(entry.get("iteration"), int):
            raise StateError(f"history[{i}] must be a mapping with an integer iteration")
        if not isinstance(entry.get("total_seeds"), int):
            raise StateError(f"history[{i}].total_seeds must be an integer")
    return State(
        config=config,
        status=status,
        wandb=dict(wandb),
        baseline_checkpoint=_field(data, "baseline_checkpoint", (str,), "", optional=True),
        next_seed=_field(data, "next_seed", (int,), ""),
        current=current,
        last_error=_field(data, "last_error", (str,), "", optional=True),
        next_action=_field(data, "next_action", (str,), "", optional=True),
        history=history,
        version=version,
    )


def state_path(root: str | os.PathLike) -> Path:
    return Path(root) / STATE_FILE


def load_state(root: str | os.PathLike) -> State:
    path = state_path(root)
    if not path.is_file():
        raise StateError(f"{path} not found: run `python -m forge.cli.flywheel init --preset quick` first")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise StateError(f"{path} is not valid YAML{where}; fix it or restore {BACKUP_FILE}") from None
    try:
        return state_from_dict(data)
    except StateError as exc:
        raise StateError(f"{path}: {exc}; fix it or restore {BACKUP_FILE}") from None


def save_state(root: str | os.PathLike, state: State) -> None:
    """Atomically replace state.yaml (temp + fsync + rename), keeping the old one as a backup."""
    path = state_path(root)
    text = "# forge flywheel state: written by `python -m forge.cli.flywheel`; validated on load.\n"
    text += yaml.safe_dump(state.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    with _write_lock:
        if path.exists():
            atomic_write(path.parent / BACKUP_FILE, lambda fh: fh.write(path.read_bytes()))
        atomic_write_text(path, text)
        fsync_dir(path.parent)


def new_state(config: Config, wandb_group: str, start_seed: int = 0, baseline: str | None = None,
              wandb_project: str = "forge-texas42", wandb_mode: str = "offline") -> State:
    state = State(config=config, next_seed=start_seed, baseline_checkpoint=baseline,
                  wandb={"project": wandb_project, "group": wandb_group, "mode": wandb_mode})
    state.next_action = "run `python -m forge.cli.flywheel --once` (one iteration) or without --once (continuous)"
    return state


def begin_iteration(state: State, seeds: list[int] | None = None) -> Current:
    """Start (or resume) the current iteration and stamp it with this process."""
    if state.current is None:
        seeds = seeds or plan_seeds(state.config, state.next_seed)
        state.current = Current(iteration=state.iteration, seeds=seeds, seed_range=[seeds[0], seeds[-1] + 1])
        state.current.started_at = now()
    cur = state.current
    cur.pid, cur.host, cur.heartbeat = os.getpid(), socket.gethostname(), now()
    state.status = "running"
    state.last_error = None
    return cur


class StateStore:
    """The loop's one in-memory State, shared with its heartbeat thread; every edit is saved.

    Edits go through :meth:`edit` under one lock, so a heartbeat can never write back a stale copy
    over the main thread's newer changes.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.state = load_state(self.root)
        self._lock = threading.RLock()

    def edit(self) -> _Edit:
        return _Edit(self)


class _Edit:
    def __init__(self, store: StateStore):
        self.store = store

    def __enter__(self) -> State:
        self.store._lock.acquire()
        return self.store.state

    def __exit__(self, *exc: object) -> None:
        try:
            save_state(self.store.root, self.store.state)
        finally:
            self.store._lock.release()
