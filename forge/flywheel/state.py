"""``state.yaml``: the flywheel's state machine, validated on load and written atomically.

    ready --run--> running --success--> ready (next iteration)
    running --failure--> failed --retry--> ready
    ready --stop condition met--> done

A loop that died leaves ``running`` behind; :func:`forge.flywheel.lock.liveness` tells it apart
from a live one ("crashed"). Every write goes to a temp file, is fsynced and renamed over the old
file, whose previous version is kept as ``state.yaml.bak`` (only if it was itself valid: a
corrupt file never replaces the last good backup). A file that fails validation is never
silently re-initialised: the error names the file and the bad field.

The history is not in this file (version 3): finished iterations are appended to ``history.jsonl``
(:mod:`forge.flywheel.history`) and state.yaml keeps only its summary under ``history``, so a save
costs the same at 10 iterations as at 10,000; the heartbeat goes to a small file of its own
(:mod:`forge.flywheel.beat`). Older files migrate on load, keeping every value: version 1 (before
typed history) and version 2 (the history inside state.yaml); the first save writes history.jsonl
and keeps the original beside it as ``state.yaml.v1.bak`` / ``state.yaml.v2.bak``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from forge.atomic import atomic_write, atomic_write_text, fsync_dir
from forge.commandline import FLYWHEEL
from forge.errors import ForgeError
from forge.flywheel import beat
from forge.flywheel.config import MAX_SEED, Config
from forge.flywheel.history import History, HistoryError, Summary, seeds_in
from forge.flywheel.paths import HISTORY_FILE, STATE_FILE
from forge.flywheel.records import (
    STRICT,
    Current,
    GoldenPin,
    HistoryEntry,
    Pretrain,
    to_plain,
    valid_config,
)
from forge.ml.settings import WANDB_PROJECT
from forge.validation import first_problem

BACKUP_FILE = "state.yaml.bak"
#: Disk space held back for the record: freed when state.yaml cannot be written for lack of space,
#: so that a full disk still ends in a state that says what happened.
RESERVE_FILE = ".flywheel.reserve"
RESERVE_BYTES = 1 << 20
V1_BACKUP_FILE = "state.yaml.v1.bak"
STATE_VERSION = 3
STATUSES = ("ready", "running", "failed", "done")
WANDB_MODES = ("online", "offline", "disabled")
HEADER = f"# forge flywheel state: written by `{FLYWHEEL}`; validated on load.\n"

_write_lock = threading.Lock()


class StateError(ForgeError, ValueError):
    """state.yaml is missing, unreadable or invalid; the message names the file and the field."""


class BrokenStateFile(StateError):
    """state.yaml exists but does not load: ``problem`` says why, the message adds how to repair it.

    A loop holding the state writes a good state.yaml over a broken one, so when a stage (in the
    loop's kernel) fails on one, the loop reports the problem with its own advice (:meth:`problem_of`
    reads the problem back from the message a notebook's traceback carries)."""

    SEPARATOR = "; fix it"

    def __init__(self, problem: str, backup: Path | None, path: Path):
        advice = f"or restore the last good version: `cp {backup} {path}`" if backup else "(there is no usable backup)"
        super().__init__(f"{problem}{self.SEPARATOR} {advice}")
        self.problem = problem

    @classmethod
    def problem_of(cls, message: str) -> str:
        return message.rsplit(cls.SEPARATOR, 1)[0]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(config=STRICT)
class State:
    config: Config
    status: str = "ready"
    wandb: dict[str, str] = Field(default_factory=lambda: {"project": WANDB_PROJECT, "group": "default",
                                                            "mode": "offline"})
    baseline_checkpoint: str | None = None
    next_seed: int = Field(default=0, ge=0, le=MAX_SEED)
    current: Current | None = None
    last_error: str | None = None
    next_action: str | None = None
    #: A History (a sequence of HistoryEntry read from history.jsonl as far as asked); a list of entries
    #: (or a version-2 file's) becomes one held in memory, written whole by the next save.
    history: Any = Field(default_factory=History)
    version: int = STATE_VERSION
    pretrain: Pretrain | None = None
    golden: GoldenPin | None = None  # the golden sets' pinned content (forge.flywheel.integrity)

    @field_validator("config", mode="before")
    @classmethod
    def _valid_config(cls, value: Any) -> Config:
        return valid_config(value)

    @field_validator("status")
    @classmethod
    def _known_status(cls, status: str) -> str:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        return status

    @field_validator("wandb")
    @classmethod
    def _valid_wandb(cls, wandb: dict[str, str]) -> dict[str, str]:
        missing = [k for k in ("project", "group", "mode") if k not in wandb]
        if missing:
            raise ValueError(f"wandb.{missing[0]} is missing, got {sorted(wandb)}")
        if wandb["mode"] not in WANDB_MODES:
            raise ValueError(f"wandb.mode must be {', '.join(WANDB_MODES)}, got {wandb['mode']!r}")
        return wandb

    @field_validator("history", mode="before")
    @classmethod
    def _history(cls, value: Any) -> History:
        if isinstance(value, History):
            return value
        if isinstance(value, dict):  # version 3: the summary; the file is bound on load
            try:
                return History(summary=_SUMMARY.validate_json(json.dumps(value), strict=True))
            except ValidationError as exc:
                raise ValueError(first_problem(exc, "history")) from None
        if isinstance(value, list):
            try:
                entries = _ENTRIES.validate_json(json.dumps(to_plain(value), default=str), strict=True)
            except ValidationError as exc:
                raise ValueError(first_problem(exc, "history")) from None
            return History(entries)
        raise ValueError(f"history must be a summary or a list of entries, got {type(value).__name__}")

    @property
    def iteration(self) -> int:
        """Number of the iteration in progress, or of the next one."""
        if self.current is not None:
            return self.current.iteration
        if self.history:
            return self.history.summary.last_iteration + 1
        return 0 if self.pretrain is not None else 1

    @property
    def total_seeds(self) -> int:
        return self.history.summary.total_seeds if self.history else 0

    def entry(self, iteration: int) -> HistoryEntry | None:
        return self.history.entry(iteration)

    def config_of(self, iteration: int) -> Config:
        """The configuration iteration ``iteration`` ran (or runs) with: its own snapshot if recorded."""
        past = self.entry(iteration)
        if past is not None and past.config is not None:
            return past.config
        cur = self.current
        return cur.config if cur is not None and cur.iteration == iteration and cur.config is not None else self.config

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: to_plain(getattr(self, f.name)) for f in fields(self) if f.name != "history"}
        data["history"] = to_plain(self.history.summary)
        order = ["version", "status", "next_action", "last_error", "wandb", "config", "baseline_checkpoint",
                 "pretrain", "next_seed", "golden", "current", "history"]
        return {k: data[k] for k in order if k != "golden" or data[k] is not None}


def training_seeds(config: Config, seeds: Iterable[int]) -> list[int]:
    """``seeds`` without the golden ones (a golden deal is never trained on)."""
    golden = config.evaluation.golden_seeds
    return [s for s in seeds if s not in golden]


def plan_seeds(config: Config, start: int) -> list[int]:
    """The next ``seeds_per_iter`` training seeds from ``start``, skipping golden seeds."""
    seeds: list[int] = []
    while len(seeds) < config.data.seeds_per_iter:
        seeds += training_seeds(config, range(start, start + config.data.seeds_per_iter - len(seeds)))
        start += config.data.seeds_per_iter
    return seeds[: config.data.seeds_per_iter]


# ---------------------------------------------------------------------------------------------- reading


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def strict_loader(base: type) -> type:
    """A safe loader on ``base`` that refuses duplicate keys (YAML would silently keep the last one)."""
    loader = type("StrictLoader", (base,), {"__doc__": strict_loader.__doc__})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
    return loader


#: libyaml's C parser and emitter where PyYAML has them: state.yaml gains an entry per iteration and is
#: read and written several times per iteration, so with the pure-Python ones the loop's own time grew
#: with every iteration (benchmarks/flywheel.py --sections state). Same values; only long text may fold
#: at other places.
_StrictLoader = strict_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))
def styled(dumper: type) -> type:
    """``dumper`` writing mappings one key a line (the config's sections read like the presets) and lists
    (of seeds, decls) on one line."""
    out = type(f"Styled{dumper.__name__}", (dumper,), {})
    out.add_representer(dict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=False))
    out.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    return out


_Dumper = styled(getattr(yaml, "CSafeDumper", yaml.SafeDumper))


def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: history entries gain typed fields; keys this version does not know go to ``extra``."""
    known = {f.name for f in fields(HistoryEntry)}
    history = []
    for entry in data.get("history") or []:
        if isinstance(entry, dict):
            entry = {k: v for k, v in entry.items() if k in known} | {
                "extra": {k: v for k, v in entry.items() if k not in known}}
            entry.setdefault("config", None)
            for key in ("delta_prev", "delta_best", "notebooks", "timings"):  # v1 could write null here
                if entry.get(key) is None:
                    entry.pop(key, None)
        history.append(entry)
    return {**data, "history": history, "version": STATE_VERSION}


_STATE = TypeAdapter(State)
_SUMMARY = TypeAdapter(Summary)
_ENTRIES = TypeAdapter(list[HistoryEntry])


def state_from_dict(data: Any) -> State:
    """Validate parsed YAML into a State; StateError names the first bad field."""
    if not isinstance(data, dict):
        raise StateError(f"top level must be a mapping, got {type(data).__name__}")
    version = data.get("version")
    if version == 1:
        data = _migrate_v1(data)
    if version in (1, 2):  # the history inside the file: held in memory, written to history.jsonl on save
        data = {**data, "history": data.get("history") or [], "version": STATE_VERSION}
    elif version != STATE_VERSION:
        raise StateError(f"version must be 1, 2 or {STATE_VERSION}, got {version!r}")
    try:
        # Through JSON, so strict mode takes mappings for the nested records (and YAML dates as text).
        state = _STATE.validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        raise StateError(first_problem(exc)) from None
    if version != STATE_VERSION or isinstance(data.get("history"), list):  # a history held in memory
        _check_current(state)
    trained = _golden_trained(state)
    if trained:
        raise StateError(trained)
    state.__dict__["migrated_from"] = version if version != STATE_VERSION else None
    return state


def _golden_trained(state: State) -> str | None:
    """A golden seed that was (or is being) trained on: its scores would measure memory, not play. The
    seeds trained are the history summary's intervals, so this costs the same at any history length."""
    current = set(state.current.seeds) if state.current is not None else set()
    trained = state.history.summary.trained
    for name in ("golden_val_seeds", "golden_test_seeds"):
        hit = sorted(s for s in set(state.config.get(name)) if s in current or seeds_in(trained, s))
        if hit:
            return (f"config.evaluation.{name} holds seed(s) already trained on ({', '.join(map(str, hit[:5]))}): "
                    "a golden set never holds a training deal")
    return None


def _check_current(state: State) -> None:
    """The iteration in progress must be after the recorded ones; one recorded in history.jsonl whose
    state.yaml write a kill stopped is finished here as the loop would have (nothing is redone)."""
    cur, last = state.current, state.history.summary.last_iteration
    if cur is None or last is None or cur.iteration > last:
        return
    entry = state.history[-1]
    if cur.iteration == entry.iteration and list(cur.seeds) == list(entry.seeds) and state.version == STATE_VERSION \
            and state.__dict__.get("migrated_from") is None and state.history.path is not None:
        finish_recording(state, entry)
        return
    raise StateError(f"current.iteration {cur.iteration} is already in history (last recorded iteration: {last})")


def finish_recording(state: State, entry: HistoryEntry) -> None:
    """What recording ``entry`` (already appended to the history) changes besides the history."""
    if (entry.wandb or {}).get("report"):
        state.wandb["report"] = entry.wandb["report"]
    state.next_seed = max(state.next_seed, max(entry.seeds) + 1)
    state.current, state.status, state.last_error = None, "ready", None
    upcoming = plan_seeds(state.config, state.next_seed)
    state.next_action = f"`{FLYWHEEL}` runs iteration {entry.iteration + 1} (seeds {upcoming[0]}..{upcoming[-1]})"


def state_path(root: str | os.PathLike) -> Path:
    return Path(root) / STATE_FILE


def _parse(path: Path, raw: bytes | None = None) -> State:
    raw = path.read_bytes() if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StateError(f"{path} is not UTF-8 text (bad byte at line {line})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or ""
        raise StateError(f"{path} is not valid YAML{where}{': ' + problem if problem else ''}") from None
    try:
        state = state_from_dict(data)
    except StateError as exc:
        raise StateError(f"{path}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("history"), dict):  # version 3: bind its file
        try:
            state.history.bind(path.parent / state.history.summary.file)
            _check_current(state)
        except (HistoryError, StateError) as exc:
            raise StateError(f"{path}: {exc}") from None
    _known_good[path] = hashlib.sha256(raw).digest()
    return state


#: Digest of the bytes last read or written as a valid state, per file: a save checks that the file
#: it is about to back up is a good state, and skips parsing it again when nothing has changed it.
_known_good: dict[Path, bytes] = {}


def _is_good(path: Path, raw: bytes) -> bool:
    if _known_good.get(path) == hashlib.sha256(raw).digest():
        return True
    try:
        _parse(path, raw)
        return True
    except StateError:
        return False


def _backup_is_good(root: Path) -> bool:
    try:
        _parse(Path(root) / BACKUP_FILE)
        return True
    except (StateError, OSError):
        return False


def load_state(root: str | os.PathLike) -> State:
    path = state_path(root)
    backup = path.parent / BACKUP_FILE
    if not path.is_file():
        if backup.is_file():
            raise StateError(f"{path} not found, but a backup exists: `cp {backup} {path}` restores it "
                             f"(or `{FLYWHEEL} init` starts afresh)")
        raise StateError(f"{path} not found: run `{FLYWHEEL} init --preset quick --wandb-group NAME` first")
    try:
        state = _parse(path)
        beat.overlay(root, state.current)
        return state
    except StateError as exc:
        raise BrokenStateFile(str(exc), backup if _backup_is_good(path.parent) else None, path) from None


# ---------------------------------------------------------------------------------------------- writing


def render(state: State) -> str:
    return _render(state.to_dict())


def _render(data: dict[str, Any]) -> str:
    return HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)


def save_state(root: str | os.PathLike, state: State) -> None:
    """Atomically replace state.yaml (temp + fsync + rename), keeping the previous good one as a backup."""
    path = state_path(root)
    with _write_lock:
        migrated = state.__dict__.get("migrated_from")
        keep = path.parent / f"{STATE_FILE}.v{migrated}.bak"
        if path.exists() and migrated and not keep.exists():
            atomic_write(keep, lambda fh: fh.write(path.read_bytes()))
        said = state.history.flush(path.parent / HISTORY_FILE)  # before state.yaml counts the entries
        if said:
            print(f"state: {said}", file=sys.stderr)
        data = state.to_dict()
        text = _render(data)
        if path.exists():
            try:
                raw = path.read_bytes()
                if _is_good(path, raw):  # never let a corrupt file replace the last good backup
                    atomic_write(path.parent / BACKUP_FILE, lambda fh: fh.write(raw))
            except OSError:
                pass  # a full disk: the backup is a convenience, the state itself must still be written
        atomic_write_text(path, text)
        fsync_dir(path.parent)
        try:  # an edit inside a nested field escapes validation on assignment: check what was written
            state_from_dict(data)
            _known_good[path] = hashlib.sha256(text.encode("utf-8")).digest()
        except StateError:
            _known_good.pop(path, None)
    state.__dict__["migrated_from"] = None


def set_aside(root: str | os.PathLike) -> Path | None:
    """Move an existing state.yaml to a dated backup (``state.yaml.<UTC time>.bak``) and return it."""
    path = state_path(root)
    if not path.exists():
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = path.with_name(f"{STATE_FILE}.{stamp}.bak")
    shutil.copy2(path, dest)
    if (path.parent / HISTORY_FILE).exists():  # its history goes with it (the new state starts another)
        shutil.copy2(path.parent / HISTORY_FILE, path.with_name(f"{HISTORY_FILE}.{stamp}.bak"))
    fsync_dir(path.parent)
    return dest


def new_state(config: Config, wandb_group: str, start_seed: int = 0, baseline: str | None = None,
              wandb_project: str = WANDB_PROJECT, wandb_mode: str = "offline",
              pretrain: Pretrain | None = None) -> State:
    if pretrain is not None:  # the flywheel's own seeds start after the pretraining deals
        start_seed = max(start_seed, pretrain.seed_range[1])
    state = State(config=config, next_seed=start_seed, baseline_checkpoint=baseline, pretrain=pretrain,
                  wandb={"project": wandb_project, "group": wandb_group, "mode": wandb_mode})
    state.next_action = f"run `{FLYWHEEL} --once` (one iteration) or without --once (continuous)"
    return state


def planned_seeds(state: State) -> list[int]:
    """The seeds of the iteration in progress, or of the next one: the pretraining range for
    iteration 0, else the next ``seeds_per_iter`` from ``next_seed``."""
    if state.current is not None:
        return list(state.current.seeds)
    if state.iteration == 0 and state.pretrain is not None:
        return training_seeds(state.config, range(*state.pretrain.seed_range))
    return plan_seeds(state.config, state.next_seed)


def begin_iteration(state: State, seeds: list[int] | None = None) -> Current:
    """Start (or resume) the current iteration and stamp it with this process."""
    if state.current is None:
        seeds = seeds or planned_seeds(state)
        state.current = Current(iteration=state.iteration, seeds=seeds, seed_range=[seeds[0], seeds[-1] + 1],
                                started_at=now())
    cur = state.current
    cur.config = state.config  # pinned: what this iteration's stages read and its history entry records
    cur.pid, cur.host, cur.heartbeat = os.getpid(), socket.gethostname(), now()
    state.status = "running"
    state.last_error = None
    return cur


def ensure_reserve(root: str | os.PathLike) -> None:
    """Hold :data:`RESERVE_BYTES` of real (not sparse) disk space for the record, if there is room."""
    path = Path(root) / RESERVE_FILE
    try:
        if path.is_file() and path.stat().st_size == RESERVE_BYTES:
            return
        with open(path, "wb") as fh:
            fh.write(bytes(RESERVE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        path.unlink(missing_ok=True)  # no room even for that: the record may still fit


def _release_reserve(root: Path) -> bool:
    path = root / RESERVE_FILE
    if not path.is_file():
        return False
    path.unlink()
    return True


class StateStore:
    """The loop's one in-memory State, shared with its heartbeat thread; every edit is saved.

    Edits go through :meth:`edit` under one lock, so a heartbeat can never write back a stale copy
    over the main thread's newer changes.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.state = load_state(self.root)
        self._lock = threading.RLock()
        self._seen = _stamp(state_path(self.root))
        self.notices: list[str] = []  # what the loop should tell its user (an edit applied later, a repair)
        said = self.state.history.repair()  # a torn last line a kill mid-append left (the loop holds the lock)
        if said:
            print(f"state: {said}", file=sys.stderr)

    def edit(self) -> _Edit:
        return _Edit(self)

    def take_notices(self) -> list[str]:
        with self._lock:
            notes, self.notices = self.notices, []
        return notes

    def _adopt_edits(self) -> None:
        """state.yaml was changed by someone else since this store wrote it: a valid config edit is kept
        for the next iteration (the one under way keeps the config pinned in ``current.config``, so the
        record shows what its stages used); anything else is the loop's to write and is written back."""
        path = state_path(self.root)
        stamp = _stamp(path)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            disk = _parse(path)
        except (StateError, OSError) as exc:
            self.notices.append(f"{exc}: the loop wrote its own copy back (that edit is not applied)")
            return
        if disk.config != self.state.config:
            old, new = self.state.config.flat(), disk.config.flat()
            what = ", ".join(f"{k} {old[k]!r} -> {new[k]!r}" for k in old if old[k] != new[k])
            self.state.config = disk.config
            cur = self.state.current
            when = (f"applies from iteration {cur.iteration + 1} (iteration {cur.iteration} keeps the config it "
                    "started with)") if cur is not None else "applies from the next iteration"
            self.notices.append(f"config edited while the loop runs ({what}): {when}")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


class _Edit:
    def __init__(self, store: StateStore):
        self.store = store

    def __enter__(self) -> State:
        self.store._lock.acquire()
        try:
            self.store._adopt_edits()
        except BaseException:
            self.store._lock.release()
            raise
        return self.store.state

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            if exc_type is not None:
                # an edit that raised is not saved (nor rotated into .bak); what is on disk stands
                with contextlib.suppress(StateError, OSError):
                    self.store.state = load_state(self.store.root)
                    self.store._seen = _stamp(state_path(self.store.root))
                return
            try:
                save_state(self.store.root, self.store.state)
            except OSError as err:
                if err.errno != errno.ENOSPC or not _release_reserve(self.store.root):
                    raise
                save_state(self.store.root, self.store.state)  # the disk is full: use the space held back
            self.store._seen = _stamp(state_path(self.store.root))
        finally:
            self.store._lock.release()
