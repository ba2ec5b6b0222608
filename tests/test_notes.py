"""A note per iteration (notes.jsonl): kept through the CLI, refused for an unknown iteration in one
line with a non-zero exit, its latest line the note (an empty one clears it), a damaged file named
rather than overwritten, and the history views show it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.workspaces import reviewed_workspace

from forge.flywheel.notes import MAX_NOTE_CHARS, NOTES_FILE, NotesError, add_note, read_entries, read_notes


def in_process(ws: Path, *args: str) -> int:
    """The flywheel command run in this process (its own error handling included): the exit status."""
    from forge.cli.flywheel import main
    from forge.commandline import run_cli

    return run_cli(main, ["--root", str(ws), *args])


def flywheel(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forge.cli.flywheel", "--root", str(ws), *args],
                          capture_output=True, text=True, timeout=120)


def test_the_note_command_keeps_a_note_and_refuses_an_unknown_iteration(tmp_path: Path, capsys) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    assert in_process(ws, "note", "2", "lr   too high\n#baseline") == 0
    assert read_notes(ws) == {2: "lr too high #baseline"}  # one line: a table cell shows it
    refused = flywheel(ws, "note", "9", "nope")  # as a person runs it: a process, its exit status
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "flywheel: error: no iteration 9 in the record (recorded: 1..3); a note is about a recorded iteration"]
    capsys.readouterr()
    assert in_process(ws, "note", "two", "x") == 2
    assert capsys.readouterr().err.strip().splitlines() == ["forge: error: argument iteration: not an integer: "
                                                            "'two' (see --help)"]
    assert read_notes(ws) == {2: "lr too high #baseline"}  # nothing written by the refusals


def test_the_latest_line_is_the_note_an_empty_one_clears_it_and_the_earlier_stay(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    add_note(ws, 1, "first")
    add_note(ws, 1, "second")
    add_note(ws, 3, "keep")
    assert read_notes(ws) == {1: "second", 3: "keep"}
    add_note(ws, 1, "")
    assert read_notes(ws) == {3: "keep"}
    assert [e["note"] for e in read_entries(ws)] == ["first", "second", "keep", ""]  # the record of edits
    with pytest.raises(NotesError, match=f"at most {MAX_NOTE_CHARS}"):
        add_note(ws, 1, "x" * (MAX_NOTE_CHARS + 1))


def test_a_damaged_notes_file_is_named_and_never_overwritten(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    add_note(ws, 1, "kept")
    path = ws / NOTES_FILE
    damaged = path.read_text() + '{"iteration": "one", "note": 3}\n'
    path.write_text(damaged)
    refused = flywheel(ws, "note", "2", "more")
    assert refused.returncode == 2 and f"{path}, line 2: not a note" in refused.stderr
    assert path.read_text() == damaged  # its lines stay for the person to fix


def test_the_history_views_show_the_notes(tmp_path: Path) -> None:
    from forge.flywheel.status import snapshot
    from forge.ui.archive_index import write_index
    from forge.ui.render import panel_html

    ws = reviewed_workspace(tmp_path / "ws")
    add_note(ws, 2, "<b>lr</b> #sweep")
    page = write_index(ws).read_text()
    assert "&lt;b&gt;lr&lt;/b&gt; #sweep" in page  # escaped, in its row
    html = panel_html(snapshot(ws), base=ws / "notebooks")
    assert "&lt;b&gt;lr&lt;/b&gt; #sweep" in html
    assert json.loads((ws / NOTES_FILE).read_text().splitlines()[0])["iteration"] == 2


def test_the_dashboards_note_box_keeps_a_note_and_says_why_it_refuses(tmp_path: Path) -> None:
    from forge.ui.dashboard import Dashboard
    from forge.ui.panel import shown_html

    ws = reviewed_workspace(tmp_path / "ws")
    board = Dashboard(ws, live=True, interval=3600)
    try:
        assert board.note_iteration.value == 3  # the latest recorded iteration
        board.note_text.value = "#keep"
        board.note_button.click()
        assert "iteration 3: note kept" in board.message.value
        assert "#keep" in shown_html(board.panel.parts["history"])  # shown at once
        board.note_iteration.value = 7
        board.note_button.click()
        assert "note not kept: no iteration 7 in the record" in board.message.value
        assert read_notes(ws) == {3: "#keep"}
    finally:
        board.stop()


def test_the_archive_command_shows_the_notes(tmp_path: Path, capsys) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    add_note(ws, 3, "lr 1e-3 #sweep")
    assert in_process(ws, "archive") == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("3 "))
    assert row.endswith("lr 1e-3 #sweep")
