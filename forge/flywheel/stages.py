"""The four stages of an iteration, as functions the stage notebooks call.

Each stage records its result as JSON under ``runs/iter-NNNN/results/<stage>.json`` together
with the fingerprint of its inputs (:mod:`forge.flywheel.fingerprint`). Called again, a stage
whose recorded result still matches its inputs returns it without redoing the work, so a
notebook stepped through by hand and then the loop record the same iteration once; a changed
input (config, upstream data, notebook code, forge version) reruns it, and ``force=True``
reruns it regardless. A past iteration is never recomputed silently: its stale stage says so
and keeps its recorded result unless forced.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write, atomic_write_text
from forge.digests import DigestMemo
from forge.errors import ForgeError
from forge.flywheel import by_hand, provenance
from forge.flywheel.context import Context, context
from forge.flywheel.fingerprint import UPSTREAM, digest, read_result, stage_status
from forge.flywheel.lock import lock_is_held
from forge.flywheel.progress import LOOP_ENV, StageProgress
from forge.flywheel.quiet import quiet_lightning
from forge.flywheel.records import HIGHER_IS_BETTER, PRIMARY_METRIC, TRACKED, best_of, better, metric_label, to_plain
from forge.flywheel.state import RUN

__all__ = ["HIGHER_IS_BETTER", "Context", "context", "evaluate", "generate", "read_result", "tokenize", "train"]


class StageOrderError(ForgeError):
    """A stage was asked for before the stage it depends on has a result."""


class StageError(ForgeError):
    """A stage could not do its work (the message says what failed)."""


def write_result(ctx: Context, stage: str, result: dict[str, Any]) -> Path:
    """Atomically record a stage's result for the loop."""
    return atomic_write_text(ctx.ws.results(ctx.iteration) / f"{stage}.json",
                             json.dumps(result, indent=2, default=str))


def _run(ctx: Context, stage: str, work: Callable[[StageProgress, DigestMemo], dict[str, Any]],
         force: bool) -> dict[str, Any]:
    """Reuse the recorded result if its fingerprint still holds, else do ``work`` and record it."""
    memo = DigestMemo(ctx.ws.digests)
    try:
        status = stage_status(ctx, stage, memo)
        recorded = read_result(ctx.ws, ctx.iteration, stage)
        if ctx.is_past and recorded is not None:
            if force:
                raise StageOrderError(f"iteration {ctx.iteration} is recorded in history; redoing its {stage} stage "
                                      "would overwrite what the history, W&B and later iterations describe")
            if not status.done:
                print(f"iteration {ctx.iteration} {stage} is stale ({'; '.join(status.reasons)}); showing its "
                      "recorded result, which history keeps.")
            return recorded
        if not ctx.is_past and not os.environ.get(LOOP_ENV) and lock_is_held(ctx.ws.root):
            raise StageOrderError(f"a flywheel loop is running in {ctx.ws.root}: it runs iteration {ctx.iteration}'s "
                                  f"stages itself; stop it (`{RUN} stop`) to step through them by hand")
        if status.fingerprint is None:
            why = "; ".join(status.reasons) or f"{UPSTREAM[stage]} has no result yet"
            raise StageOrderError(f"iteration {ctx.iteration}: {why}: run the {UPSTREAM[stage]} stage first")
        if status.done and not force:
            print(f"iteration {ctx.iteration} {stage}: already done (inputs unchanged, fingerprint "
                  f"{status.fingerprint})")
            return recorded or {}
        if status.stale:
            print(f"iteration {ctx.iteration} {stage}: running again ({'; '.join(status.reasons)})")
        inputs = status.inputs
        start = time.perf_counter()  # the stage's work includes loading its libraries
        try:
            with StageProgress(ctx.ws, ctx.iteration, stage) as progress:
                result = work(progress, memo)
        except OSError as exc:
            if exc.filename is None and exc.errno is not None:  # e.g. a full disk inside a library's write
                where = ctx.ws.run_dir(ctx.iteration) if stage in ("train", "evaluate") else ctx.ws.root / "data"
                raise type(exc)(exc.errno, f"{exc.strerror} (while writing under it)", ctx.ws.rel(where)) from exc
            raise
        result.update(fingerprint=digest(inputs), inputs=inputs, seconds=round(time.perf_counter() - start, 2),
                      provenance=to_plain(provenance.record(ctx.ws, stage, ctx.iteration)), **by_hand.origin())
        write_result(ctx, stage, result)
        return result
    finally:
        memo.save()


# ---------------------------------------------------------------------------------------------- generate


def generate(ctx: Context, force: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Golden val/test shards (first time only), this iteration's training shards and its replay shards."""

    def work(progress: StageProgress, memo: DigestMemo) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from forge.oracle.deal import train_decl
        from forge.oracle.generate import generate as solve_all

        cfg = ctx.config
        groups = (
            ("golden", "golden val/test deals", ctx.golden_jobs(), ctx.ws.golden(cfg.hand_size)),
            # pretraining streams its deals through the train stage, a chunk at a time
            ("train", "training deals",
             [] if ctx.is_pretrain else [(s, train_decl(s)) for s in ctx.seeds + ctx.replay_seeds()],
             ctx.ws.shards(cfg.hand_size)),
        )
        summary: dict[str, Any] = {"written": 0, "kept": 0, "shards": []}
        shards: dict[str, str] = {}
        for name, what, jobs, out in groups:
            # each group counts its own deals, and says which group it is before its first deal finishes
            progress.update(phase=what, done=0, total=len(jobs), force=True,
                            detail=f"{len(jobs)} {what} to solve (or keep, where a verified shard exists)")
            # tqdm.auto: a widget in a notebook (not text on a red stderr background), text in a terminal
            bar = tqdm(total=len(jobs), unit="deal", desc=what, disable=not ctx.progress or not jobs)
            written = kept = states = done = 0
            for r in solve_all(jobs, out, cfg.hand_size, workers=None if cfg.executor == "ray" else workers,
                               progress=False, executor=cfg.executor, ray_address=cfg.ray_address):
                done += 1
                bar.update()
                written += not r.skipped
                kept += r.skipped
                states += r.rows
                progress.update(done=done, detail=f"last: seed {r.seed} decl {r.decl_id} "
                                                  f"({'kept' if r.skipped else f'solved in {r.seconds:.1f} s'})")
                if r.note:
                    print(f"{r.path.name}: {r.note}")
                summary["shards"].append({"split": name, "seed": r.seed, "decl": r.decl_id, "rows": r.rows,
                                          "seconds": round(r.seconds, 3), "kept": r.skipped})
                shards[ctx.ws.rel(r.path)] = memo.sha256(r.path)
            bar.close()
            summary[f"{name}_written"], summary[f"{name}_kept"], summary[f"{name}_states"] = written, kept, states
            summary["written"] += written
            summary["kept"] += kept
        summary["train_shards"] = [ctx.ws.rel(p) for p in ctx.train_shards]
        summary["replay_seeds"] = ctx.replay_seeds()
        summary["outputs"] = {"shards": dict(sorted(shards.items()))}
        return summary

    return _run(ctx, "generate", work, force)


# ---------------------------------------------------------------------------------------------- tokenize


def tokenize(ctx: Context, force: bool = False) -> dict[str, Any]:
    """Tokenize only shards not yet cached; train = this iteration (+ replay), val/test = golden."""

    def work(progress: StageProgress, memo: DigestMemo) -> dict[str, Any]:
        from forge.ml.store import build_dataset

        cfg = ctx.config
        train = [] if ctx.is_pretrain else ctx.train_shards + [ctx.shard(s) for s in ctx.replay_seeds()]
        missing = [p for p in train if not p.is_file()]
        if missing:
            raise StageOrderError(f"shard {missing[0]} is missing: run the generate stage again")
        progress.update(phase="tokenizing", detail="new shards are tokenized, the rest come from the cache",
                        force=True)
        # One dataset for train and eval: golden splits keep their own sampling rate and, unchanged
        # from one iteration to the next, are left untouched on disk. Pretraining tokenizes its deals
        # chunk by chunk in the train stage.
        splits = {"val": ctx.golden_shards("val"), "test": ctx.golden_shards("test")}
        counts = {"val": cfg.golden_samples_per_shard, "test": cfg.golden_samples_per_shard}
        if train:
            splits, counts = {"train": train, **splits}, {"train": cfg.samples_per_shard, **counts}
        stats = build_dataset(splits, ctx.ws.dataset, counts, cfg.global_seed, cache_dir=ctx.ws.token_cache,
                              progress=ctx.progress)
        manifest = json.loads((ctx.ws.dataset / "manifest.json").read_text())
        return {
            "train_samples": stats.counts.get("train", 0),
            "val_samples": stats.counts["val"],
            "test_samples": stats.counts["test"],
            "replay_seeds": ctx.replay_seeds(),
            "tokenized_shards": len(stats.tokenized),
            "cached_shards": len(stats.cached),
            "splits_rewritten": stats.splits_written,
            "outputs": {"splits": {s: v.get("checksums") for s, v in manifest["splits"].items()}},
        }

    return _run(ctx, "tokenize", work, force)


# ---------------------------------------------------------------------------------------------- train


def kept_epoch(metrics_csv: Path, metric: str = "val/q_gap") -> tuple[int | None, dict[int, float]]:
    """The epoch whose checkpoint is kept (lowest ``metric``) and the metric per epoch."""
    per_epoch: dict[int, float] = {}
    try:
        with metrics_csv.open() as fh:
            for row in csv.DictReader(fh):
                if row.get(metric) and row.get("epoch"):
                    per_epoch[int(float(row["epoch"]))] = float(row[metric])
    except OSError:
        return None, {}
    best = min(per_epoch, key=lambda e: per_epoch[e]) if per_epoch else None
    return best, per_epoch


def train(ctx: Context, force: bool = False, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Fine-tune on this iteration's train split; the kept checkpoint is copied to a stable path.

    ``callbacks`` are extra Lightning callbacks (a notebook's live curve, say).
    """

    def work(progress: StageProgress, memo: DigestMemo) -> dict[str, Any]:

        if ctx.is_pretrain:
            return _pretrain(ctx, progress, memo, callbacks)
        cfg = ctx.config
        resume, lr, origin = ctx.starting_point()
        print(f"training from {origin}" + (f" ({ctx.ws.rel(resume)})" if resume else "") + f" at lr {lr:g}")
        run_dir = ctx.ws.run_dir(ctx.iteration)
        res = _fit(ctx, progress, callbacks, ctx.ws.dataset, epochs=cfg.epochs, lr=lr,
                   model=None if resume else cfg.model, resume=resume, run_dir=run_dir / "train",
                   val_samples=cfg.val_samples)
        chosen = res.best_checkpoint or res.last_checkpoint
        stable = run_dir / "model.ckpt"
        with open(chosen, "rb") as src:
            atomic_write(stable, lambda dst: shutil.copyfileobj(src, dst))
        epoch, per_epoch = kept_epoch(res.metrics_csv)
        if res.best_checkpoint and epoch is not None:
            reason = (f"lowest val Q-gap on {'all' if cfg.val_samples is None else cfg.val_samples} golden val "
                      f"samples: {per_epoch[epoch]:.4f} (epochs: "
                      + ", ".join(f"{e + 1}: {v:.4f}" for e, v in sorted(per_epoch.items())) + ")")
        else:
            reason = "the last epoch (no validation split to choose by)"
        return {
            "checkpoint": ctx.ws.rel(stable),
            "started_from": origin,
            "resume": ctx.ws.rel(resume) if resume else None,
            "lr": lr,
            "metrics_csv": ctx.ws.rel(res.metrics_csv),
            "train_metrics": {k: round(v, 5) for k, v in res.metrics.items() if math.isfinite(v)},
            "kept_epoch": epoch + 1 if epoch is not None else None,
            "kept_reason": reason,
            "outputs": {"checkpoint": ctx.ws.rel(stable), "sha256": memo.sha256(stable)},
        }

    return _run(ctx, "train", work, force)


def _fit(ctx: Context, progress: StageProgress, callbacks: Sequence[Any], data: Path, **kw: Any) -> Any:
    """forge.ml.training.train with the config's batch size, seed and hardware: in this process, or
    (several devices or nodes: a kernel cannot become one process per device) in a child process."""
    from forge.flywheel.train_progress import TrainProgress
    from forge.ml.training import train as fit

    cfg = ctx.config
    kw.update(batch_size=cfg.batch_size, wandb=False, seed=cfg.train_seed + ctx.iteration, progress=ctx.progress,
              precision=cfg.precision, accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
              num_nodes=cfg.num_nodes, compile=cfg.compile)
    if _multi_process(cfg):
        progress.update(phase=f"training in {cfg.devices * cfg.num_nodes} processes", force=True)
        return _fit_in_subprocess(data, kw["run_dir"] / "train-result.json", **kw)
    with quiet_lightning():  # notebooks get the stage's summary, not Lightning's start-up chatter
        return fit(data, **kw, trainer_kwargs={"callbacks": [TrainProgress(progress), *callbacks],
                                               "enable_model_summary": False})


def _multi_process(cfg: Any) -> bool:
    """Whether training needs processes of its own (DDP), which a notebook kernel cannot become."""
    return cfg.devices > 1 or cfg.num_nodes > 1 or cfg.strategy.startswith("ddp")


def _fit_in_subprocess(data: Path, result_file: Path, **kw: Any) -> Any:
    """``forge.cli.train`` in a child process (Lightning's launcher starts one process per device),
    its output shown here as it runs; the child dies with this process."""
    import subprocess
    import sys

    from forge.ml.training import result_from_dict
    from forge.oracle.local_pool import DIE_WITH_PARENT_ENV

    args = {"--data": data, "--epochs": kw["epochs"], "--lr": repr(kw["lr"]), "--batch-size": kw["batch_size"],
            "--run-dir": kw["run_dir"], "--seed": kw["seed"], "--precision": kw["precision"],
            "--accelerator": kw["accelerator"], "--devices": kw["devices"], "--strategy": kw["strategy"],
            "--num-nodes": kw["num_nodes"], "--result": result_file, "--model": kw["model"],
            "--resume": kw["resume"], "--val-samples": kw["val_samples"]}
    cmd = [sys.executable, "-m", "forge.cli.train", "--no-wandb", "--no-progress"]
    cmd += [str(x) for k, v in args.items() if v is not None for x in (k, v)]
    cmd += ["--compile"] if kw["compile"] else []
    result_file.unlink(missing_ok=True)
    env = {**os.environ, DIE_WITH_PARENT_ENV: "1"}  # the child and the ranks it launches die with their parent
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="")
            tail = (tail + [line.strip()])[-5:]
    finally:  # an interrupted notebook or loop takes its training processes with it
        if proc.poll() is None:
            proc.kill()
    if proc.wait() != 0:
        raise StageError(f"training in {kw['devices']} processes failed (exit {proc.returncode}): "
                              + " | ".join(tail))
    return result_from_dict(json.loads(result_file.read_text()))


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _pretrain(ctx: Context, progress: StageProgress, memo: DigestMemo, callbacks: Sequence[Any]) -> dict[str, Any]:
    """Iteration 0: train a baseline from scratch over many deals, ``chunk`` deals at a time.

    Each chunk is solved, tokenized (into its own cache), trained on from the previous chunk's
    weights at the scratch LR (its own warm-up and cosine: a warm restart per chunk), and then its
    shards, tokens and older checkpoints are deleted, so disk use is bounded by one chunk whatever
    the number of deals. Every shard can be regenerated from its seed.
    """
    from forge.ml.store import build_dataset
    from forge.oracle.deal import train_decl
    from forge.oracle.generate import generate as solve_all

    cfg, pre = ctx.config, ctx.state.pretrain
    assert pre is not None
    chunks = [ctx.seeds[i:i + pre.chunk] for i in range(0, len(ctx.seeds), pre.chunk)]
    work_dir = ctx.ws.run_dir(ctx.iteration) / "pretrain"
    shard_dir = ctx.ws.shards(cfg.hand_size)
    checkpoint: Path | None = None
    peak, samples, csvs = 0, 0, []
    for k, part in enumerate(chunks, 1):
        label = f"chunk {k}/{len(chunks)} (seeds {part[0]}..{part[-1]})"
        progress.update(phase=f"{label}: solving", done=k - 1, total=len(chunks), force=True)
        shards = [r.path for r in solve_all([(s, train_decl(s)) for s in part], shard_dir, cfg.hand_size,
                                            progress=False, executor=cfg.executor, ray_address=cfg.ray_address)]
        progress.update(phase=f"{label}: tokenizing", force=True)
        data, cache = work_dir / "data", work_dir / "cache"
        stats = build_dataset({"train": shards}, data, cfg.samples_per_shard, cfg.global_seed, cache_dir=cache,
                              progress=False)
        samples += stats.counts["train"]
        peak = max(peak, _tree_size(work_dir) + sum(p.stat().st_size for p in shards))
        for p in shards:
            p.unlink()
        shutil.rmtree(cache)
        progress.update(phase=f"{label}: training", force=True)
        res = _fit(ctx, progress, callbacks, data, epochs=cfg.epochs, lr=cfg.scratch_lr,
                   model=None if checkpoint else cfg.model, resume=checkpoint, run_dir=work_dir / f"chunk-{k:03d}",
                   val_samples=None)
        peak = max(peak, _tree_size(work_dir))
        latest = work_dir / "latest.ckpt"
        with open(res.last_checkpoint, "rb") as src:
            atomic_write(latest, lambda dst: shutil.copyfileobj(src, dst))
        checkpoint = latest
        shutil.rmtree(data)
        shutil.rmtree(res.last_checkpoint.parent)  # the chunk's checkpoints; its metrics.csv stays
        csvs.append(ctx.ws.rel(res.metrics_csv))
        print(f"{label}: {stats.counts['train']:,} samples, train loss {res.metrics.get('train/loss_epoch', 0):.4f}")
    stable = ctx.ws.run_dir(ctx.iteration) / "model.ckpt"
    assert checkpoint is not None
    os.replace(checkpoint, stable)
    return {
        "checkpoint": ctx.ws.rel(stable), "started_from": "scratch", "resume": None, "lr": cfg.scratch_lr,
        "pretrain": {"seeds": len(ctx.seeds), "chunks": len(chunks), "chunk": pre.chunk, "samples": samples,
                     "peak_bytes": peak},
        "metrics_csv": csvs[-1], "metrics_csvs": csvs, "kept_epoch": None,
        "kept_reason": "the last chunk's last epoch (pretraining keeps every chunk's learning)",
        "outputs": {"checkpoint": ctx.ws.rel(stable), "sha256": memo.sha256(stable)},
    }


# ---------------------------------------------------------------------------------------------- evaluate

def _deltas(now_: dict[str, float], then: dict[str, float] | None) -> dict[str, float]:
    if not then:
        return {}
    return {k: round(now_[k] - then[k], 5) for k in now_ if isinstance(now_.get(k), float) and
            isinstance(then.get(k), float)}


def regressions(summary: dict[str, Any], best: Any) -> list[str]:
    """Tracked metrics of this iteration that are worse than the best iteration's (by the primary metric)."""
    if best is None:
        return []
    flags = []
    for split, name in TRACKED:
        mine, theirs = (summary.get(split) or {}).get(name), best.metric(split, name)
        if mine is None or theirs is None:
            continue
        if better(name, theirs, mine):
            flags.append(f"{split} {name} {mine:.4f} is worse than the best (iteration {best.iteration}: "
                         f"{theirs:.4f})")
    return flags


def evaluate(ctx: Context, force: bool = False) -> dict[str, Any]:
    """Golden val and test metrics, a play-out on golden test deals, deltas, and W&B logging."""

    def work(progress: StageProgress, memo: DigestMemo) -> dict[str, Any]:
        from forge.flywheel.tracking import log_iteration
        from forge.ml.evaluate import eval_device
        from forge.ml.evaluate import evaluate as score

        trained = read_result(ctx.ws, ctx.iteration, "train") or {}
        ckpt = ctx.ws.root / trained["checkpoint"]
        device = eval_device(ctx.config.accelerator)
        progress.update(phase="golden val", force=True)
        val = score(ckpt, ctx.ws.dataset, "val", device=device)
        progress.update(phase="golden test and play-out", force=True)
        test = score(ckpt, ctx.ws.dataset, "test", playout_deals=ctx.config.playout_deals, device=device)
        playout = {k: test.pop(k) for k in list(test) if k.startswith("playout")}
        prev = ctx.previous()
        best = best_of(ctx.earlier(), *PRIMARY_METRIC)
        summary: dict[str, Any] = {
            "checkpoint": trained["checkpoint"],
            "val": val,
            "test": test,
            "playout": playout,
            "delta_prev": _deltas(val, prev.val if prev else None),
            "delta_best": _deltas(val, best.val if best else None),
            "best_iteration": best.iteration if best else None,
            "primary_metric": metric_label(*PRIMARY_METRIC),
            "is_best": best is None or better(PRIMARY_METRIC[1], val[PRIMARY_METRIC[1]], best.metric(*PRIMARY_METRIC)),
            "total_seeds": ctx.state.total_seeds + len(ctx.seeds) if not ctx.is_past else None,
        }
        summary["flags"] = regressions(summary, best)
        progress.update(phase="W&B", force=True)
        summary["wandb"] = log_iteration(ctx, trained, summary) if not ctx.no_wandb else None
        if summary["is_best"]:
            print(f"new best (val Q-gap {val['q_gap']:.4f}): {trained['checkpoint']}")
        for flag in summary["flags"]:
            print(f"worse than the best: {flag}")
        return summary

    return _run(ctx, "evaluate", work, force)
