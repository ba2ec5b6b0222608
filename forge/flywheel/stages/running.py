"""Running a stage: reuse its recorded result while its inputs are unchanged, else do its work and record it.

Called again, a stage whose recorded result still matches its inputs returns it without redoing
the work, so a notebook stepped through by hand and then the loop record the same iteration once;
a changed input (config, upstream data, notebook code, forge version) reruns it, and ``force=True``
reruns it regardless. A past iteration is never recomputed silently: its stale stage says so and
keeps its recorded result unless forced.
"""

from __future__ import annotations

import os
import time
from typing import Any, TypeVar

from forge.commandline import FLYWHEEL
from forge.digests import DigestMemo
from forge.flywheel import provenance
from forge.flywheel.context import Context
from forge.flywheel.lock import lock_is_held
from forge.flywheel.progress import LOOP_ENV, StageProgress, ran_by, ran_in
from forge.flywheel.stages.base import Stage, StageOrderError, StageResult
from forge.flywheel.stages.fingerprint import digest, stage_status, viewed

R = TypeVar("R", bound=StageResult)


def _first_change(ctx: Context, stage: Stage, memo: DigestMemo) -> list[str]:
    """Why ``stage`` no longer matches its inputs, from the first stage up its chain that changed itself
    ("tokenize runs again first" says nothing about a recorded iteration, which never runs again)."""
    while stage.upstream is not None and not stage_status(ctx, stage.upstream, memo).done:
        stage = stage.upstream
    return [f"{stage.name}: {why}" for why in stage_status(ctx, stage, memo).reasons] or ["unknown"]


def run(stage: Stage[Any, R], ctx: Context, force: bool = False, **options: Any) -> R:
    """``stage`` for ``ctx``'s iteration: its recorded result if that still holds, else its work,
    recorded. ``options`` go to the stage's work (a notebook's live curve, say)."""
    memo = DigestMemo(ctx.ws.digests)
    try:
        status = stage_status(ctx, stage, memo)
        recorded = stage.read(ctx.ws, ctx.iteration)
        if ctx.is_past and recorded is not None:
            if force:
                raise StageOrderError(f"iteration {ctx.iteration} is recorded in history; redoing its {stage.name} "
                                      "stage would overwrite what the history, W&B and later iterations describe")
            if not status.done:  # a recorded iteration never runs again: say what moved on, not what would rerun
                since = "; ".join(_first_change(ctx, stage, memo))
                print(f"iteration {ctx.iteration} is recorded in history: showing its {stage.name} result as recorded "
                      f"(nothing runs again; the workspace has changed since: {since})")
            return recorded
        if not ctx.is_past and not os.environ.get(LOOP_ENV) and lock_is_held(ctx.ws.root):
            raise StageOrderError(f"a flywheel loop is running in {ctx.ws.root}: it runs iteration {ctx.iteration}'s "
                                  f"stages itself; stop it (`{FLYWHEEL} stop`) to step through them by hand")
        if status.fingerprint is None:
            up = stage.upstream.name if stage.upstream else "the stage before"
            why = "; ".join(status.reasons) or f"{up} has no result yet"
            before = stage_status(ctx, stage.upstream, memo) if stage.upstream is not None else None
            if before is not None and before.stale:  # it has one, made from other inputs than now
                raise StageOrderError(f"iteration {ctx.iteration}: the {up} result is stale ("
                                      f"{'; '.join(before.reasons)}): run the {up} stage again first")
            raise StageOrderError(f"iteration {ctx.iteration}: {why}: run the {up} stage first")
        if status.done and not force and recorded is not None:
            print(f"iteration {ctx.iteration} {stage.name}: already done (inputs unchanged, fingerprint "
                  f"{status.fingerprint})")
            return recorded
        if status.stale:
            print(f"iteration {ctx.iteration} {stage.name}: running again ({'; '.join(status.reasons)})")
        inputs = status.inputs
        seen = viewed(ctx, stage)
        start = time.perf_counter()  # the stage's work includes loading its libraries
        try:
            with StageProgress(ctx.ws, ctx.iteration, stage.name) as progress:
                result = stage.work(seen, seen.config, progress, memo, **options)
        except OSError as exc:
            if exc.filename is None and exc.errno is not None:  # e.g. a full disk inside a library's write
                where = stage.writes_under(ctx.ws, ctx.iteration)
                raise type(exc)(exc.errno, f"{exc.strerror} (while writing under it)", ctx.ws.rel(where)) from exc
            raise
        result.fingerprint = digest(inputs)
        result.inputs = inputs
        result.seconds = round(time.perf_counter() - start, 2)
        result.provenance = provenance.record(ctx.ws, stage.notebook, ctx.iteration)
        result.ran_by, result.ran_in = ran_by(), ran_in()
        stage.write(ctx.ws, ctx.iteration, result)
        return result
    finally:
        memo.save()
