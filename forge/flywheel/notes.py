"""A person's note per iteration ("lr too high", "#baseline"), kept in ``notes.jsonl`` in the workspace.

The file is append-only in meaning: each note is one JSON line ``{"iteration", "note", "at"}``, and
an iteration's note is its latest line (an empty note clears it; the earlier ones stay, as its
record). It is rewritten whole through :func:`forge.atomic.atomic_write_text`, so a crash or a
kill mid-write leaves the old file or the new one, never half a line. It is a person's words
beside the flywheel's record (state.yaml, history.jsonl), which it never changes; a note is only
taken for an iteration that record holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text
from forge.errors import InputError
from forge.flywheel.paths import NOTES_FILE, Workspace
from forge.flywheel.state import load_state, now

__all__ = ["MAX_NOTE_CHARS", "NOTES_FILE", "NotesError", "add_note", "notes_or_none", "notes_path", "read_entries",
           "read_notes"]
#: Longer notes belong in a notebook or the docs; the history table shows one line.
MAX_NOTE_CHARS = 500


class NotesError(InputError):
    """A note that cannot be taken (unknown iteration, too long) or a notes file that cannot be read."""


def notes_path(root: str | os.PathLike) -> Path:
    return Workspace.at(root).notes


def read_entries(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every note line in order; a line that is not a note (a hand edit gone wrong) is a NotesError
    naming the file and line, never silently skipped or half-read."""
    path = notes_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            valid = (isinstance(entry, dict) and type(entry.get("iteration")) is int
                     and isinstance(entry.get("note"), str))
        except ValueError:
            valid = False
        if not valid:
            raise NotesError(f"{path}, line {number}: not a note (expected "
                             '{"iteration": N, "note": "...", "at": "..."}); fix or remove that line')
        entries.append(entry)
    return entries


def read_notes(root: str | os.PathLike) -> dict[int, str]:
    """Each iteration's current note (its latest line; an empty one clears it)."""
    latest: dict[int, str] = {}
    for entry in read_entries(root):
        latest[entry["iteration"]] = entry["note"]
    return {it: note for it, note in latest.items() if note}


def notes_or_none(root: str | os.PathLike) -> dict[int, str]:
    """The notes for a view: a damaged notes file shows no notes rather than no view (the CLI says why)."""
    try:
        return read_notes(root)
    except NotesError:
        return {}


def _unrecorded(root: str | os.PathLike, iteration: int) -> str | None:
    """Why ``iteration`` takes no note: the record (finished or under way) does not hold it; None if it does.
    Finding it reads the history's newest lines only; the whole record is read only to say what it holds."""
    from forge.flywheel.archive_rows import iteration_rows

    state = load_state(root)
    if state.entry(iteration) is not None or (state.current is not None and state.current.iteration == iteration):
        return None
    known = {row["iteration"] for row in iteration_rows(state)}
    have = f"recorded: {min(known)}..{max(known)}" if known else "none is recorded yet"
    return f"no iteration {iteration} in the record ({have}); a note is about a recorded iteration"


def add_note(root: str | os.PathLike, iteration: int, note: str) -> str:
    """Record ``note`` as iteration ``iteration``'s note (``""`` clears it); returns the note as kept.

    Refuses an iteration the record does not hold, a note over :data:`MAX_NOTE_CHARS` and, by
    reading the file first, a damaged notes file (rewriting it would drop its unreadable lines)."""
    text = " ".join(str(note).split())  # one line: the table shows it in a cell
    if len(text) > MAX_NOTE_CHARS:
        raise NotesError(f"note for iteration {iteration} is {len(text)} characters; at most {MAX_NOTE_CHARS}")
    why = _unrecorded(root, iteration)
    if why:
        raise NotesError(why)
    entries = read_entries(root)
    entries.append({"iteration": iteration, "note": text, "at": now()})
    atomic_write_text(notes_path(root), "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    return text
