"""The generate stage (``01_generate``): golden val/test shards on first need and this iteration's
training shards, solved exactly by the oracle. (The replay window's deals were solved by their own
iterations; the tokenize stage reads their states from the token cache.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from forge.digests import DigestMemo
from forge.flywheel import integrity
from forge.flywheel.context import Context
from forge.flywheel.progress import StageProgress
from forge.flywheel.stages import running
from forge.flywheel.stages.base import ConfigView, Stage, StageResult


class GenerateConfig(ConfigView):
    # replay_iters is not read since the window's deals come from the token cache; kept so that recorded
    # fingerprints hold.
    reads = ("hand_size", "golden_val_seeds", "golden_test_seeds", "golden_decls", "replay_iters")
    untracked = {
        "executor": "where deals are solved: every executor writes byte-identical shards",
        # with the fields above, the golden sets' identity (their pin: integrity.golden_key); no shard depends on them
        "golden_samples_per_shard": "how golden shards are sampled, not which are solved",
        "global_seed": "the tokenizer's seed: solving does not read it",
        "ray_address": "which Ray cluster solves them: the shards are the same",
        "keep_shards": "whether the loop deletes the training shards once the iteration is recorded: "
                       "the shards written are the same",
    }


class SolvedShard(BaseModel):
    split: str  # golden | train
    seed: int
    decl: int
    rows: int
    seconds: float
    kept: bool  # already on disk and verified: not solved again


class GenerateOutputs(BaseModel):
    shards: dict[str, str] = Field(default_factory=dict)  # workspace path -> sha256


class GenerateResult(StageResult):
    written: int = 0
    kept: int = 0
    shards: list[SolvedShard] = Field(default_factory=list)
    golden_written: int = 0
    golden_kept: int = 0
    golden_states: int = 0
    train_written: int = 0
    train_kept: int = 0
    train_states: int = 0
    train_shards: list[str] = Field(default_factory=list)
    replay_seeds: list[int] = Field(default_factory=list)
    outputs: GenerateOutputs = Field(default_factory=GenerateOutputs)


def inputs(ctx: Context, cfg: GenerateConfig, upstream: None, memo: DigestMemo) -> dict[str, Any]:
    return {"seeds": ctx.seeds, "replay_seeds": ctx.replay_seeds()}


def released(ctx: Context) -> set[Path]:
    """The training shards the loop deleted on purpose once ``ctx``'s iteration was recorded (keep_shards:
    golden, see ``forge.flywheel.loop.release_shards``): their tokens stay cached, nothing runs again."""
    if not ctx.is_past or ctx.config.data.keep_shards != "golden":
        return set()
    return {ctx.shard(seed) for seed in ctx.seeds + ctx.replay_seeds()}


def intact(ctx: Context, result: GenerateResult, memo: DigestMemo) -> str | None:
    gone_on_purpose = released(ctx)
    for rel, sha in result.outputs.shards.items():
        path = ctx.ws.root / rel
        if not path.is_file():
            if path in gone_on_purpose:
                continue
            return f"shard {rel} is gone"
        if memo.sha256(path) != sha:
            return f"shard {rel} changed since it was generated"
    return None


def _drop_unpinned(ctx: Context, memo: DigestMemo) -> None:
    """Delete a golden shard whose content is not the pinned one, so that it is solved again: a shard's
    own metadata can be kept while its values change, so only the pin tells."""
    pin = integrity.current_pin(ctx.state, ctx.config)
    for rel, sha in (pin.shards if pin else {}).items():
        path = ctx.ws.root / rel
        if path.is_file() and memo.sha256(path) != sha:
            print(f"{rel} is not the golden shard pinned for this workspace (sha256 {sha[:12]}...): solving it again")
            path.unlink()


def work(ctx: Context, cfg: GenerateConfig, progress: StageProgress, memo: DigestMemo,
         workers: int | None = None) -> GenerateResult:
    from tqdm.auto import tqdm

    from forge.oracle.deal import train_decl
    from forge.oracle.generate import generate as solve_all

    groups = (
        ("golden", "golden val/test deals", ctx.golden_jobs(), ctx.ws.golden(cfg.data.hand_size)),
        # pretraining streams its deals through the train stage, a chunk at a time
        ("train", "training deals", [] if ctx.is_pretrain else [(s, train_decl(s)) for s in ctx.seeds],
         ctx.ws.shards(cfg.data.hand_size)),
    )
    _drop_unpinned(ctx, memo)
    summary: dict[str, Any] = {"written": 0, "kept": 0, "shards": []}
    shards: dict[str, str] = {}
    for name, what, jobs, out in groups:
        # each group counts its own deals, and says which group it is before its first deal finishes
        progress.update(phase=what, done=0, total=len(jobs), force=True,
                        detail=f"{len(jobs)} {what} to solve (or keep, where a verified shard exists)")
        # tqdm.auto: a widget in a notebook (not text on a red stderr background), text in a terminal
        bar = tqdm(total=len(jobs), unit="deal", desc=what, disable=not ctx.progress or not jobs)
        written = kept = states = done = 0
        for r in solve_all(jobs, out, cfg.data.hand_size, workers=None if cfg.hardware.executor == "ray" else workers,
                           progress=False, executor=cfg.hardware.executor, ray_address=cfg.hardware.ray_address):
            done += 1
            bar.update()
            written += not r.skipped
            kept += r.skipped
            states += r.rows
            progress.update(done=done, detail=f"last: seed {r.seed} decl {r.decl_id} "
                                              f"({'kept' if r.skipped else f'solved in {r.seconds:.1f} s'})")
            if r.note:
                print(f"{r.path.name}: {r.note}")
            summary["shards"].append(SolvedShard(split=name, seed=r.seed, decl=r.decl_id, rows=r.rows,
                                                 seconds=round(r.seconds, 3), kept=r.skipped))
            shards[ctx.ws.rel(r.path)] = memo.sha256(r.path)
        bar.close()
        summary[f"{name}_written"], summary[f"{name}_kept"], summary[f"{name}_states"] = written, kept, states
        summary["written"] += written
        summary["kept"] += kept
    return GenerateResult(**summary, train_shards=[ctx.ws.rel(p) for p in ctx.train_shards],
                          replay_seeds=ctx.replay_seeds(), outputs=GenerateOutputs(shards=dict(sorted(shards.items()))))


STAGE: Stage[GenerateConfig, GenerateResult] = Stage(
    name="generate", notebook="01_generate.ipynb", upstream=None, config=GenerateConfig, result=GenerateResult,
    inputs=inputs, intact=intact, work=work, writes_under=lambda ws, iteration: ws.root / "data",
    pin_golden=lambda ws, state, result: integrity.pin_golden_shards(ws, state, result.outputs.shards),
)


def run(ctx: Context, force: bool = False, workers: int | None = None) -> GenerateResult:
    """Golden val/test shards (first time only) and this iteration's training shards."""
    return running.run(STAGE, ctx, force, workers=workers)
