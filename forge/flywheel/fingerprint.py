"""Stage results keyed on their inputs: a stage is "already done" only if nothing it used changed.

A stage's inputs are the configuration fields it reads, the fingerprint of the stage before it,
the digests of the data it reads (shard sha256s, the dataset's split checksums, the starting
checkpoint's sha256), the code cells of its notebook and the forge version. Their fingerprint is
stored with the stage's result (``runs/iter-NNNN/results/<stage>.json``). Before a stage runs,
the same inputs are gathered again: equal fingerprints (and outputs still on disk, unchanged)
mean the recorded result is reused; any difference reruns the stage, and since every stage's
inputs hold its upstream's fingerprint, everything downstream of a change reruns too.
:func:`stage_status` says which inputs changed, for ``status`` and the panel.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge import __version__
from forge.digests import DigestMemo
from forge.flywheel.context import Context
from forge.flywheel.paths import NOTEBOOKS, STAGE_NOTEBOOKS, Workspace
from forge.flywheel.records import STAGES

#: The configuration fields each stage reads (the single list: fingerprints and staleness use it).
READS: dict[str, tuple[str, ...]] = {
    "generate": ("hand_size", "golden_val_seeds", "golden_test_seeds", "golden_decls", "replay_iters"),
    "tokenize": ("hand_size", "samples_per_shard", "golden_samples_per_shard", "global_seed", "replay_iters"),
    "train": ("model", "epochs", "lr", "scratch_lr", "batch_size", "train_seed", "val_samples", "precision",
              "accelerator", "devices", "strategy", "num_nodes", "compile"),
    "evaluate": ("playout_deals", "accelerator"),
}
UPSTREAM: dict[str, str | None] = {"generate": None, "tokenize": "generate", "train": "tokenize",
                                   "evaluate": "train"}


def digest(value: Any) -> str:
    """Short, stable fingerprint of JSON-able data."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_cells(notebook: dict[str, Any]) -> list[str]:
    """A notebook's code cells (its JSON, read as is: nbformat's schema validation costs seconds to
    import) as the user wrote them, papermill's injected parameters left out."""
    out = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        out.append(("".join(src) if isinstance(src, list) else src).rstrip())
    return out


def read_notebook(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def notebook_sha256(stage: str) -> str:
    """sha256 of the stage notebook's code cells (outputs, metadata and markdown do not count)."""
    cells = code_cells(read_notebook(NOTEBOOKS / STAGE_NOTEBOOKS[stage]))
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def read_result(ws: Workspace, iteration: int, stage: str) -> dict[str, Any] | None:
    path = ws.results(iteration) / f"{stage}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged result is no result: the stage runs again
    return data if isinstance(data, dict) else None


def stage_inputs(ctx: Context, stage: str, memo: DigestMemo | None = None) -> dict[str, Any] | None:
    """What ``stage`` would read now; None while its upstream stage has no result."""
    own_memo = memo is None
    memo = memo or DigestMemo(ctx.ws.digests)
    inputs: dict[str, Any] = {
        "config": {k: getattr(ctx.config, k) for k in READS[stage]},
        "notebook": notebook_sha256(stage),
        "forge": __version__,
    }
    up_name = UPSTREAM[stage]
    up = read_result(ctx.ws, ctx.iteration, up_name) if up_name else None
    if up_name is not None:
        if up is None or "fingerprint" not in up:
            return None
        inputs["upstream"] = up["fingerprint"]
    if stage == "generate":
        inputs["seeds"] = ctx.seeds
        inputs["replay_seeds"] = ctx.replay_seeds()
    elif stage == "tokenize":
        inputs["shards"] = up["outputs"]["shards"]
    elif stage == "train":
        inputs["data"] = up["outputs"]["splits"].get("train")
        path, _, label = ctx.starting_point()
        inputs["start"] = {"from": label, "sha256": memo.sha256(path) if path and path.is_file() else None}
        if ctx.is_pretrain:
            inputs["pretrain"] = {"seeds": ctx.seeds, "chunk": ctx.state.pretrain.chunk,
                                  "samples_per_shard": ctx.config.samples_per_shard}
    elif stage == "evaluate":
        inputs["checkpoint"] = up["outputs"]["sha256"]
        tok = read_result(ctx.ws, ctx.iteration, "tokenize") or {}
        splits = (tok.get("outputs") or {}).get("splits") or {}
        inputs["data"] = {s: splits.get(s) for s in ("val", "test")}
    if own_memo:
        memo.save()
    return inputs


def outputs_intact(ctx: Context, stage: str, result: dict[str, Any], memo: DigestMemo) -> str | None:
    """Why a recorded result's outputs can no longer be trusted (gone or changed), else None."""
    out = result.get("outputs") or {}
    if stage == "generate":
        for rel, sha in (out.get("shards") or {}).items():
            path = ctx.ws.root / rel
            if not path.is_file():
                return f"shard {rel} is gone"
            if memo.sha256(path) != sha:
                return f"shard {rel} changed since it was generated"
    elif stage == "tokenize":
        from forge.ml.store import MANIFEST

        try:
            manifest = json.loads((ctx.ws.dataset / MANIFEST).read_text())
        except (OSError, ValueError):
            return "the tokenized dataset is gone"
        have = {s: (v or {}).get("checksums") for s, v in (manifest.get("splits") or {}).items()}
        if have != out.get("splits"):
            return "the tokenized dataset was rebuilt since"
    elif stage == "train":
        path = ctx.ws.root / str(out.get("checkpoint"))
        if not path.is_file():
            return f"checkpoint {out.get('checkpoint')} is gone"
        if memo.sha256(path) != out.get("sha256"):
            return f"checkpoint {out.get('checkpoint')} changed since it was trained"
    return None


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
    if where.startswith("config."):
        return [f"{where} {old!r} -> {new!r}"]
    return [f"{where.split('.')[0]} changed"]


@dataclass
class StageStatus:
    """Whether a stage's recorded result still holds for its current inputs, and if not, why."""

    stage: str
    done: bool
    fingerprint: str | None  # of the current inputs (None: upstream not done yet)
    recorded: str | None  # fingerprint of the recorded result, if any
    reasons: list[str] = field(default_factory=list)
    inputs: dict[str, Any] | None = None  # what the fingerprint was made of

    @property
    def stale(self) -> bool:
        """A result exists but no longer matches its inputs."""
        return self.recorded is not None and not self.done


def stage_status(ctx: Context, stage: str, memo: DigestMemo | None = None) -> StageStatus:
    """Whether ``stage``'s recorded result holds; a stage whose upstream must run again is not done
    either (its inputs are about to change), and says so."""
    own_memo = memo is None
    memo = memo or DigestMemo(ctx.ws.digests)
    try:
        result = read_result(ctx.ws, ctx.iteration, stage)
        recorded = (result or {}).get("fingerprint")
        up = UPSTREAM[stage]
        if up is not None:
            before = stage_status(ctx, up, memo)
            if not before.done:
                why = f"{up} must run first" if before.recorded is None else f"{up} runs again first"
                return StageStatus(stage, False, None, recorded, [why] if result else [])
        inputs = stage_inputs(ctx, stage, memo)
        if inputs is None:
            return StageStatus(stage, False, None, recorded, [f"{up} has not run"] if result else [])
        fp = digest(inputs)
        if result is None:
            return StageStatus(stage, False, fp, None, inputs=inputs)
        if recorded != fp:
            reasons = _changes(result.get("inputs") or {}, inputs) or ["recorded before fingerprints existed"]
            return StageStatus(stage, False, fp, recorded, reasons, inputs)
        broken = outputs_intact(ctx, stage, result, memo)
        return StageStatus(stage, broken is None, fp, recorded, [broken] if broken else [], inputs)
    finally:
        if own_memo:
            memo.save()


def iteration_status(ctx: Context) -> list[StageStatus]:
    """Every stage's status for the context's iteration, in order."""
    memo = DigestMemo(ctx.ws.digests)
    try:
        return [stage_status(ctx, s, memo) for s in STAGES]
    finally:
        memo.save()
