"""Stage results keyed on their inputs: a stage is "already done" only if nothing it used changed.

A stage's inputs are the configuration fields it declares (its :class:`~.base.ConfigView`), the
fingerprint of the stage before it, what its own ``inputs`` function reads (shard sha256s, the
dataset's split checksums, the starting checkpoint's sha256), the code cells of its notebook and
the forge version. Their fingerprint is stored with the stage's result. Before a stage runs, the
same inputs are gathered again: equal fingerprints (and outputs still on disk, unchanged) mean the
recorded result is reused; any difference reruns the stage, and since every stage's inputs hold
its upstream's fingerprint, everything downstream of a change reruns too. :func:`stage_status`
says which inputs changed, for ``status`` and the panel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from forge import __version__
from forge.digests import DigestMemo
from forge.flywheel.config import FIELD_SECTION
from forge.flywheel.context import Context
from forge.flywheel.provenance import notebook_sha256
from forge.flywheel.stages.base import Stage


def digest(value: Any) -> str:
    """Short, stable fingerprint of JSON-able data."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def viewed(ctx: Context, stage: Stage) -> Context:
    """``ctx`` as ``stage``'s code sees it: its configuration cut down to the stage's declared fields."""
    return dataclasses.replace(ctx, config=stage.view(ctx.config))


def stage_inputs(ctx: Context, stage: Stage, memo: DigestMemo | None = None) -> dict[str, Any] | None:
    """What ``stage`` would read now; None while its upstream stage has no result."""
    own_memo = memo is None
    memo = memo or DigestMemo(ctx.ws.digests)
    seen = viewed(ctx, stage)
    inputs: dict[str, Any] = {
        "config": seen.config.fingerprinted(),
        "notebook": notebook_sha256(stage.notebook),
        "forge": __version__,
    }
    up = None
    if stage.upstream is not None:
        up = stage.upstream.read(ctx.ws, ctx.iteration)
        if up is None or up.fingerprint is None:
            return None
        inputs["upstream"] = up.fingerprint
    inputs.update(stage.inputs(seen, seen.config, up, memo))
    if own_memo:
        memo.save()
    return inputs


def _changes(old: Any, new: Any, where: str = "") -> list[str]:
    """Readable differences between two input records."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _changes(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        return found
    if old == new:
        return []
    labels = {"notebook": "the stage notebook's code changed", "upstream": "the stage before it ran again",
              "forge": f"forge {old} -> {new}"}
    if where in labels:
        return [labels[where]]
    if where.startswith("config."):  # the record keeps flat names; the user reads the file's sections
        name = where.removeprefix("config.")
        return [f"config.{FIELD_SECTION.get(name, '?')}.{name} {old!r} -> {new!r}"]
    return [f"{where.split('.')[0]} changed"]


@dataclasses.dataclass
class StageStatus:
    """Whether a stage's recorded result still holds for its current inputs, and if not, why."""

    stage: str
    done: bool
    fingerprint: str | None  # of the current inputs (None: upstream not done yet)
    recorded: str | None  # fingerprint of the recorded result, if any
    reasons: list[str] = dataclasses.field(default_factory=list)
    inputs: dict[str, Any] | None = None  # what the fingerprint was made of

    @property
    def stale(self) -> bool:
        """A result exists but no longer matches its inputs."""
        return self.recorded is not None and not self.done


def stage_status(ctx: Context, stage: Stage, memo: DigestMemo | None = None) -> StageStatus:
    """Whether ``stage``'s recorded result holds; a stage whose upstream must run again is not done
    either (its inputs are about to change), and says so."""
    own_memo = memo is None
    memo = memo or DigestMemo(ctx.ws.digests)
    try:
        result = stage.read(ctx.ws, ctx.iteration)
        recorded = result.fingerprint if result is not None else None
        up = stage.upstream
        if up is not None:
            before = stage_status(ctx, up, memo)
            if not before.done:
                why = f"{up.name} must run first" if before.recorded is None else f"{up.name} runs again first"
                return StageStatus(stage.name, False, None, recorded, [why] if result is not None else [])
        inputs = stage_inputs(ctx, stage, memo)
        if inputs is None:
            why = [f"{up.name} has not run"] if result is not None and up is not None else []
            return StageStatus(stage.name, False, None, recorded, why)
        fp = digest(inputs)
        if result is None:
            return StageStatus(stage.name, False, fp, None, inputs=inputs)
        if recorded != fp:
            reasons = _changes(result.inputs or {}, inputs) or ["recorded before fingerprints existed"]
            return StageStatus(stage.name, False, fp, recorded, reasons, inputs)
        broken = stage.intact(viewed(ctx, stage), result, memo)
        return StageStatus(stage.name, broken is None, fp, recorded, [broken] if broken else [], inputs)
    finally:
        if own_memo:
            memo.save()
