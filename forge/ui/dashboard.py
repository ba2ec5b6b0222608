"""The status dashboard (``notebooks/00_status.ipynb``): the live panel plus Start / Stop / Retry buttons.

The buttons only call the functions here, and those only do what the CLI does: start one iteration
in a detached loop through :func:`forge.flywheel.loop.start_in_background` (so the loop outlives the
notebook's kernel; it runs :mod:`forge.ui.background`), touch the stop file the loop checks between
stages, or run :func:`forge.flywheel.loop.retry`. Each returns
an :class:`Outcome` whose message the dashboard shows under the buttons; nothing here needs a
browser, so tests call them directly.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.commandline import FLYWHEEL
from forge.flywheel.loop import START_WAIT_SECONDS, Refusal, start_in_background
from forge.flywheel.paths import Workspace, find_root
from forge.flywheel.progress import SESSION_ENV
from forge.flywheel.state import StateError, load_state
from forge.ui import background
from forge.ui.interactive import command


@dataclass(frozen=True)
class Outcome:
    """What a button did: ``ok`` False means it refused (or failed) and ``message`` says why."""

    ok: bool
    message: str
    pid: int | None = None
    log: Path | None = None


def _child_env() -> dict[str, str]:
    """The kernel's environment minus its inline matplotlib backend, which means nothing outside a kernel,
    and minus the name of the dashboard's own notebook (JupyterLab's SESSION_ENV: the loop is not it)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.pop(SESSION_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _refused(refusal: Refusal) -> str:
    """Why Start did nothing, in the dashboard's words (its buttons, not the CLI's commands)."""
    if refusal.kind == "running":
        return (f"not started: a flywheel loop is already running here ({refusal.detail}); use Stop to end it after "
                "its current stage")
    if refusal.kind == "failed":
        return f"not started: iteration {refusal.iteration} failed ({refusal.detail}); fix the cause, then press Retry"
    if refusal.kind == "crashed":
        return f"not started: the loop running iteration {refusal.iteration} died; press Retry first"
    return ("not started: the flywheel is done (its stop condition is met); raise config.stop_* in state.yaml and "
            "set status: ready to go on")


def start_iteration(root: str | os.PathLike, wait: float = START_WAIT_SECONDS) -> Outcome:
    """Start one iteration in a detached background loop; refuse if one runs or the state needs a retry.

    The loop runs in its own session, so it keeps going when the kernel that started it is restarted
    or shut down; its output goes to ``runs/loop-<UTC time>.log``. The call returns once the loop has
    claimed the iteration in state.yaml (or has exited), so "started" is only said of a loop that
    really holds the workspace.
    """
    try:
        started = start_in_background(root, background, env=_child_env(), wait=wait)
    except StateError as exc:
        return Outcome(False, f"not started: {exc}")
    if isinstance(started, Refusal):
        return Outcome(False, _refused(started))
    log = Workspace.at(root).rel(started.log)
    if started.exit_code is not None:
        return Outcome(False, f"the loop exited at once (exit code {started.exit_code}): {_log_tail(started.log)}; "
                              f"log {log}", started.pid, started.log)
    note = "" if started.claimed else f" (it has not claimed the iteration after {wait:.0f}s; check the log)"
    return Outcome(True, f"started iteration {started.iteration} in the background (pid {started.pid}){note}; "
                         f"log {log}", started.pid, started.log)


def request_stop(root: str | os.PathLike) -> Outcome:
    """Ask the running loop to stop before its next stage; refused (and no stop file left) when none runs."""
    from forge.flywheel.loop import FlywheelError
    from forge.flywheel.loop import request_stop as stop

    try:
        stop(root)
    except FlywheelError:
        return Outcome(False, "nothing to stop: no flywheel loop is running here")
    return Outcome(True, "stop requested: the loop stops after its current stage (the panel then shows ready)")


def retry_iteration(root: str | os.PathLike) -> Outcome:
    """failed or crashed -> ready, keeping the iteration's finished stages (Start then resumes it)."""
    from forge.flywheel.loop import FlywheelError, retry

    ws = Workspace.at(root)
    try:
        retry(str(ws.root))
        state = load_state(ws.root)
    except (FlywheelError, StateError) as exc:
        return Outcome(False, f"not retried: {exc}")
    done = ", ".join(state.current.stages_completed) if state.current else ""
    return Outcome(True, f"ready: Start resumes iteration {state.iteration} (stages kept: {done or 'none'})")


ACTIONS: dict[str, tuple[str, str, str, Callable[[str | os.PathLike], Outcome]]] = {
    # name: (button label, icon, tooltip, action)
    "start": ("Start one iteration", "play", "run one iteration in the background (--once)", start_iteration),
    "stop": ("Stop after stage", "stop", "the running loop stops after its current stage", request_stop),
    "retry": ("Retry", "redo", "mark a failed or crashed iteration ready again", retry_iteration),
}
#: What a button says the moment it is pressed, before its action answers (Start waits for the loop's claim).
WORKING = {
    "start": f"starting a loop: waiting for it to claim the iteration (up to {START_WAIT_SECONDS:.0f} s)...",
    "stop": "asking the loop to stop...",
    "retry": "marking the iteration ready again...",
}


def outcome_html(outcome: Outcome, at: str | None = None, earlier: bool = False) -> str:
    """The message line: the outcome, at the time it was given; ``earlier``: the flywheel has moved on
    since, so it is greyed and says so (kept readable, e.g. its log path, until the next click replaces it)."""
    colour = "#777" if earlier else "#1a7f37" if outcome.ok else "#b2182b"
    when = f" (at {at})" if at else ""
    note = "; the flywheel has moved on since: the panel above is current" if earlier else ""
    css = "forge-message forge-message-earlier" if earlier else "forge-message"
    return (f'<div class="{css}" style="color:{colour};font:13px/1.5 system-ui,sans-serif">'
            f"{html.escape(outcome.message + when + note)}</div>")


def working_html(text: str) -> str:
    return (f'<div class="forge-message forge-working" style="color:#555;font:13px/1.5 system-ui,sans-serif">'
            f"{html.escape(text)}</div>")


def save_note(root: str | os.PathLike, iteration: int, text: str) -> Outcome:
    """The note box's action: :func:`forge.flywheel.notes.add_note`, its refusal as the message."""
    from forge.flywheel.notes import NOTES_FILE, NotesError, add_note

    try:
        kept = add_note(root, iteration, text)
    except (NotesError, StateError) as exc:
        return Outcome(False, f"note not kept: {exc}")
    from forge.ui.loop_hooks import on_record

    on_record(root)  # the archive index shows the notes
    return Outcome(True, f"iteration {iteration}: note kept in {NOTES_FILE}" if kept
                   else f"iteration {iteration}: note cleared")


def loop_command_html(root: Path) -> str:
    """The loop as a terminal runs it, to copy (the Start button runs one iteration of it)."""
    return (f'<div class="forge-loop-command" style="font:12px/1.5 system-ui,sans-serif;color:#555">or from a '
            f"terminal, continuous: {command(f'{FLYWHEEL} --root {root}')}</div>")


def commands_html(root: Path) -> str:
    """What the buttons do, as commands: shown where no live kernel is (archived or headless runs)."""
    where = str(root)
    rows = [("start one iteration", f"{FLYWHEEL} --once --root {where}"),
            ("stop after stage", f"{FLYWHEEL} stop --root {where}"), ("retry", f"{FLYWHEEL} retry --root {where}")]
    items = "".join(f"<li>{label}: {command(cmd)}</li>" for label, cmd in rows)
    style = "font:12px/1.5 system-ui,sans-serif"
    return f'<div class="forge-commands" style="{style}">From a terminal:<ul>{items}</ul></div>'


class Dashboard:
    """The panel plus, when live, one button per action and a message line for their outcomes."""

    def __init__(self, root: str | os.PathLike | None = None, live: bool | None = None,
                 interval: float | None = None):
        from forge.ui.panel import REFRESH_SECONDS, Panel

        self.root = find_root(root)
        self.panel = Panel(self.root, live=live, interval=interval or REFRESH_SECONDS)
        self.live = self.panel.live
        self.buttons: dict[str, Any] = {}
        self.message: Any = None
        self.controls: Any = None
        if self.live:
            import ipywidgets as widgets

            self.message = widgets.HTML(value="")
            for name, (label, icon, tooltip, action) in ACTIONS.items():
                button = widgets.Button(description=label, icon=icon, tooltip=tooltip,
                                        layout=widgets.Layout(width="auto"))
                button.on_click(lambda _b, act=action, nm=name: self.run(act, WORKING[nm]))
                self.buttons[name] = button
            from forge.ui.panel import show_html

            loop = widgets.Output()
            show_html(loop, loop_command_html(self.root))
            history = self.panel.snap.history
            self.note_iteration = widgets.BoundedIntText(
                value=history[-1]["iteration"] if history else 0, min=0, max=10**9, description="note on",
                layout=widgets.Layout(width="9em"), style={"description_width": "initial"})
            self.note_text = widgets.Text(placeholder='e.g. "lr too high #sweep" (empty: clear)',
                                          layout=widgets.Layout(width="28em"))
            self.note_button = widgets.Button(description="Keep note", icon="sticky-note",
                                              tooltip=f'kept in notes.jsonl, as `{FLYWHEEL} note N "text"` does')
            self.note_button.on_click(lambda _b: self.run(
                lambda root: save_note(root, self.note_iteration.value, self.note_text.value)))
            notes = widgets.HBox([self.note_iteration, self.note_text, self.note_button]).add_class("forge-notes")
            self.controls = widgets.VBox([widgets.HBox(list(self.buttons.values())), self.message, loop, notes])
        self._last: tuple[Outcome, str] | None = None

    def run(self, action: Callable[[str | os.PathLike], Outcome], working: str | None = None) -> Outcome:
        """Run an action and show its outcome; widget callbacks swallow exceptions, so show those too.

        The click is answered at once (``working``, the buttons disabled while the action runs: Start
        waits for the loop to claim the iteration). The outcome then stays, with its time, until the
        next click replaces it; once the flywheel's state moves on it is greyed and says so (a
        "started" under a later "crashed" badge would mislead, but its log path must stay readable).
        """
        if self.message is not None and working:
            self.message.value = working_html(working)
        for button in self.buttons.values():
            button.disabled = True
        try:
            outcome = action(self.root)
        except Exception as exc:  # noqa: BLE001 - a click must always answer in the message line
            outcome = Outcome(False, f"error: {type(exc).__name__}: {exc}")
        finally:
            for button in self.buttons.values():
                button.disabled = False
        self.panel.on_change = None  # the action's own state change is what the message reports
        self.panel.refresh()
        self._last = (outcome, dt.datetime.now().strftime("%H:%M:%S"))
        if self.message is not None:
            self.message.value = outcome_html(outcome, self._last[1])
        self.panel.on_change = self._mark_earlier
        return outcome

    def _mark_earlier(self, _snap: dict[str, Any]) -> None:
        if self.message is not None and self._last is not None:
            self.message.value = outcome_html(*self._last, earlier=True)

    def display(self) -> None:
        from IPython.display import HTML, display

        display(self.panel)
        display(self.controls if self.controls is not None else HTML(commands_html(self.root)))

    def stop(self) -> None:
        """End the panel's refresh thread."""
        self.panel.stop()


def dashboard(root: str | os.PathLike | None = None, live: bool | None = None) -> Dashboard | None:
    """Display the dashboard for the workspace at ``root`` (see :func:`find_root`) and return it.

    Without a usable state.yaml it shows why and how to make one instead, and returns None.
    """
    from IPython.display import HTML, display

    try:
        board = Dashboard(root, live=live)
    except StateError as exc:
        where = html.escape(str(find_root(root)))
        display(HTML(f'<div class="forge-error" style="color:#b2182b">no usable workspace: '
                     f"{html.escape(str(exc))}<br>create one with <code>{FLYWHEEL} init --preset quick "
                     f"--wandb-group NAME --root {where}</code></div>"))
        return None
    board.display()
    return board
