"""The train stage (``03_train``): fine-tune from the previous iteration's checkpoint (else the baseline,
else from scratch) on this iteration's train split (its own deals and the replay window's); the kept
checkpoint is copied to a stable path. With a budget (``train_samples`` or ``train_seconds``) it
trains that much and keeps the last weights; with ``lr_horizon`` the model follows one LR schedule
across iterations, its optimiser state carried along (:mod:`forge.ml.schedule`).
In a pretraining workspace, iteration 0 trains a baseline from scratch over many deals instead,
streamed a chunk at a time (:func:`pretrain`).

To give training a new setting: add a field to :class:`forge.ml.settings.TrainingSection` and use it
in :func:`forge.ml.training.train`. This stage reads the whole training and hardware sections and
hands them to ``train`` as they are, so the field reruns the stage when changed; mark it in
:class:`TrainConfig`'s ``added`` (with why) if its default does what training did before, so that
recorded results keep their fingerprints. A new input that is not configuration (a file it reads,
earlier iterations' data) goes into :func:`inputs` with its digest.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from forge.atomic import atomic_write
from forge.digests import DigestMemo
from forge.flywheel import integrity
from forge.flywheel.context import Context
from forge.flywheel.progress import StageProgress
from forge.flywheel.stages import running, tokenize
from forge.flywheel.stages.base import ConfigView, Stage, StageResult
from forge.flywheel.stages.fitting import TrainSettings, fit

_PRETRAIN = "pretraining only, which solves and tokenizes its own chunks"


class TrainConfig(ConfigView):
    reads = ("training", "hardware")
    added = {"train_samples": "training budgets", "train_seconds": "training budgets",
             "lr_horizon": "the continuing schedule", "value_weight": "the heads' loss weights",
             "q_weight": "the heads' loss weights", "policy_states": "the states the policy's loss counts"}
    # Read by pretraining only. Its deals' hand size and tokenizer seed are those generate and tokenize ran
    # with (their fingerprints are this stage's upstream); its sample count is in the inputs' pretrain
    # section; its executor does not change a shard.
    untracked = {
        "hand_size": _PRETRAIN + ": generate's fingerprint holds it",
        "global_seed": _PRETRAIN + ": tokenize's fingerprint holds it",
        "samples_per_shard": _PRETRAIN + ": recorded in the inputs' pretrain section",
        "executor": _PRETRAIN + ": every executor writes byte-identical shards",
        "ray_address": _PRETRAIN + ": the shards are the same whichever cluster solves them",
    }


class PretrainSummary(BaseModel):
    seeds: int
    chunks: int
    chunk: int
    samples: int
    peak_bytes: int


class TrainOutputs(BaseModel):
    checkpoint: str  # the kept checkpoint, under runs/iter-NNNN/
    sha256: str


class TrainResult(StageResult):
    checkpoint: str
    started_from: str  # "iteration N", "baseline" or "scratch"
    resume: str | None = None
    lr: float
    pretrain: PretrainSummary | None = None
    metrics_csv: str
    metrics_csvs: list[str] | None = None  # pretraining: one per chunk
    train_metrics: dict[str, float] = Field(default_factory=dict)
    kept_epoch: int | None = None  # numbered from 1
    kept_reason: str
    samples: int | None = None  # trained on in this iteration
    samples_seen: int | None = None  # by the kept weights, over every iteration that trained them
    train_seconds: float | None = None  # wall-clock of the training run itself (the stage's work less its setup)
    continuing: bool = False  # went on with the previous weights' optimiser state and schedule
    outputs: TrainOutputs


def inputs(ctx: Context, cfg: TrainConfig, upstream: tokenize.TokenizeResult, memo: DigestMemo) -> dict[str, Any]:
    path, label = ctx.starting_point()
    found: dict[str, Any] = {
        "data": upstream.outputs.splits.get("train"),
        "start": {"from": label, "sha256": memo.sha256(path) if path and path.is_file() else None},
    }
    if ctx.is_pretrain:
        found["pretrain"] = {"seeds": ctx.seeds, "chunk": ctx.state.pretrain.chunk,
                             "samples_per_shard": cfg.data.samples_per_shard}
    return found


def intact(ctx: Context, result: TrainResult, memo: DigestMemo) -> str | None:
    path = ctx.ws.root / result.outputs.checkpoint
    if not path.is_file():
        return f"checkpoint {result.outputs.checkpoint} is gone"
    if memo.sha256(path) != result.outputs.sha256:
        return f"checkpoint {result.outputs.checkpoint} changed since it was trained"
    return None


def settings(ctx: Context, cfg: TrainConfig, *, data: Path, run_dir: Path, resume: Path | None,
             from_scratch: bool, pretraining: bool = False) -> TrainSettings:
    """This iteration's training run: the configuration's training and hardware sections as they are, with
    the run's own seed (``train_seed + iteration``) and, when resuming, the checkpoint's architecture.
    A pretraining chunk trains its epochs at the scratch rate, without a budget or a val subset."""
    update: dict[str, Any] = {"train_seed": cfg.training.train_seed + ctx.iteration}
    if resume is not None:
        update["model"] = None
    if pretraining:
        update.update(train_samples=None, train_seconds=None, lr_horizon=None, val_samples=None)
    training = cfg.training.model_copy(update=update)
    return TrainSettings(data=data, run_dir=run_dir, training=training, hardware=cfg.hardware, resume=resume,
                         from_scratch=from_scratch, progress=ctx.progress,
                         continuing=training.lr_horizon is not None and resume is not None)


def starting_point(ctx: Context, cfg: TrainConfig) -> tuple[Path | None, bool, str]:
    """Where training starts (:meth:`Context.starting_point`), whether at the scratch rate, and a label:
    under a continuing schedule (``lr_horizon``) every iteration has the same peak, scratch_lr for a
    flywheel that started from scratch and lr for one that started from a baseline or pretraining."""
    resume, origin = ctx.starting_point()
    from_scratch = resume is None
    if cfg.training.lr_horizon is not None:
        from_scratch = ctx.state.baseline_checkpoint is None and ctx.state.pretrain is None
    return resume, from_scratch, origin


def per_epoch(metrics_csv: Path, metric: str) -> dict[int, float]:
    """``metric`` per epoch (numbered from 0, as Lightning logs them) from a run's metrics.csv."""
    found: dict[int, float] = {}
    try:
        with metrics_csv.open() as fh:
            for row in csv.DictReader(fh):
                if row.get(metric) and row.get("epoch"):
                    found[int(float(row["epoch"]))] = float(row[metric])
    except OSError:
        return {}
    return found


def _copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fh:
        atomic_write(dst, lambda out: shutil.copyfileobj(fh, out))


def work(ctx: Context, cfg: TrainConfig, progress: StageProgress, memo: DigestMemo,
         callbacks: Sequence[Any] = ()) -> TrainResult:
    from forge.ml.training import BEST_METRIC, best_epoch

    if ctx.is_pretrain:
        return pretrain(ctx, cfg, progress, memo, callbacks)
    resume, from_scratch, origin = starting_point(ctx, cfg)
    previous = ctx.previous()
    if resume is not None and previous is not None and origin == f"iteration {previous.iteration}":
        integrity.check_start(ctx.ws, previous, resume)  # exactly the weights it recorded, or no training
    tokenized = tokenize.STAGE.read(ctx.ws, ctx.iteration)
    problem = integrity.split_problem(ctx.ws.dataset, "train", tokenized.outputs.splits.get("train") if tokenized
                                      else None, memo, whose="tokenize stage's recorded train")
    if problem:
        raise integrity.IntegrityError(f"{problem}: not trained on; `retry` tokenizes it again")
    run_dir = ctx.ws.run_dir(ctx.iteration)
    run = settings(ctx, cfg, data=ctx.ws.dataset, run_dir=run_dir / "train", resume=resume,
                   from_scratch=from_scratch)
    training = run.training
    lr = training.peak_lr(from_scratch)
    print(f"training from {origin}" + (f" ({ctx.ws.rel(resume)})" if resume else "")
          + (f", going on with its optimiser and LR schedule (peak {lr:g} over {training.lr_horizon:,} samples)"
             if run.continuing else f" at lr {lr:g}")
          + (f", for {training.train_samples:,} samples" if training.train_samples else "")
          + (f", for {training.train_seconds:g} s" if training.train_seconds else ""))
    started = time.perf_counter()
    res = fit(run, progress, callbacks)
    trained_s = round(time.perf_counter() - started, 2)
    stable = run_dir / "model.ckpt"
    _copy(res.best_checkpoint or res.last_checkpoint, stable)
    scores = per_epoch(res.metrics_csv, BEST_METRIC)
    epoch = best_epoch(scores)
    if training.budgeted:
        epoch = None
        budget = f"{training.train_samples:,} samples" if training.train_samples else f"{training.train_seconds:g} s"
        val = res.metrics.get(BEST_METRIC)
        reason = (f"the last weights: a training budget ({budget}) keeps where training stands"
                  + (", the next iteration going on from them" if training.lr_horizon else "")
                  + (f"; val Q-gap {val:.4f} on {training.val_samples or 'all'} golden val samples"
                     if val is not None else ""))
    elif res.best_checkpoint and epoch is not None:
        reason = (f"lowest val Q-gap on {'all' if training.val_samples is None else training.val_samples} golden val "
                  f"samples: {scores[epoch]:.4f} (epochs: "
                  + ", ".join(f"{e + 1}: {v:.4f}" for e, v in sorted(scores.items())) + ")")
    else:
        reason = "the last epoch (no validation split to choose by)"
    return TrainResult(
        checkpoint=ctx.ws.rel(stable), started_from=origin, resume=ctx.ws.rel(resume) if resume else None, lr=lr,
        metrics_csv=ctx.ws.rel(res.metrics_csv),
        train_metrics={k: round(v, 5) for k, v in res.metrics.items() if math.isfinite(v)},
        kept_epoch=epoch + 1 if epoch is not None else None, kept_reason=reason,
        samples=res.samples, samples_seen=res.samples_seen, train_seconds=trained_s, continuing=run.continuing,
        outputs=TrainOutputs(checkpoint=ctx.ws.rel(stable), sha256=memo.sha256(stable)),
    )


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def pretrain(ctx: Context, cfg: TrainConfig, progress: StageProgress, memo: DigestMemo,
             callbacks: Sequence[Any]) -> TrainResult:
    """Iteration 0: train a baseline from scratch over many deals, ``chunk`` deals at a time.

    Each chunk is solved, tokenized (into its own cache), trained on from the previous chunk's
    weights at the scratch LR (its own warm-up and cosine: a warm restart per chunk), and then its
    shards, tokens and older checkpoints are deleted, so disk use is bounded by one chunk whatever
    the number of deals. Every shard can be regenerated from its seed.
    """
    from forge.ml.store import build_dataset
    from forge.oracle.deal import train_decl
    from forge.oracle.generate import generate as solve_all

    pre = ctx.state.pretrain
    assert pre is not None
    chunks = [ctx.seeds[i:i + pre.chunk] for i in range(0, len(ctx.seeds), pre.chunk)]
    work_dir = ctx.ws.run_dir(ctx.iteration) / "pretrain"
    shard_dir = ctx.ws.shards(cfg.data.hand_size)
    checkpoint: Path | None = None
    peak, samples, csvs = 0, 0, []
    for k, part in enumerate(chunks, 1):
        label = f"chunk {k}/{len(chunks)} (seeds {part[0]}..{part[-1]})"
        progress.update(phase=f"{label}: solving", done=k - 1, total=len(chunks), force=True)
        shards = [r.path for r in solve_all([(s, train_decl(s)) for s in part], shard_dir, cfg.data.hand_size,
                                            progress=False, executor=cfg.hardware.executor,
                                            ray_address=cfg.hardware.ray_address)]
        progress.update(phase=f"{label}: tokenizing", force=True)
        data, cache = work_dir / "data", work_dir / "cache"
        stats = build_dataset({"train": shards}, data, cfg.data.samples_per_shard, cfg.data.global_seed,
                              cache_dir=cache, progress=False)
        samples += stats.counts["train"]
        peak = max(peak, _tree_size(work_dir) + sum(p.stat().st_size for p in shards))
        for p in shards:
            p.unlink()
        shutil.rmtree(cache)
        progress.update(phase=f"{label}: training", force=True)
        res = fit(settings(ctx, cfg, data=data, run_dir=work_dir / f"chunk-{k:03d}", resume=checkpoint,
                           from_scratch=True, pretraining=True), progress, callbacks)
        peak = max(peak, _tree_size(work_dir))
        latest = work_dir / "latest.ckpt"
        _copy(res.last_checkpoint, latest)
        checkpoint = latest
        shutil.rmtree(data)
        shutil.rmtree(res.last_checkpoint.parent)  # the chunk's checkpoints; its metrics.csv stays
        csvs.append(ctx.ws.rel(res.metrics_csv))
        print(f"{label}: {stats.counts['train']:,} samples, train loss {res.metrics.get('train/loss_epoch', 0):.4f}")
    stable = ctx.ws.run_dir(ctx.iteration) / "model.ckpt"
    assert checkpoint is not None
    os.replace(checkpoint, stable)
    return TrainResult(
        checkpoint=ctx.ws.rel(stable), started_from="scratch", resume=None, lr=cfg.training.peak_lr(True),
        pretrain=PretrainSummary(seeds=len(ctx.seeds), chunks=len(chunks), chunk=pre.chunk, samples=samples,
                                 peak_bytes=peak),
        metrics_csv=csvs[-1], metrics_csvs=csvs, kept_epoch=None,
        kept_reason="the last chunk's last epoch (pretraining keeps every chunk's learning)",
        outputs=TrainOutputs(checkpoint=ctx.ws.rel(stable), sha256=memo.sha256(stable)),
    )


STAGE: Stage[TrainConfig, TrainResult] = Stage(
    name="train", notebook="03_train.ipynb", upstream=tokenize.STAGE, config=TrainConfig, result=TrainResult,
    inputs=inputs, intact=intact, work=work, writes_under=lambda ws, iteration: ws.run_dir(iteration),
    prefetch_alongside=True,
)


def run(ctx: Context, force: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Fine-tune on this iteration's train split (or pretrain); ``callbacks`` are extra Lightning
    callbacks (a notebook's live curve, say)."""
    return running.run(STAGE, ctx, force, callbacks=callbacks)
