"""The flywheel's history: ``history.jsonl``, one compact JSON line per finished iteration, only ever appended.

Why a file of its own: state.yaml is rewritten at every stage boundary, and with the history inside it
every rewrite (and every read by a stage, the panel or ``status``) grew with the history: at 2,000
iterations a load took 6 s. Here recording an iteration appends one line, and state.yaml keeps a
:class:`Summary` (entries, the file's length, the last iteration, seeds trained, the best iteration,
the last entry's configuration) so that the loop and the views read only the lines they show.

A line is compact: an entry's configuration and notebook provenance are written in full once (the
first entry), then only the keys that changed since the entry before, as ``{"from": old, "to": new}``
(``config_changes``), so a page can be read backwards from the summary's last ones as well as
forwards from the first line; ``delta_best`` only where it differs from ``delta_prev``; fields at
their default left out.

Safety: an append is one write of whole lines, fsynced before state.yaml counts them. A kill mid-append
leaves at most a torn last line (no newline): readers ignore it, the next writer cuts it off, keeps
its bytes in ``history.jsonl.torn`` and says so; earlier lines are never touched. Whole lines beyond
the summary's length (a kill between the append and the state.yaml write) are counted on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from forge.atomic import atomic_write, fsync_dir
from forge.errors import ForgeError
from forge.flywheel.config import Config
from forge.flywheel.paths import HISTORY_FILE
from forge.flywheel.records import (
    GOLDEN,
    PRIMARY_METRIC,
    STRICT,
    HistoryEntry,
    best_of,
    better,
    golden_key,
    valid_config,
)
from forge.validation import first_problem

#: The series of an entry recorded without its configuration (migrated from version 1): compared with any.
ANY_SERIES = "any"
TORN_FILE = "history.jsonl.torn"
FORMAT = 1
_ENTRY = TypeAdapter(HistoryEntry)


def _default(field: dataclasses.Field) -> Any:
    default = field.default
    if isinstance(default, FieldInfo):
        return default.get_default(call_default_factory=True)
    return default


#: Each field's default: a line leaves out a field at its default.
_DEFAULTS = {f.name: _default(f) for f in dataclasses.fields(HistoryEntry) if f.default is not dataclasses.MISSING}


class HistoryError(ForgeError, ValueError):
    """history.jsonl is missing, cut short or holds a bad line; the message names the file and line."""


@dataclass(config=STRICT)
class Summary:
    """What state.yaml keeps of the history: enough for the loop and the views' first page."""

    file: str = HISTORY_FILE
    format: int = FORMAT
    entries: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)  # the file's length these entries take (later bytes: not counted yet)
    last_iteration: int | None = None
    total_seeds: int = Field(default=0, ge=0)  # distinct seeds trained (a seed trained twice counts once)
    trained: list[list[int]] = Field(default_factory=list)  # those seeds as sorted, disjoint [start, end) ranges
    # per comparison series (forge.flywheel.integrity.golden_key of the golden sets; "any" for an entry
    # recorded without its configuration), the best iteration scored on them and its value
    series_best: dict[str, int] = Field(default_factory=dict)
    series_value: dict[str, float] = Field(default_factory=dict)
    best_iteration: int | None = None  # by the primary metric (records.PRIMARY_METRIC), the first on a tie
    best_value: float | None = None
    last_config: dict[str, Any] | None = None  # the last entry's configuration and provenance, to read
    last_provenance: dict[str, Any] | None = None  # pages backwards


# ---------------------------------------------------------------------------------------------- seeds


def add_seeds(ranges: list[list[int]], seeds: Any) -> list[list[int]]:
    """``ranges`` (sorted, disjoint [start, end)) with ``seeds`` added: a flywheel's seeds are runs of
    consecutive numbers, so this stays a few ranges however many iterations there are."""
    out = sorted([list(r) for r in ranges] + [[s, s + 1] for s in set(seeds)])
    merged: list[list[int]] = []
    for start, end in out:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def series_of(entry: HistoryEntry) -> str:
    """The comparison series an entry was scored in: the key of its golden sets ("any": not known)."""
    recorded = entry.digests.get(GOLDEN)
    if recorded:
        return recorded
    return golden_key(entry.config) if entry.config is not None else ANY_SERIES


def count_seeds(ranges: list[list[int]]) -> int:
    return sum(end - start for start, end in ranges)


def seeds_counted(history: History, seeds: Any) -> int:
    """Distinct seeds trained over ``history`` and ``seeds``: a seed trained twice counts once (from the
    summary's ranges: the same cost at any history length)."""
    return count_seeds(add_seeds(history.summary.trained, seeds))


def seeds_in(ranges: list[list[int]], seed: int) -> bool:
    return any(start <= seed < end for start, end in ranges)


# ---------------------------------------------------------------------------------------------- one line


#: Fields most entries share with the one before: written in full once, then as changes.
CARRIED = ("config", "provenance")
Carried = dict[str, Any]  # field -> its plain value (None: the entry has none)
_CARRIED_KEYS = frozenset(k for f in CARRIED for k in (f, f"{f}_changes", f"{f}_prev"))


def _config_dict(config: Config | None) -> dict[str, Any] | None:
    return None if config is None else config.flat()


def carried_of(entry: HistoryEntry) -> Carried:
    provenance = json.loads(json.dumps(entry.provenance, default=_plain))
    return {"config": _config_dict(entry.config), "provenance": provenance}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    changes = {k: {"from": before[k], "to": after[k]} if k in before else {"to": after[k]}
               for k in after if k not in before or before[k] != after[k]}
    return changes | {k: {"from": before[k]} for k in before if k not in after}


def compact(entry: HistoryEntry, before: Carried | None, first: bool) -> dict[str, Any]:
    """``entry`` as its line: its configuration and provenance as changes from ``before`` (the previous
    entry's), delta_best only where it differs from delta_prev, defaults left out."""
    data = {f.name: getattr(entry, f.name) for f in dataclasses.fields(HistoryEntry) if f.name not in CARRIED}
    data = json.loads(json.dumps(data, default=_plain))
    if data.get("delta_best") == data.get("delta_prev"):
        data.pop("delta_best")
    data = {k: v for k, v in data.items() if k not in _DEFAULTS or v != _DEFAULTS[k]}
    if "delta_best" not in data and entry.delta_best != entry.delta_prev:
        data["delta_best"] = {}  # an empty delta_best beside a non-empty delta_prev
    now = carried_of(entry)
    for field in CARRIED:
        value, prev = now[field], (before or {}).get(field)
        if first or prev is None:
            if value is not None or first:
                data[field] = value
        elif value is None:
            data[field], data[f"{field}_prev"] = None, prev
        elif changes := _changes(prev, value):
            data[f"{field}_changes"] = changes
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} into the history")


def _apply(value: dict[str, Any] | None, changes: dict[str, Any], side: str) -> dict[str, Any] | None:
    if not changes:
        return value
    out = {} if value is None else dict(value)
    for key, change in changes.items():
        if side in change:
            out[key] = change[side]
        else:
            out.pop(key, None)
    return out


def carried_after(line: dict[str, Any], before: Carried | None) -> Carried:
    """The configuration and provenance of the entry ``line`` holds, the previous entry's being ``before``."""
    before = before or {}
    return {f: line[f] if f in line else _apply(before.get(f), line.get(f"{f}_changes") or {}, "to")
            for f in CARRIED}


def carried_before(line: dict[str, Any], after: Carried | None) -> Carried:
    """The previous entry's configuration and provenance, this entry's being ``after``."""
    after = after or {}
    return {f: line.get(f"{f}_prev") if f in line else _apply(after.get(f), line.get(f"{f}_changes") or {}, "from")
            for f in CARRIED}


_configs: dict[str, Config | None] = {}


def _config(config: dict[str, Any] | None) -> Config | None:
    """One Config object per distinct configuration (they are shared by many entries)."""
    if config is None:
        return None
    key = json.dumps(config, sort_keys=True)
    if key not in _configs:
        _configs[key] = valid_config(config)
    return _configs[key]


def expand(line: dict[str, Any], carried: Carried) -> HistoryEntry:
    """The entry a line holds, its configuration and provenance already worked out; ValueError names the field."""
    data = {k: v for k, v in line.items() if k not in _CARRIED_KEYS}
    data.setdefault("delta_best", data.get("delta_prev", {}))
    data["provenance"] = carried.get("provenance") or {}
    config = carried.get("config")
    try:
        entry = _ENTRY.validate_json(json.dumps(data), strict=True)
        entry.__dict__["config"] = _config(config)  # already validated (and shared)
    except ValidationError as exc:
        raise ValueError(first_problem(exc)) from None
    return entry


def _lines(entries: list[HistoryEntry]) -> bytes:
    out, before = [], None
    for k, entry in enumerate(entries):
        out.append(_line(compact(entry, before, k == 0)))
        before = carried_of(entry)
    return b"".join(out)


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode() + b"\n"


# ---------------------------------------------------------------------------------------------- the history


class History:
    """The history as a sequence of :class:`HistoryEntry`, read from ``history.jsonl`` only as far as asked.

    ``len``, ``[-1]``, :meth:`tail`, :meth:`entry` of a recent iteration and :meth:`best` cost the same
    at 10 or 10,000 entries; iterating over all of it reads the whole file (once: kept in memory).
    Entries appended are pending until :meth:`flush` (state.yaml's save) writes them.
    """

    def __init__(self, entries: Any = (), summary: Summary | None = None, path: Path | None = None):
        self.summary = summary if summary is not None else Summary()
        self.path = path
        self.torn: bytes | None = None  # a torn last line found beyond the counted bytes
        self._pending: list[HistoryEntry] = []
        self._lines: dict[int, HistoryEntry] = {}  # position -> entry read from the file
        self._rewrite = False
        for entry in entries:
            self.append(entry if isinstance(entry, HistoryEntry) else _ENTRY.validate_json(
                json.dumps(entry, default=_plain), strict=True))

    # -- reading --------------------------------------------------------------------------------------

    @property
    def _on_disk(self) -> int:
        return self.summary.entries - len(self._pending)

    def __len__(self) -> int:
        return self.summary.entries

    def __bool__(self) -> bool:
        return self.summary.entries > 0

    def __iter__(self) -> Iterator[HistoryEntry]:
        if len(self._lines) < self._on_disk:
            self._read_all()
        yield from (self._lines[i] for i in range(self._on_disk))
        yield from list(self._pending)

    def __reversed__(self) -> Iterator[HistoryEntry]:
        n, step = len(self), 4
        got = 0
        while got < n:
            step = min(n, max(step, got * 2))
            page = self.tail(step)
            yield from reversed(page[: len(page) - got])
            got = len(page)

    def __getitem__(self, index: int | slice) -> Any:
        n = len(self)
        if isinstance(index, slice):
            start, stop, stride = index.indices(n)
            return self.tail(n - start)[: max(0, stop - start)][::stride] if start < n else []
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("history index out of range")
        return self.tail(n - index)[0]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            other = list(other)
        return isinstance(other, list) and list(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({self.summary.entries} entries, {self.path or 'in memory'})"

    def tail(self, count: int) -> list[HistoryEntry]:
        """The last ``count`` entries, oldest first, reading only their lines."""
        count = max(0, min(count, len(self)))
        pending = self._pending[max(0, len(self._pending) - count):]
        want = count - len(pending)
        first = self._on_disk - want
        if want and any(i not in self._lines for i in range(first, self._on_disk)):
            self._read_tail(want)
        return [self._lines[i] for i in range(first, self._on_disk)] + pending

    def entry(self, iteration: int) -> HistoryEntry | None:
        """The entry of ``iteration`` (iterations increase: a recent one is found reading few lines)."""
        last = self.summary.last_iteration
        if last is None or iteration > last:
            return None
        for entry in reversed(self):
            if entry.iteration == iteration:
                return entry
            if entry.iteration < iteration:
                return None
        return None

    def before(self, iteration: int, count: int) -> list[HistoryEntry]:
        """Up to ``count`` entries of iterations before ``iteration``, oldest first."""
        out: list[HistoryEntry] = []
        for entry in reversed(self):
            if len(out) >= count:
                break
            if entry.iteration < iteration:
                out.append(entry)
        return out[::-1]

    def best(self, before: int | None = None) -> HistoryEntry | None:
        """The best entry by the primary metric (of those before iteration ``before``), from the summary
        where it knows (every entry is before ``before``), else by reading them all."""
        s = self.summary
        if before is None or s.last_iteration is None or before > s.last_iteration:
            return self.entry(s.best_iteration) if s.best_iteration is not None else None
        return best_of((h for h in self if h.iteration < before), *PRIMARY_METRIC)

    def best_in_series(self, key: str, before: int | None = None) -> HistoryEntry | None:
        """The best entry scored on the golden sets ``key`` names (an entry of unknown series counts in
        every one), from the summary where it knows (every entry is before ``before``), else by reading
        them all (a past iteration evaluated again)."""
        s = self.summary
        keys = (key, ANY_SERIES)
        if before is None or s.last_iteration is None or before > s.last_iteration:
            found = [self.entry(s.series_best[k]) for k in keys if k in s.series_best]
            return best_of([f for f in found if f is not None], *PRIMARY_METRIC)
        return best_of((h for h in self if h.iteration < before and series_of(h) in keys), *PRIMARY_METRIC)

    # -- the file -------------------------------------------------------------------------------------

    def _error(self, line_no: int, problem: str) -> HistoryError:
        return HistoryError(f"{self.path} line {line_no}: {problem}")

    def _parse_line(self, raw: bytes, line_no: int) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError:
            raise self._error(line_no, "not a JSON line (restore the file from a backup)") from None
        if not isinstance(data, dict):
            raise self._error(line_no, f"must be a mapping, got {type(data).__name__}")
        return data

    def _expand(self, data: dict[str, Any], carried: Carried, line_no: int) -> HistoryEntry:
        try:
            return expand(data, carried)
        except ValueError as exc:
            raise self._error(line_no, str(exc)) from None

    def _read_all(self) -> None:
        assert self.path is not None
        with open(self.path, "rb") as fh:
            raw = fh.read(self.summary.bytes)
        carried: Carried | None = None
        for i, line in enumerate(raw.split(b"\n")[: self._on_disk]):
            data = self._parse_line(line, i + 1)
            carried = carried_after(data, carried)
            if i not in self._lines:
                self._lines[i] = self._expand(data, carried, i + 1)

    def _read_tail(self, count: int) -> None:
        """Read the last ``count`` lines on disk backwards from the summary's last configuration."""
        assert self.path is not None
        end, disk = self.summary.bytes, self._on_disk
        per_line = max(256, end // max(1, disk))
        size = min(end, per_line * (count + 1) * 2)
        with open(self.path, "rb") as fh:
            while True:
                fh.seek(end - size)
                chunk = fh.read(size)
                lines = chunk.split(b"\n")[:-1]  # the bytes end with a newline
                if size == end or len(lines) > count:
                    break
                size = min(end, size * 4)
        lines = lines if size == end else lines[1:]  # the first may be cut
        lines = lines[-count:]
        carried = self._last_disk_carried()
        for k, line in enumerate(reversed(lines)):
            pos = disk - 1 - k
            data = self._parse_line(line, pos + 1)
            if pos not in self._lines:
                self._lines[pos] = self._expand(data, carried, pos + 1)
            carried = carried_before(data, carried)

    def _last_disk_carried(self) -> Carried:
        """What the last entry on disk carries: the summary's, or what the first pending one came after."""
        if self._pending:
            return self._pending[0].__dict__["_carried_before"] or {}
        return {"config": self.summary.last_config, "provenance": self.summary.last_provenance}

    # -- writing --------------------------------------------------------------------------------------

    def append(self, entry: HistoryEntry) -> None:
        """Add a finished iteration (written by the next :meth:`flush`); iterations must increase."""
        s = self.summary
        if s.last_iteration is not None and entry.iteration <= s.last_iteration:
            raise ValueError(f"history iterations must increase, got iteration {entry.iteration} after "
                             f"{s.last_iteration}")
        entry.__dict__["_carried_before"] = {"config": s.last_config, "provenance": s.last_provenance}
        entry.__dict__["_first"] = s.entries == 0
        self._pending.append(entry)
        self._count(entry, carried_of(entry))

    def _count(self, entry: HistoryEntry, carried: Carried) -> None:
        s = self.summary
        trained = add_seeds(s.trained, entry.seeds)
        s.__dict__.update(entries=s.entries + 1, last_iteration=entry.iteration, trained=trained,
                          total_seeds=count_seeds(trained), last_config=carried["config"],
                          last_provenance=carried["provenance"])
        value = entry.metric(*PRIMARY_METRIC)
        if value is not None and (s.best_value is None or better(PRIMARY_METRIC[1], value, s.best_value)):
            s.__dict__.update(best_iteration=entry.iteration, best_value=value)
        if value is not None:
            key = series_of(entry)
            if key not in s.series_value or better(PRIMARY_METRIC[1], value, s.series_value[key]):
                s.series_best[key], s.series_value[key] = entry.iteration, value

    def bind(self, path: Path) -> None:
        """Read ``path`` as this history's file: check its length, count whole lines beyond the summary
        (written before a kill kept state.yaml from counting them) and note a torn last line."""
        self.path = path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
            if self.summary.entries:
                raise HistoryError(f"{path} is missing, but state.yaml counts {self.summary.entries} iteration(s) "
                                   "in it: restore it from a backup") from None
        s = self.summary
        if size < s.bytes:
            raise HistoryError(f"{path} is {size} bytes, shorter than the {s.bytes} state.yaml counts: it was "
                               "cut or edited; restore it from a backup")
        if size == s.bytes:
            return
        with open(path, "rb") as fh:
            fh.seek(s.bytes)
            extra = fh.read(size - s.bytes)
        *whole, rest = extra.split(b"\n")
        carried: Carried = {"config": s.last_config, "provenance": s.last_provenance}
        for line in whole:
            try:
                data = json.loads(line)
                carried = carried_after(data, carried)
                entry = expand(data, carried)
            except (ValueError, TypeError):
                self.torn = line + b"\n" + rest
                return
            self._lines[s.entries] = entry
            self._count(entry, carried)
            s.__dict__["bytes"] = s.bytes + len(line) + 1
        self.torn = rest or None

    def repair(self) -> str | None:
        """Cut a torn last line off the file (kept in history.jsonl.torn); what was done, or None."""
        if self.path is None or not self.torn:
            return None
        torn_path = self.path.with_name(TORN_FILE)
        with open(torn_path, "ab") as fh:
            fh.write(self.torn + (b"" if self.torn.endswith(b"\n") else b"\n"))
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.path, "r+b") as fh:
            fh.truncate(self.summary.bytes)
            os.fsync(fh.fileno())
        self.torn = None
        return (f"{self.path.name}: cut off a torn last line ({torn_path.name} keeps its bytes); the iterations "
                "before it are intact")

    def flush(self, path: Path) -> str | None:
        """Write pending entries to ``path`` (appended, fsynced); a history read from another file, or
        none, is written there whole. Returns what a repair did, if one was needed."""
        said = None
        if self.path != path or self._rewrite:
            lines = b""
            if self._rewrite:
                lines = _lines(list(self))
            elif self.path is not None and self._on_disk:
                with open(self.path, "rb") as fh:
                    lines = fh.read(self.summary.bytes)
            if not self._rewrite:
                lines += self._pending_lines()
            self._rewrite = False
            atomic_write(path, lambda fh: fh.write(lines))
            fsync_dir(path.parent)
            self._settle(path, len(lines))
            return None
        if not self._pending:
            return None
        size = path.stat().st_size if path.exists() else 0
        if size != self.summary.bytes:
            if size < self.summary.bytes:
                raise HistoryError(f"{path} shrank to {size} bytes while the loop held it ({self.summary.bytes} "
                                   "expected): restore it from a backup")
            with open(path, "rb") as fh:
                fh.seek(self.summary.bytes)
                self.torn = fh.read()
            said = self.repair()
        data = self._pending_lines()
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self.summary.bytes)  # a full disk: no torn line left behind
                raise
        finally:
            os.close(fd)
        if new:
            fsync_dir(path.parent)
        self._settle(path, self.summary.bytes + len(data))
        return said

    def rewrite(self) -> None:
        """Have the next :meth:`flush` write the whole file again (atomically) from the entries in
        memory: for amendments to recorded entries (a W&B URL after ``sync``), never for the loop."""
        list(self)
        self._rewrite = True

    def _pending_lines(self) -> bytes:
        return b"".join(_line(compact(e, e.__dict__.get("_carried_before"), e.__dict__.get("_first", False)))
                        for e in self._pending)

    def _settle(self, path: Path, size: int) -> None:
        start = self._on_disk
        for k, entry in enumerate(self._pending):
            self._lines[start + k] = entry
        self._pending = []
        self.path = path
        self.summary.__dict__["bytes"] = size
