"""The loop in this process, its stages run by a fake stage runner: each stage's own function (what its
notebook calls) called here instead of a papermill kernel executing the notebook, the archived notebook
a stub. For tests of what the loop does around a stage (records, failures, stops, times, integrity),
where a subprocess and a kernel prove nothing; the real notebook path keeps its own end-to-end tests.
``before(stage, attempt)`` runs before each stage: a test's fault goes there (raise, interrupt, kill)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import nbformat

from forge.flywheel import stages
from forge.flywheel.by_hand import Archived
from forge.flywheel.loop import run_loop
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import KERNEL_ENV, Executed, OnNotebook, StageFailed
from forge.flywheel.stages.base import Stage, StageResult

Before = Callable[[Stage, int], None]


def _stub(path: Path, text: str, printed: str = "") -> Path:
    """A notebook standing for the executed one: a note, and what the stage printed as a cell's output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = nbformat.v4.new_code_cell("# the stage, run in-process", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=printed)])
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text), cell]), path)
    return path


class InProcessRunner:
    """A :class:`forge.flywheel.stage_runner.StageRunner` calling ``stages.<name>.run`` in this process,
    in the loop kernel's environment (so results say the loop ran them)."""

    def __init__(self, ws: Workspace, no_wandb: bool, before: Before | None = None):
        self.ws, self.no_wandb, self.before = ws, no_wandb, before
        self.ran: list[str] = []  # the stages run, in order
        self._env = contextlib.ExitStack()

    def __enter__(self) -> InProcessRunner:
        saved = {k: os.environ.get(k) for k in KERNEL_ENV}
        os.environ.update(KERNEL_ENV)
        self._env.callback(lambda: [os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
                                    for k, v in saved.items()])
        return self

    def __exit__(self, *exc: object) -> None:
        self._env.close()

    def run(self, stage: Stage, iteration: int, attempt: int, on_notebook: OnNotebook | None) -> Executed:
        if self.before is not None:
            self.before(stage, attempt)
        self.ran.append(stage.name)
        ctx = stages.context(self.ws.root, iteration, no_wandb=self.no_wandb, progress=False)
        printed = io.StringIO()  # what the stage prints: in its archived notebook and its log, as papermill keeps it
        try:
            with contextlib.redirect_stdout(printed):
                getattr(stages, stage.name).run(ctx)
        except Exception as exc:  # what papermill reports of a cell that raised; the attempt's notebook kept
            kept = _stub(self.ws.attempt(iteration, attempt) / stage.notebook,
                         f"stage {stage.name} failed attempt {attempt} (in-process test runner)", printed.getvalue())
            if on_notebook is not None:
                on_notebook(kept)
            raise StageFailed(stage.name, f"cell 2: {type(exc).__name__}: {exc}", kept, 2, type(exc).__name__) from None
        finally:
            log = self.ws.stage_log(iteration, stage.name)
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(printed.getvalue())
        done = _stub(self.ws.archive(iteration) / stage.notebook, f"stage {stage.name} (in-process test runner)",
                     printed.getvalue())
        if on_notebook is not None:
            on_notebook(done)
        return Executed(stage.name, done)

    def show(self, stage: Stage, iteration: int, result: StageResult, attempt: int,
             on_notebook: OnNotebook | None) -> Archived:
        dest = _stub(self.ws.archive(iteration) / stage.notebook, f"stage {stage.name} shown (in-process)")
        return Archived(dest, result.ran_by == "hand", "shown in-process")

    def stop(self) -> None:
        pass


def run_in_process(ws: Path, before: Before | None = None, **kwargs) -> tuple[int, list[str], InProcessRunner]:
    """``run_loop`` on ``ws`` (once, no W&B) with an :class:`InProcessRunner`: its exit code, what it said
    and the runner (which stages it ran)."""
    said: list[str] = []
    made: list[InProcessRunner] = []

    def runner(w: Workspace, no_wandb: bool) -> InProcessRunner:
        made.append(InProcessRunner(w, no_wandb, before))
        return made[-1]

    kwargs = {"once": True, "no_wandb": True, **kwargs}
    code = run_loop(ws, say=said.append, runner=runner, **kwargs)
    return code, said, made[0] if made else InProcessRunner(Workspace.at(ws), True)


def by_hand_here(ws: Path, *names: str) -> None:
    """Run stages of the next iteration in this process as a person does in their notebooks (the stage's
    ``run``; its result says it ran by hand), what the stage prints not shown."""
    ctx = stages.context(ws, progress=False, no_wandb=True)
    with contextlib.redirect_stdout(io.StringIO()):
        for name in names:
            getattr(stages, name).run(ctx)
