"""The stages of an iteration, one module each, in the order they run.

Each stage module (:mod:`.generate`, :mod:`.tokenize`, :mod:`.train`, :mod:`.evaluate`) holds
everything about its stage: its notebook, the stage before it, the configuration fields it reads,
what else it reads, whether its outputs are intact, its work and its typed result; its ``run``
is what the stage notebook calls. :data:`REGISTRY` is the list the loop, ``status`` and the
panels walk. What a stage is: :mod:`.base`; when it is already done: :mod:`.fingerprint`; how a
run reuses or records its result: :mod:`.running`.
"""

from __future__ import annotations

import os
from typing import get_args

from forge.digests import DigestMemo
from forge.flywheel import context as _context
from forge.flywheel.context import Context
from forge.flywheel.paths import Workspace, find_root
from forge.flywheel.records import StageName
from forge.flywheel.stages import evaluate, generate, tokenize, train
from forge.flywheel.stages.base import Stage
from forge.flywheel.stages.fingerprint import StageStatus, stage_status
from forge.flywheel.state import State, load_state

#: Every stage, by name, in the order an iteration runs them.
REGISTRY: dict[str, Stage] = {s.name: s for s in (generate.STAGE, tokenize.STAGE, train.STAGE, evaluate.STAGE)}
if tuple(REGISTRY) != get_args(StageName):  # state.yaml's schema names the same stages, in this order
    raise ImportError(f"the stage registry {tuple(REGISTRY)} and records.StageName {get_args(StageName)} differ")

__all__ = ["REGISTRY", "Stage", "context", "evaluate", "generate", "iteration_status", "later", "stage_status",
           "tokenize", "train"]


def later(name: str) -> list[str]:
    """The stage ``name`` and every stage after it."""
    names = list(REGISTRY)
    return names[names.index(name):]


def context(root: str | os.PathLike | None = None, iteration: int | None = None, no_wandb: bool = False,
            progress: bool = True, stage: str | None = None, state: State | None = None) -> Context:
    """The iteration a stage notebook works on: :func:`forge.flywheel.context.context`, where a
    ``stage`` with a default of its own (evaluate: the last finished iteration while nothing is
    trained for the next) chooses the iteration when none is given."""
    chooser = REGISTRY[stage].default_iteration if stage is not None else None
    if iteration is None and chooser is not None:
        ws = Workspace.at(find_root(root))
        state = state or load_state(ws.root)
        iteration = chooser(ws, state)
    return _context.context(root, iteration, no_wandb=no_wandb, progress=progress, state=state)


def iteration_status(ctx: Context) -> list[StageStatus]:
    """Every stage's status for the context's iteration, in order."""
    memo = DigestMemo(ctx.ws.digests)
    try:
        return [stage_status(ctx, s, memo) for s in REGISTRY.values()]
    finally:
        memo.save()
