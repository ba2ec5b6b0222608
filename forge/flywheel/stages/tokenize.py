"""The tokenize stage (``02_tokenize``): one dataset for training and evaluation. Train is this
iteration's shards plus the window of ``replay_iters`` earlier iterations' deals, sampled among
``train_states``; val/test the golden sets. Only shards not yet in the token cache are tokenized:
the window's deals come from the cache by the digests their iterations recorded (their shards are
released once recorded), and a deal whose tokens are not cached at this sampling is solved again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from forge.digests import DigestMemo
from forge.errors import ForgeError
from forge.flywheel import integrity
from forge.flywheel.context import Context
from forge.flywheel.paths import Workspace
from forge.flywheel.progress import StageProgress
from forge.flywheel.stages import generate, running
from forge.flywheel.stages.base import ConfigView, Stage, StageOrderError, StageResult

_VIA_GENERATE = "which golden deals exist is generate's, whose fingerprint this stage's inputs hold"


class TokenizeConfig(ConfigView):
    reads = ("hand_size", "samples_per_shard", "golden_samples_per_shard", "global_seed", "replay_iters",
             "train_states")
    added = {"train_states": "training-state selection"}
    untracked = {
        "golden_val_seeds": _VIA_GENERATE, "golden_test_seeds": _VIA_GENERATE, "golden_decls": _VIA_GENERATE,
        "executor": "where a window deal is solved again: every executor writes byte-identical shards",
        "ray_address": "which Ray cluster solves it: the shards are the same",
    }


#: A split's checksums (``{"tokens": "sha256:...", ...}``) as the dataset's manifest records them.
Checksums = dict[str, str]


class TokenizeOutputs(BaseModel):
    splits: dict[str, Checksums | None] = Field(default_factory=dict)


class TokenizeResult(StageResult):
    train_samples: int = 0
    val_samples: int = 0
    test_samples: int = 0
    replay_seeds: list[int] = Field(default_factory=list)
    tokenized_shards: int = 0
    cached_shards: int = 0
    splits_rewritten: list[str] = Field(default_factory=list)
    outputs: TokenizeOutputs = Field(default_factory=TokenizeOutputs)


def window(ctx: Context) -> dict[str, str]:
    """The replay window's training shards (workspace path -> sha256), as the iterations that solved
    them recorded them; a deal without a record (solved before results were kept) has no digest here
    and is read from its shard, solved again if need be."""
    found: dict[str, str] = {}
    wanted = {ctx.ws.rel(ctx.shard(s)) for s in ctx.replay_seeds()}
    for entry in ctx.window():  # its deals were solved by these iterations (or again by a later one of them)
        recorded = generate.STAGE.read(ctx.ws, entry.iteration)
        if recorded is not None:
            found.update({rel: sha for rel, sha in recorded.outputs.shards.items() if rel in wanted})
    return dict(sorted(found.items()))


def cache_ahead(ws: Workspace, cfg: TokenizeConfig, shard: Path) -> bool:
    """Tokenize a shard solved ahead of its iteration (the loop's prefetch) into the token cache at the
    sampling this stage will ask for, so that it finds the states cached; True when it tokenized."""
    from forge.ml.store import tokenize_to_cache

    data = cfg.data
    return tokenize_to_cache(shard, ws.token_cache, data.samples_per_shard, data.global_seed, data.train_states)


def inputs(ctx: Context, cfg: TokenizeConfig, upstream: generate.GenerateResult, memo: DigestMemo) -> dict[str, Any]:
    found: dict[str, Any] = {"shards": upstream.outputs.shards}
    if ctx.replay_seeds():
        found["window"] = window(ctx)
    return found


def _checksums(manifest: dict[str, Any]) -> dict[str, Checksums | None]:
    return {s: (v or {}).get("checksums") for s, v in manifest["splits"].items()}


def intact(ctx: Context, result: TokenizeResult, memo: DigestMemo) -> str | None:
    from forge.ml.store import read_manifest

    try:
        have = _checksums(read_manifest(ctx.ws.dataset))
    except ForgeError:
        return "the tokenized dataset is gone"
    if have != result.outputs.splits:
        return "the tokenized dataset was rebuilt since"
    for split, sums in result.outputs.splits.items():  # the arrays themselves, not only the manifest's word
        problem = integrity.split_problem(ctx.ws.dataset, split, sums, memo, whose="recorded")
        if problem:
            return problem.replace(str(ctx.ws.root) + "/", "")
    return None


def _drop_unvouched(ctx: Context, memo: DigestMemo) -> None:
    """Delete a split on disk whose arrays are not what vouches for them (the golden sets' pin; this
    iteration's recorded train split), so that the build writes it again from the token cache rather
    than keeping it because its manifest says so (a manifest can be rewritten with the arrays)."""
    import shutil

    pin = integrity.current_pin(ctx.state, ctx.config)
    recorded = STAGE.read(ctx.ws, ctx.iteration)
    want = {s: pin.splits.get(s) for s in integrity.GOLDEN_SPLITS} if pin else {}
    want["train"] = recorded.outputs.splits.get("train") if recorded is not None else None
    for split, sums in want.items():
        problem = integrity.split_problem(ctx.ws.dataset, split, sums, memo, whose="recorded")
        if problem and (ctx.ws.dataset / split).is_dir():
            print(f"{problem.replace(str(ctx.ws.root) + '/', '')}: rebuilding the {split} split")
            shutil.rmtree(ctx.ws.dataset / split)


def _window_sources(ctx: Context, cfg: TokenizeConfig, progress: StageProgress) -> list[Any]:
    """The window's deals as the store takes them: a shard on disk, a digest whose tokens are cached
    at this sampling, or (neither) a shard solved again from its seed."""
    from forge.ml.store import Cached, usable_entry
    from forge.oracle.deal import train_decl
    from forge.oracle.generate import generate as solve_all

    recorded = window(ctx)
    sources: list[Any] = []
    again: list[int] = []
    for seed in ctx.replay_seeds():
        path = ctx.shard(seed)
        sha = recorded.get(ctx.ws.rel(path))
        if path.is_file():
            sources.append(path)
        elif sha and usable_entry(ctx.ws.token_cache, sha, cfg.data.samples_per_shard, cfg.data.global_seed,
                                  cfg.data.train_states):  # a corrupt entry is removed: the deal is solved again
            sources.append(Cached(path, sha))
        else:
            sources.append(path)
            again.append(seed)
    if again:
        progress.update(phase="solving window deals again", detail=f"{len(again)} deal(s) not cached at this "
                        "sampling", force=True)
        print(f"window: {len(again)} deal(s) not in the token cache at this sampling; solving them again")
        for _ in solve_all([(s, train_decl(s)) for s in again], ctx.ws.shards(cfg.data.hand_size), cfg.data.hand_size,
                           progress=False, executor=cfg.hardware.executor, ray_address=cfg.hardware.ray_address):
            pass
    return sources


def work(ctx: Context, cfg: TokenizeConfig, progress: StageProgress, memo: DigestMemo) -> TokenizeResult:
    from forge.ml.store import build_dataset, read_manifest

    missing = [p for p in ctx.train_shards if not p.is_file()]
    if missing:
        raise StageOrderError(f"shard {missing[0]} is missing: run the generate stage again")
    train = [] if ctx.is_pretrain else ctx.train_shards + _window_sources(ctx, cfg, progress)
    _drop_unvouched(ctx, memo)
    progress.update(phase="tokenizing", detail="new shards are tokenized, the rest come from the cache", force=True)
    # One dataset for train and eval: golden splits keep their own sampling rate and, unchanged
    # from one iteration to the next, are left untouched on disk. Pretraining tokenizes its deals
    # chunk by chunk in the train stage.
    splits = {"val": ctx.golden_shards("val"), "test": ctx.golden_shards("test")}
    counts = {"val": cfg.evaluation.golden_samples_per_shard, "test": cfg.evaluation.golden_samples_per_shard}
    if train:
        splits, counts = {"train": train, **splits}, {"train": cfg.data.samples_per_shard, **counts}
    stats = build_dataset(splits, ctx.ws.dataset, counts, cfg.data.global_seed, cache_dir=ctx.ws.token_cache,
                          progress=ctx.progress, selection={"train": cfg.data.train_states} if train else None)
    return TokenizeResult(
        train_samples=stats.counts.get("train", 0), val_samples=stats.counts["val"], test_samples=stats.counts["test"],
        replay_seeds=ctx.replay_seeds(), tokenized_shards=len(stats.tokenized), cached_shards=len(stats.cached),
        splits_rewritten=stats.splits_written,
        outputs=TokenizeOutputs(splits=_checksums(read_manifest(ctx.ws.dataset))),
    )


STAGE: Stage[TokenizeConfig, TokenizeResult] = Stage(
    name="tokenize", notebook="02_tokenize.ipynb", upstream=generate.STAGE, config=TokenizeConfig,
    result=TokenizeResult, inputs=inputs, intact=intact, work=work, writes_under=lambda ws, iteration: ws.root / "data",
    pin_golden=lambda ws, state, result: integrity.pin_golden_splits(ws, state, result.outputs.splits),
)


def run(ctx: Context, force: bool = False) -> TokenizeResult:
    """Tokenize only shards not yet cached; train = this iteration (+ replay), val/test = golden."""
    return running.run(STAGE, ctx, force)
