"""How the loop runs a stage: :class:`NotebookRunner` executes its notebook with papermill in the
loop's one kernel (:mod:`forge.flywheel.runner`). The loop takes any :class:`StageRunner`, so that
tests of what the loop does around a stage (records, failures, stops, times) can run it in-process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from forge.flywheel import by_hand
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import Executed, LoopKernel, OnNotebook, execute_stage
from forge.flywheel.stages.base import Stage, StageResult


class StageRunner(Protocol):
    """Runs stages for one loop; entered for the loop's lifetime."""

    def __enter__(self) -> StageRunner: ...

    def __exit__(self, *exc: object) -> None: ...

    def run(self, stage: Stage, iteration: int, attempt: int, on_notebook: OnNotebook | None) -> Executed:
        """Run the stage (its result written), its notebook archived; StageFailed if it raised."""

    def show(self, stage: Stage, iteration: int, result: StageResult, attempt: int,
             on_notebook: OnNotebook | None) -> by_hand.Archived:
        """Archive a stage found done (by hand, or by a loop that stopped before recording it)."""

    def stop(self) -> None:
        """Stop anything still running for the stage (after a failure or an interruption)."""


#: Makes the runner of a loop on a workspace (the loop's ``no_wandb`` given): NotebookRunner, or a test's.
RunnerFactory = Callable[[Workspace, bool], StageRunner]


class NotebookRunner:
    """The stage notebooks, executed by papermill in one kernel kept for the loop's lifetime."""

    def __init__(self, ws: Workspace, no_wandb: bool):
        self.ws, self.no_wandb = ws, no_wandb
        self.kernel = LoopKernel(ws)

    def __enter__(self) -> NotebookRunner:
        self.kernel.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kernel.__exit__(*exc)

    def run(self, stage: Stage, iteration: int, attempt: int, on_notebook: OnNotebook | None) -> Executed:
        return execute_stage(self.ws, stage, iteration, self.kernel, self.no_wandb, attempt=attempt,
                             on_notebook=on_notebook)

    def show(self, stage: Stage, iteration: int, result: StageResult, attempt: int,
             on_notebook: OnNotebook | None) -> by_hand.Archived:
        return by_hand.archive(self.ws, stage, iteration, result, self.kernel, self.no_wandb, attempt=attempt,
                               on_notebook=on_notebook)

    def stop(self) -> None:
        self.kernel.stop()

