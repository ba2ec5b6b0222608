"""notes.jsonl under faults: a kill in the middle of writing a note leaves the notes as they were (the
write is atomic, never a torn line), and the next note is kept; a hand-damaged line is named with its
file and line number and the file is left as it is (a rewrite would drop what could not be read)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.workspaces import reviewed_workspace

from forge.flywheel.notes import NOTES_FILE, add_note, read_entries, read_notes

#: Writes a note for iteration 2 and is killed half-way through writing the file.
KILLED_MID_WRITE = """
import os, sys
from forge.flywheel.notes import add_note
fdopen = os.fdopen
class Half:
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *exc): return False
    def write(self, data):
        self.fh.write(bytes(data[: len(data) // 2])); self.fh.flush(); os._exit(9)
os.fdopen = lambda *a, **k: Half(fdopen(*a, **k))
add_note(sys.argv[1], 2, "the note a kill interrupts")
"""


def test_a_kill_mid_write_leaves_the_notes_as_they_were(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    add_note(ws, 1, "before the kill")
    good = (ws / NOTES_FILE).read_bytes()
    res = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(ws)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 9, res.stderr
    assert (ws / NOTES_FILE).read_bytes() == good  # not torn: the old file whole
    assert read_notes(ws) == {1: "before the kill"}
    add_note(ws, 2, "after the kill")
    assert read_notes(ws) == {1: "before the kill", 2: "after the kill"}


def test_a_damaged_line_is_named_and_the_file_is_not_rewritten(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    add_note(ws, 1, "kept")
    path = ws / NOTES_FILE
    damaged = path.read_text() + '{"iteration": 2, "note": "half a li'  # an editor saved half a line
    path.write_text(damaged)
    res = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", "--root", str(ws), "note", "1", "new"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"{path}, line 2: not a note" in res.stderr and "Traceback" not in res.stderr
    assert path.read_text() == damaged
    from forge.flywheel.notes import notes_or_none

    assert notes_or_none(ws) == {}  # the views show no notes rather than fail
    path.write_text(damaged.rsplit("\n", 1)[0] + "\n")  # the person removes the line
    assert [e["note"] for e in read_entries(ws)] == ["kept"]
