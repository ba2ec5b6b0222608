"""The dashboard's actions for real: a detached loop started and stopped, refusals, retry, root lookup.

``failed_workspace`` is the prepared state the notebook and browser tests show as well.
"""

from __future__ import annotations

import html
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.processes import wait_for
from helpers.workspaces import FAILED, failed_workspace

from forge.flywheel.config import load_preset
from forge.flywheel.lock import FlywheelLock, lock_is_held
from forge.flywheel.notes import add_note
from forge.flywheel.paths import Workspace
from forge.flywheel.state import load_state, new_state, save_state
from forge.ui.dashboard import Dashboard, find_root, request_stop, retry_iteration, start_iteration
from forge.ui.metric_info import flag_text
from forge.ui.panel import shown_html


def status(ws: Path) -> dict[str, Any]:
    return yaml.safe_load((ws / "state.yaml").read_text())


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    save_state(ws, new_state(load_preset("tiny"), "dashboard-test"))
    return ws


@pytest.mark.slow
def test_start_launches_a_detached_loop_that_stop_ends_after_its_stage(tiny: Path) -> None:
    Workspace.at(tiny).stop_file.touch()  # left by an earlier stop request: must not stop the new loop
    started = start_iteration(tiny)
    assert started.ok, started.message
    assert started.log is not None and started.log.parent == tiny / "runs" and started.log.name.startswith("loop-")
    try:
        st = status(tiny)
        # the loop claimed iteration 1 in its own process, in a session of its own (survives the kernel)
        assert st["status"] == "running" and st["current"]["pid"] == started.pid
        assert os.getsid(started.pid) == started.pid != os.getsid(0)
        assert lock_is_held(tiny)
        again = start_iteration(tiny)
        assert not again.ok and "already running" in again.message and f"pid {started.pid}" in again.message
        wait_for(lambda: (status(tiny)["current"] or {}).get("stage") == "generate", 60, "the generate stage")
        stop = request_stop(tiny)
        assert stop.ok and Workspace.at(tiny).stop_file.exists()
        wait_for(lambda: not lock_is_held(tiny), 120, "the loop to stop")
    finally:
        if lock_is_held(tiny):  # never leave a loop behind, whatever failed above
            os.killpg(started.pid, signal.SIGKILL)
    st = status(tiny)
    assert st["status"] == "ready" and st["current"]["iteration"] == 1
    assert st["current"]["stages_completed"] == ["generate"]  # the stage under way finished, then it stopped
    assert "stopped on request" in st["next_action"]
    log = started.log.read_text()
    assert "iteration 1: seeds 0..3" in log and "stopped on request before tokenize" in log
    assert not Workspace.at(tiny).stop_file.exists()  # the loop consumed it


def test_start_refuses_while_a_loop_holds_the_lock_and_launches_nothing(tiny: Path) -> None:
    with FlywheelLock(tiny):
        out = start_iteration(tiny)
        assert not out.ok and out.pid is None
        assert "already running" in out.message and f"pid {os.getpid()}" in out.message
        stop = request_stop(tiny)
        assert stop.ok and Workspace.at(tiny).stop_file.exists()
    assert not (tiny / "runs").exists()  # no log, so no process was started
    assert status(tiny)["status"] == "ready"


def test_stop_without_a_loop_refuses_and_leaves_no_stop_file(tiny: Path) -> None:
    out = request_stop(tiny)
    assert not out.ok and "no flywheel loop is running" in out.message
    assert not Workspace.at(tiny).stop_file.exists()


def test_failed_state_refuses_start_until_retried(tmp_path: Path) -> None:
    ws = failed_workspace(tmp_path / "ws")
    out = start_iteration(ws)
    assert not out.ok and "iteration 3 failed" in out.message and FAILED["error"] in out.message
    assert "Retry" in out.message and not (ws / "runs").exists()

    with FlywheelLock(ws):
        busy = retry_iteration(ws)
    assert not busy.ok and "cannot retry while a loop runs" in busy.message
    assert status(ws)["status"] == "failed"

    done = retry_iteration(ws)
    assert done.ok and "iteration 3" in done.message and "generate, tokenize" in done.message
    st = status(ws)
    assert st["status"] == "ready" and st["last_error"] is None
    assert st["current"]["stages_completed"] == ["generate", "tokenize"] and st["current"]["stage"] is None
    again = retry_iteration(ws)
    assert not again.ok and "nothing to retry: status is ready" in again.message


def test_crashed_and_done_states_refuse_start(tmp_path: Path) -> None:
    ws = failed_workspace(tmp_path / "ws")
    state = load_state(ws)
    state.status, state.last_error = "running", None  # its pid 999999 on another host, no lock: a dead loop
    save_state(ws, state)
    out = start_iteration(ws)
    assert not out.ok and "died" in out.message and "Retry" in out.message
    assert retry_iteration(ws).ok and status(ws)["status"] == "ready"

    state = load_state(ws)
    state.status, state.current = "done", None
    save_state(ws, state)
    out = start_iteration(ws)
    assert not out.ok and "done" in out.message and not (ws / "runs").exists()


def test_find_root_prefers_cwd_then_its_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = failed_workspace(tmp_path / "ws")
    books = ws / "notebooks"
    books.mkdir()
    assert find_root(start=books) == ws.resolve()
    assert find_root(start=ws) == ws.resolve()
    assert find_root(str(books)) == books.resolve()  # an explicit root is taken as given
    deeper = books / "sub"
    deeper.mkdir()
    assert find_root(start=deeper) == deeper.resolve()  # two levels up is not looked at
    monkeypatch.chdir(books)
    assert find_root() == ws.resolve()


def test_buttons_run_their_actions_and_show_the_outcome(tmp_path: Path) -> None:
    ws = failed_workspace(tmp_path / "ws")
    board = Dashboard(ws, live=True)
    try:
        assert set(board.buttons) == {"start", "stop", "retry"}
        board.buttons["start"].click()
        assert "iteration 3 failed" in board.message.value and "#b2182b" in board.message.value
        board.buttons["stop"].click()
        assert "nothing to stop" in board.message.value
        board.buttons["retry"].click()
        assert "ready: Start resumes iteration 3" in board.message.value and "#1a7f37" in board.message.value
        assert status(ws)["status"] == "ready"
    finally:
        board.stop()


def test_a_failing_action_is_reported_in_the_message_line(tmp_path: Path) -> None:
    ws = failed_workspace(tmp_path / "ws")
    board = Dashboard(ws, live=True)
    try:
        def broken(root: Path) -> None:
            raise OSError(f"disk full under {root}")

        out = board.run(broken)
        assert not out.ok and "OSError: disk full" in board.message.value
    finally:
        board.stop()


def test_a_message_stays_and_is_greyed_once_the_flywheel_moves_on(tmp_path: Path) -> None:
    """"already running" under a later "ready", or "started" under "crashed", would mislead; but the
    answer (a log path, say) must stay readable until the next click replaces it."""
    ws = failed_workspace(tmp_path / "ws")
    board = Dashboard(ws, live=True, interval=3600)  # refreshed by hand below, not by the thread
    try:
        board.buttons["stop"].click()
        assert "nothing to stop" in board.message.value and "forge-message-earlier" not in board.message.value
        board.panel.refresh()  # nothing changed: the answer stays as it was
        assert "nothing to stop" in board.message.value and "moved on" not in board.message.value
        retry_iteration(ws)  # someone else (a terminal, another notebook) moves the flywheel on
        board.panel.refresh()
        assert "nothing to stop" in board.message.value  # still readable...
        assert "forge-message-earlier" in board.message.value and "moved on since" in board.message.value  # ...marked
        board.buttons["retry"].click()  # the next click replaces it; an action's own change does not grey it
        assert "nothing to retry" in board.message.value and "nothing to stop" not in board.message.value
        assert "moved on" not in board.message.value
    finally:
        board.stop()


def test_a_button_answers_at_once_and_is_disabled_while_its_action_runs(tmp_path: Path) -> None:
    ws = failed_workspace(tmp_path / "ws")
    board = Dashboard(ws, live=True, interval=3600)
    try:
        seen: list[str] = []
        board.message.observe(lambda change: seen.append(change["new"]), "value")
        during: list[bool] = []
        real = board.run

        def run(action, working=None):
            def watched(root):
                during.append(all(b.disabled for b in board.buttons.values()))
                return action(root)
            return real(watched, working)

        board.run = run  # the click's callback calls it through the instance
        board.buttons["start"].click()
        assert len(seen) == 2 and "waiting for it to claim the iteration" in seen[0]  # before the action answered
        assert "iteration 3 failed" in seen[1]
        assert during == [True] and not any(b.disabled for b in board.buttons.values())
    finally:
        board.stop()


def test_a_refresh_leaves_the_parts_of_the_panel_it_did_not_change(tmp_path: Path) -> None:
    """While a loop runs, the heartbeat changes every refresh; the history (its folded legend, its
    commands to copy) must not be re-rendered, or the browser collapses and unselects it."""
    ws = failed_workspace(tmp_path / "ws")
    board = Dashboard(ws, live=True, interval=3600)
    try:
        writes: dict[str, int] = {name: 0 for name in board.panel.parts}
        for name, widget in board.panel.parts.items():
            widget.observe(lambda _c, n=name: writes.__setitem__(n, writes[n] + 1), "outputs")
        st = load_state(ws)  # the loop's heartbeat and stage move on
        st.current.heartbeat = "2025-01-01T00:06:00+00:00"
        st.current.stage = "evaluate"
        save_state(ws, st)
        board.panel.refresh()
        assert writes["status"] == 1 and writes["history"] == 0 and writes["plot"] == 0
        assert "what the columns mean" in shown_html(board.panel.parts["history"])
        assert writes["notice"] == 0  # a stage moving on is no news
        st.history = st.history[:1]  # the history changes: now its part is rendered again
        save_state(ws, st)
        board.panel.refresh()
        assert writes["history"] == 1
        add_note(ws, 1, "a note shows at once")  # so does a note
        board.panel.refresh()
        assert writes["history"] == 2 and "a note shows at once" in shown_html(board.panel.parts["history"])
    finally:
        board.stop()


def test_the_panel_gives_notice_when_an_iteration_is_recorded_or_fails(tmp_path: Path) -> None:
    """An iteration recorded while the panel is open: one line at its top saying so, its primary
    metric, and the flag with readable words when a tracked metric is worse than the best's; a
    failure says where. A panel opened afterwards shows no notice (the history has it)."""
    ws = failed_workspace(tmp_path / "ws")
    st = load_state(ws)
    last = st.history[-1]
    st.history = st.history[:-1]
    save_state(ws, st)
    board = Dashboard(ws, live=True, interval=3600)
    try:
        assert shown_html(board.panel.parts["notice"]) == ""
        st.history = [*st.history, last]  # the loop records it
        st.status = "ready"
        save_state(ws, st)
        board.panel.refresh()
        notice = shown_html(board.panel.parts["notice"])
        assert f"iteration {last.iteration} finished" in notice and "val Q-gap" in notice
        assert "forge-notice-flagged" in notice and flag_text(FAILED["flag"]) in html.unescape(notice)
        assert "forge-best-badge" in notice  # iteration 2 is the best, flagged all the same
        board.panel.refresh()  # nothing new: the notice stays as it is
        assert shown_html(board.panel.parts["notice"]) == notice
        st.status, st.last_error = "failed", "ValueError: boom"
        save_state(ws, st)
        board.panel.refresh()
        failed = shown_html(board.panel.parts["notice"])
        assert "forge-notice-failed" in failed and "failed" in failed and "ValueError: boom" in failed
    finally:
        board.stop()
    again = Dashboard(ws, live=True, interval=3600)
    try:
        assert shown_html(again.panel.parts["notice"]) == ""
    finally:
        again.stop()


def test_a_cell_ending_with_show_panel_shows_the_panel_once(tmp_path: Path) -> None:
    """05_explore and 06_compare end a cell with show_panel(...): its value must not be shown again."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ws = failed_workspace(tmp_path / "ws")
    shell = InteractiveShell.instance()
    with capture_output() as shown:
        ran = shell.run_cell(f"from forge.ui.panel import show_panel\nshow_panel({str(ws)!r}, live=False)")
    panels = [o for o in shown.outputs if 'class="forge-panel"' in o.data.get("text/html", "")]
    assert len(panels) == 1
    assert ran.result is None  # the cell's value, which a notebook would display again under it
