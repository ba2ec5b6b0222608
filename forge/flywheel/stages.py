"""The four stages of an iteration, as functions the stage notebooks call.

Each stage is idempotent: finished work (verified shards, cached tokens, a trained checkpoint,
computed metrics) is found and reused, so a notebook stepped through by hand and then the loop
record the same iteration without doing it twice. Each stage writes its result as JSON under
``runs/iter-NNNN/results/<stage>.json``; the loop reads those into ``state.yaml``'s history.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text
from forge.flywheel.config import Config
from forge.flywheel.paths import Workspace, find_root
from forge.flywheel.state import State, StateError, load_state, plan_seeds


@dataclass(frozen=True)
class Context:
    """What a stage needs to know about the iteration it works on."""

    ws: Workspace
    state: State
    iteration: int
    seeds: list[int]
    no_wandb: bool = False
    progress: bool = True

    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def train_shards(self) -> list[Path]:
        out = self.ws.shards(self.config.hand_size)
        return [out / f"seed_{s:08d}_decl_{s % 10}.parquet" for s in self.seeds]

    def golden_shards(self, split: str) -> list[Path]:
        seeds = self.config.golden_val_seeds if split == "val" else self.config.golden_test_seeds
        out = self.ws.golden(self.config.hand_size)
        return [out / f"seed_{s:08d}_decl_{d}.parquet" for s in seeds for d in self.config.golden_decls]

    def previous(self) -> dict[str, Any] | None:
        """History entry of the iteration before this one, if any."""
        earlier = [h for h in self.state.history if h["iteration"] < self.iteration]
        return earlier[-1] if earlier else None


def context(root: str | os.PathLike | None = None, iteration: int | None = None, no_wandb: bool = False,
            progress: bool = True) -> Context:
    """Resolve the iteration from state.yaml: the one in progress or the next (default), or a past one.

    Without ``root``, the workspace is the current folder or, for a notebook opened from
    ``notebooks/``, its parent.
    """
    ws = Workspace.at(find_root(root))
    state = load_state(ws.root)
    if iteration is None or iteration == state.iteration:
        iteration = state.iteration
        seeds = state.current.seeds if state.current else plan_seeds(state.config, state.next_seed)
    else:
        past = [h for h in state.history if h["iteration"] == iteration]
        if not past:
            raise StateError(f"iteration {iteration} is neither in history nor the current one ({state.iteration})")
        seeds = past[0]["seeds"]
    return Context(ws, state, iteration, list(seeds), no_wandb, progress)


def write_result(ctx: Context, stage: str, result: dict[str, Any]) -> Path:
    """Atomically record a stage's result for the loop."""
    return atomic_write_text(ctx.ws.results(ctx.iteration) / f"{stage}.json",
                             json.dumps(result, indent=2, default=str))


def read_result(ws: Workspace, iteration: int, stage: str) -> dict[str, Any] | None:
    path = ws.results(iteration) / f"{stage}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------- generate

def generate(ctx: Context, workers: int | None = None) -> dict[str, Any]:
    """Golden val/test shards (first time only) and this iteration's training shards."""
    start = time.perf_counter()  # the stage's work includes loading its libraries
    from forge.oracle.generate import generate as gen

    cfg = ctx.config
    summary: dict[str, Any] = {"written": 0, "kept": 0}
    golden_jobs = [(s, d) for s in cfg.golden_val_seeds + cfg.golden_test_seeds for d in cfg.golden_decls]
    train_jobs = [(s, s % 10) for s in ctx.seeds]
    for name, jobs, out in (
        ("golden", golden_jobs, ctx.ws.golden(cfg.hand_size)),
        ("train", train_jobs, ctx.ws.shards(cfg.hand_size)),
    ):
        results = list(gen(jobs, out, cfg.hand_size, workers=workers, progress=ctx.progress))
        written = sum(not r.skipped for r in results)
        summary[f"{name}_written"] = written
        summary[f"{name}_kept"] = len(results) - written
        summary[f"{name}_states"] = sum(r.rows for r in results)
        summary["written"] += written
        summary["kept"] += len(results) - written
        for r in results:
            if r.note:
                print(f"{r.path.name}: {r.note}")
    summary["train_shards"] = [ctx.ws.rel(p) for p in ctx.train_shards]
    summary["seconds"] = round(time.perf_counter() - start, 2)
    write_result(ctx, "generate", summary)
    return summary


# ---------------------------------------------------------------------------------------------- tokenize

def replay_seeds(ctx: Context) -> list[int]:
    """Seeds of the ``replay_iters`` iterations before this one, trained on again."""
    if ctx.config.replay_iters <= 0:
        return []
    earlier = [h for h in ctx.state.history if h["iteration"] < ctx.iteration][-ctx.config.replay_iters:]
    return [s for h in earlier for s in h["seeds"]]


def tokenize(ctx: Context) -> dict[str, Any]:
    """Tokenize only shards not yet cached; train = this iteration (+ replay), val/test = golden."""
    start = time.perf_counter()  # the stage's work includes loading its libraries
    from forge.ml.store import build_dataset

    cfg = ctx.config
    shards_dir = ctx.ws.shards(cfg.hand_size)
    replay = [shards_dir / f"seed_{s:08d}_decl_{s % 10}.parquet" for s in replay_seeds(ctx)]
    missing = [p for p in ctx.train_shards + replay if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"shard {missing[0]} is missing: run the generate stage first")
    # One dataset for train and eval: golden splits keep their own sampling rate and, unchanged
    # from one iteration to the next, are left untouched on disk.
    stats = build_dataset(
        {"train": ctx.train_shards + replay, "val": ctx.golden_shards("val"), "test": ctx.golden_shards("test")},
        ctx.ws.dataset, {"train": cfg.samples_per_shard, "val": cfg.golden_samples_per_shard,
                         "test": cfg.golden_samples_per_shard},
        cfg.global_seed, cache_dir=ctx.ws.token_cache, progress=ctx.progress,
    )
    summary = {
        "train_samples": stats.counts["train"],
        "val_samples": stats.counts["val"],
        "test_samples": stats.counts["test"],
        "replay_seeds": replay_seeds(ctx),
        "tokenized_shards": len(stats.tokenized),
        "cached_shards": len(stats.cached),
        "splits_rewritten": stats.splits_written,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_result(ctx, "tokenize", summary)
    return summary


# ---------------------------------------------------------------------------------------------- train

def starting_point(ctx: Context) -> tuple[Path | None, float, str]:
    """Checkpoint to fine-tune from, its learning rate, and a label: previous > baseline > scratch."""
    prev = ctx.previous()
    if prev and prev.get("checkpoint"):
        return ctx.ws.root / prev["checkpoint"], ctx.config.lr, f"iteration {prev['iteration']}"
    if ctx.state.baseline_checkpoint:
        return Path(ctx.state.baseline_checkpoint), ctx.config.lr, "baseline"
    return None, ctx.config.scratch_lr, "scratch"


def train(ctx: Context) -> dict[str, Any]:
    """Fine-tune on this iteration's train split; the chosen checkpoint is copied to a stable path."""
    start = time.perf_counter()  # the stage's work includes loading its libraries
    import shutil

    from forge.ml.training import train as fit

    done = read_result(ctx.ws, ctx.iteration, "train")
    if done and (ctx.ws.root / done["checkpoint"]).is_file():
        print(f"iteration {ctx.iteration} is already trained: {done['checkpoint']}")
        return done
    cfg = ctx.config
    resume, lr, origin = starting_point(ctx)
    print(f"training from {origin}" + (f" ({ctx.ws.rel(resume)})" if resume else "") + f" at lr {lr:g}")
    run_dir = ctx.ws.run_dir(ctx.iteration)
    if not ctx.progress:  # archived notebooks get the summary, not Lightning's start-up chatter
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
    res = fit(
        ctx.ws.dataset, epochs=cfg.epochs, lr=lr, batch_size=cfg.batch_size,
        model=None if resume else cfg.model, resume=resume, run_dir=run_dir / "train",
        wandb=False, seed=cfg.global_seed + ctx.iteration, progress=ctx.progress,
    )
    chosen = res.best_checkpoint or res.last_checkpoint
    stable = run_dir / "model.ckpt"
    tmp = stable.with_suffix(".ckpt.tmp")
    shutil.copyfile(chosen, tmp)
    os.replace(tmp, stable)
    summary = {
        "checkpoint": ctx.ws.rel(stable),
        "started_from": origin,
        "resume": ctx.ws.rel(resume) if resume else None,
        "lr": lr,
        "metrics_csv": ctx.ws.rel(res.metrics_csv),
        "train_metrics": {k: round(v, 5) for k, v in res.metrics.items()},
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_result(ctx, "train", summary)
    return summary


# ---------------------------------------------------------------------------------------------- evaluate

#: Metrics compared across iterations: lower is better for all but accuracy-like rates.
HIGHER_IS_BETTER = {"accuracy", "zero_regret"}


def _deltas(now_: dict[str, float], then: dict[str, float] | None) -> dict[str, float]:
    if not then:
        return {}
    return {k: round(now_[k] - then[k], 5) for k in now_ if isinstance(now_.get(k), float) and
            isinstance(then.get(k), float)}


def evaluate(ctx: Context) -> dict[str, Any]:
    """Golden val and test metrics, a play-out on golden test deals, deltas, and W&B logging."""
    start = time.perf_counter()  # the stage's work includes loading its libraries
    from forge.cli.eval import evaluate as score
    from forge.flywheel.tracking import log_iteration

    trained = read_result(ctx.ws, ctx.iteration, "train")
    if not trained:
        raise FileNotFoundError(f"iteration {ctx.iteration} has no trained checkpoint: run the train stage first")
    done = read_result(ctx.ws, ctx.iteration, "evaluate")
    if done and done.get("checkpoint") == trained["checkpoint"]:
        print(f"iteration {ctx.iteration} is already evaluated")
        return done
    ckpt = ctx.ws.root / trained["checkpoint"]
    val = score(ckpt, ctx.ws.dataset, "val")
    test = score(ckpt, ctx.ws.dataset, "test", playout_deals=ctx.config.playout_deals)
    playout = {k: test.pop(k) for k in list(test) if k.startswith("playout")}
    prev = ctx.previous()
    earlier = [h for h in ctx.state.history if h["iteration"] < ctx.iteration and h.get("val")]
    best = min(earlier, key=lambda h: h["val"]["q_gap"]) if earlier else None
    summary: dict[str, Any] = {
        "checkpoint": trained["checkpoint"],
        "val": val,
        "test": test,
        "playout": playout,
        "delta_prev": _deltas(val, prev.get("val") if prev else None),
        "delta_best": _deltas(val, best["val"] if best else None),
        "best_before": best["iteration"] if best else None,
        "is_best": best is None or val["q_gap"] < best["val"]["q_gap"],
        "total_seeds": ctx.state.total_seeds + len(ctx.seeds) if ctx.iteration == ctx.state.iteration else None,
    }
    summary["wandb"] = log_iteration(ctx, trained, summary) if not ctx.no_wandb else None
    summary["seconds"] = round(time.perf_counter() - start, 2)
    if summary["is_best"]:
        print(f"new best (val Q-gap {val['q_gap']:.4f}): {trained['checkpoint']}")
    write_result(ctx, "evaluate", summary)
    return summary


# ---------------------------------------------------------------------------------------------- display

def describe(ctx: Context) -> None:
    cfg = ctx.config
    print(f"workspace {ctx.ws.root}\niteration {ctx.iteration} ({cfg.preset} preset, hand size {cfg.hand_size}): "
          f"{len(ctx.seeds)} seeds {ctx.seeds[0]}..{ctx.seeds[-1]}")


def show_result(result: dict[str, Any]) -> None:
    """A readable summary table of a stage's result (HTML in notebooks, text elsewhere)."""
    from forge.ui.render import result_table

    try:
        from IPython.display import HTML, display

        display(HTML(result_table(result)))
    except ImportError:  # pragma: no cover - IPython is a dependency; plain Python still works
        print(json.dumps(result, indent=2, default=str))


def plot_evaluation(ctx: Context, result: dict[str, Any]) -> None:
    """Show val Q-gap per declaration and the history of val Q-gap/accuracy against seeds trained."""
    from IPython.display import Image, display

    from forge.ui.plots import evaluation_figure, png_bytes

    display(Image(data=png_bytes(evaluation_figure(ctx.state.history, result), dpi=90)))
