"""Stages stepped through by hand: who ran a stage, in which notebook, and its place in the archive.

A stage records in its result who ran it (``ran_by``: the loop, or a person) and, run by hand,
the notebook it ran in when the kernel knows it (``ran_in``: :func:`forge.flywheel.progress.origin`).
When the loop then records the iteration, such a stage is "already done" and :func:`archive` gives
it its archive under ``archive/iter-NNNN/``:

- the person's own executed notebook, copied as it was saved, when it shows this very result
  (its outputs hold the result's fingerprint: the notebook ran, or re-showed, this stage);
- otherwise (not saved since, run by papermill elsewhere or from a script) the loop executes the
  stage notebook itself: the stage returns the recorded result without redoing the work, and the
  notebook shows it. Its note says so, and why the person's notebook was not used.

Either way the note at its top says it was run by hand and how long the stage's work took (the
``seconds`` the stage recorded), and the iteration lists the stage in ``by_hand``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from forge.flywheel.archive_header import add_header
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import LoopKernel, OnNotebook, execute_stage
from forge.flywheel.stages.base import Stage, StageResult


def shows(notebook: Path, text: str) -> bool:
    """Whether any output of ``notebook`` contains ``text``."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            parts = [out.get("text", "")] + list((out.get("data") or {}).values())
            for part in parts:
                joined = "".join(part) if isinstance(part, list) else part
                if isinstance(joined, str) and text in joined:
                    return True
    return False


def user_notebook(ws: Workspace, result: StageResult) -> tuple[Path | None, str]:
    """The person's executed notebook for this result, or None and why it cannot be used."""
    if not result.ran_in:
        return None, "the kernel did not say which notebook it ran in (papermill or a script)"
    path = Path(result.ran_in)
    if not path.is_file():
        return None, f"its notebook {ws.rel(path)} is gone"
    if not result.fingerprint or not shows(path, result.fingerprint):
        return None, f"its notebook {ws.rel(path)}, as saved, does not show this result (not saved since it ran?)"
    return path, ""


@dataclass(frozen=True)
class Archived:
    notebook: Path
    by_hand: bool
    how: str  # a few words for the loop's output


def took(result: StageResult) -> str:
    if result.seconds is None:
        return "its duration was not recorded"
    return f"the stage's work took {result.seconds:.1f} s"


def archive(ws: Workspace, stage: Stage, iteration: int, result: StageResult, kernel: LoopKernel, no_wandb: bool,
            attempt: int, on_notebook: OnNotebook | None = None) -> Archived:
    """The archive of a stage whose result the loop found done (see the module's docstring);
    ``on_notebook`` gets the archived notebook, as :func:`forge.flywheel.runner.execute_stage`'s does."""
    dest = ws.archive(iteration) / stage.notebook
    if result.ran_by == "loop":  # the loop ran it and stopped before recording it
        if dest.is_file():
            return Archived(dest, False, f"the loop's own run, {ws.rel(dest)}")
        done = execute_stage(ws, stage, iteration, kernel, no_wandb, attempt, on_notebook, note=[
            "run by the loop, whose notebook was not kept; this copy was executed by the loop afterwards and "
            "shows the recorded result (the work was not redone)", took(result)])
        return Archived(done.notebook, False, f"shown again from its result -> {ws.rel(done.notebook)}")
    source, why = user_notebook(ws, result)
    if source is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        add_header(dest, ws.root / "archive", [f"iteration {iteration}", f"stage {stage.name}",
                                             f"run by hand in {ws.rel(source)}: the notebook as it was saved there",
                                             took(result)], source=source)
        if on_notebook is not None:
            on_notebook(dest)
        return Archived(dest, True, f"by hand; its notebook {ws.rel(source)} -> {ws.rel(dest)}")
    done = execute_stage(ws, stage, iteration, kernel, no_wandb, attempt, on_notebook, note=[
        f"run by hand; {why}, so this copy was executed by the loop, which showed the recorded result without "
        "redoing the work", took(result)])
    return Archived(done.notebook, True, f"by hand; shown again from its result -> {ws.rel(done.notebook)}")
