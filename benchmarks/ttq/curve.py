"""Curve mode: train a fresh model from scratch for a budget, through the project's own training
(:func:`forge.ml.training.train` with a budget, its LR schedule laid over the budget), and score
it at fixed times (5, 15, 30, 60, 120 minutes, those within the budget) and at even fractions of
the budget on a fixed subset of the golden val states. Scoring (the fast fp32 ``evaluate_model``)
pauses the training clock and is reported apart."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from forge.flywheel.config import load_preset
from forge.ml.data import load_tensors
from forge.ml.evaluate import evaluate_model
from forge.ml.loading import load_module
from forge.ml.model import DominoTransformer, ModelConfig, count_parameters, preset
from forge.ml.schedule import Budget, TrainClock
from forge.ml.settings import HardwareSection, TrainingSection
from forge.ml.store import read_manifest
from forge.ml.training import train
from ttq.common import (
    GOAL_QGAP,
    figure,
    five_metrics_figure,
    load_average,
    machine,
    metrics_path,
    parse_settings,
    reference_lines,
    save_figure,
    text_table,
)
from ttq.data import golden_val, random_move_q_gap, train_deals, train_seeds
from ttq.fresh import Fresh

#: Minutes at which the table reports the curve (those within the budget).
FIXED_MINUTES = (5, 15, 30, 60, 120)
#: Val states of the training run's own validation at its end (the curve's points are the figures).
FINAL_VAL_SAMPLES = 2000
#: --fresh: deals the producer may make (far more than any budget allows), and the default window.
FRESH_SEEDS = 100_000
FRESH_WINDOW = 120


@dataclass
class Point:
    minutes: float  # training wall-clock, evaluation excluded
    cpu_minutes: float  # this process's CPU time while training
    samples: int
    epochs: float
    q_gap: float
    decision_q_gap: float | None  # Q-gap on the states where a move can lose points
    accuracy: float
    blunder_rate: float
    value_mae: float | None  # points; None: the value head was not trained
    train_loss: float  # mean over the steps since the previous point
    samples_per_s: float  # wall-clock, over the steps since the previous point
    lr: float
    eval_s: float
    ema_q_gap: float | None = None  # the same model's exponential moving average of weights (--ema)
    zero_regret: float | None = None  # share of states whose move is optimal (None in runs saved before it)
    q_mae: float | None = None  # points, over legal moves; None: the Q head was not trained
    deals: int | None = None  # --fresh: deals made so far (the first ones and the producer's)
    window: int | None = None  # --fresh: deals in the window this epoch trains on
    solve_cpu_share: float | None = None  # --fresh: the producer's CPU over its own and training's
    game_value_mae: float | None = None  # points, V read off the Q head (None: no Q head, or saved before it)


def eval_marks(budget: float, points: int, in_seconds: bool = True) -> list[float]:
    """Fixed minutes within a time budget plus ``points`` even fractions of it, near-duplicates merged."""
    fixed = {60.0 * m for m in FIXED_MINUTES if 60 * m <= budget} if in_seconds else set()
    marks = sorted(fixed | {budget * i / points for i in range(1, points + 1)})
    merged: list[float] = []
    for t in marks:
        if merged and t - merged[-1] < 0.02 * budget:
            merged[-1] = max(merged[-1], t) if t != budget else t
        else:
            merged.append(t)
    return merged


def run_clock(trainer: L.Trainer) -> TrainClock:
    """The clock of the run's budget (forge.ml.schedule.Budget, present in every training run)."""
    return next(cb.clock for cb in trainer.callbacks if isinstance(cb, Budget))


class Curve(L.Callback):
    """Scores the model on the val subset whenever the run's clock passes the next mark in
    ``marks`` (the budget's unit); the clock is paused while it scores."""

    def __init__(self, marks: list[float], val: dict[str, torch.Tensor], n_train: int, eval_batch: int,
                 verbose: bool = True, ema: float | None = None, fresh: Fresh | None = None):
        self.marks, self.val, self.n_train, self.fresh = list(marks), val, n_train, fresh
        self.eval_batch, self.verbose, self.ema = eval_batch, verbose, ema
        self.averaged: AveragedModel | None = None
        self.points: list[Point] = []
        self._loss, self._steps, self._window = 0.0, 0, (0, 0.0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._loss += float(outputs["loss"])
        self._steps += 1
        clock = run_clock(trainer)
        if self.ema:
            clock.pause()  # the average is the benchmark's measurement, not part of training
            if self.averaged is None:
                self.averaged = AveragedModel(pl_module.model, multi_avg_fn=get_ema_multi_avg_fn(self.ema))
            self.averaged.update_parameters(pl_module.model)
            clock.resume()
        t = clock.elapsed()
        if not self.marks or t < self.marks[0]:
            return
        while self.marks and t >= self.marks[0]:
            self.marks.pop(0)
        clock.pause()
        self._score(trainer, pl_module, clock)
        clock.resume()

    def _score(self, trainer: L.Trainer, pl_module: L.LightningModule, clock: TrainClock) -> None:
        start = time.perf_counter()
        was_training = pl_module.model.training
        heads = pl_module.trained_heads  # an untrained head's error means nothing
        m = evaluate_model(pl_module.model, self.val, self.eval_batch, with_value="value" in heads,
                           with_q="q" in heads, move_head=pl_module.move_head, device=pl_module.device)
        ema = None
        if self.averaged is not None:
            ema = evaluate_model(self.averaged.module, self.val, self.eval_batch, with_value=False,
                                 move_head=pl_module.move_head, device=pl_module.device)["q_gap"]
        pl_module.model.train(was_training)
        wall, cpu = clock.seconds()
        samples = clock.samples
        window = wall - self._window[1]
        grown: dict[str, Any] = {}
        n_train = self.n_train
        if self.fresh is not None:  # epochs: passes over every deal made so far
            made = self.fresh.made()
            deals = len(self.fresh.start) + made["deals"]
            n_train = self.n_train // len(self.fresh.start) * deals
            grown = {"deals": deals, "window": self.fresh.used[-1] if self.fresh.used else None,
                     "solve_cpu_share": made["cpu_s"] / (made["cpu_s"] + cpu) if made["cpu_s"] + cpu > 0 else None}
        point = Point(
            minutes=wall / 60, cpu_minutes=cpu / 60, samples=samples, epochs=samples / n_train, **grown,
            q_gap=m["q_gap"], decision_q_gap=m.get("decision_q_gap"), accuracy=m["accuracy"],
            blunder_rate=m["blunder_rate"], value_mae=m.get("value_mae"), zero_regret=m["zero_regret"],
            q_mae=m.get("q_mae"), game_value_mae=m.get("game_value_mae"), train_loss=self._loss / max(1, self._steps),
            samples_per_s=(samples - self._window[0]) / window if window > 0 else float("nan"),
            lr=trainer.optimizers[0].param_groups[0]["lr"], eval_s=time.perf_counter() - start, ema_q_gap=ema,
        )
        self.points.append(point)
        self._loss, self._steps, self._window = 0.0, 0, (samples, wall)
        if self.verbose:
            print(f"  {point.minutes:7.2f} min ({point.cpu_minutes:.2f} CPU)  {point.samples:>10,} samples  "
                  f"Q-gap {point.q_gap:.3f}  acc {point.accuracy:.3f}"
                  + (f"  value MAE {point.value_mae:.2f}" if point.value_mae is not None else "")
                  + (f"  Q-MAE {point.q_mae:.2f}" if point.q_mae is not None else "")
                  + f"  ({point.samples_per_s:,.0f} samples/s)"
                  + (f"  EMA Q-gap {ema:.3f}" if ema is not None else "")
                  + (f"  {point.deals} deals made, window {point.window}, solving {point.solve_cpu_share:.0%} of CPU"
                     if point.deals is not None and point.solve_cpu_share is not None else ""),
                  file=sys.stderr, flush=True)


def table(points: list[dict[str, Any]]) -> str:
    return text_table([("minutes", "minutes", "8.2f"), ("CPU min", "cpu_minutes", "8.2f"),
                       ("samples", "samples", ">11,"), ("epochs", "epochs", "7.2f"), ("Q-gap", "q_gap", "7.3f"),
                       ("decisions", "decision_q_gap", "10.3f"), ("accuracy", "accuracy", "9.4f"),
                       ("0-regret", "zero_regret", "9.4f"), ("blunders", "blunder_rate", "9.4f"),
                       ("value MAE", "value_mae", "10.2f"), ("Q-MAE", "q_mae", "6.2f"), ("loss", "train_loss", "7.4f"),
                       ("samples/s", "samples_per_s", "10,.0f"), ("EMA Q-gap", "ema_q_gap", "10.3f"),
                       ("deals", "deals", "6d"), ("window", "window", "7d"),
                       ("solving", "solve_cpu_share", "8.1%")], points)


def time_axis(curve: dict[str, Any]) -> tuple[str, str]:
    """The point field and axis label of a curve's clock (CPU minutes for CPU-clock runs)."""
    if curve.get("setup", {}).get("clock") == "cpu":
        return "cpu_minutes", "training CPU minutes (evaluation excluded)"
    return "minutes", "training wall-clock minutes (evaluation excluded)"


def plot(curves: list[dict[str, Any]], path: Path) -> None:
    fig, (by_time, by_samples) = figure(sharey=True)
    key, xlabel = time_axis(curves[0])
    for c in curves:
        pts = c["points"]
        label = c.get("label") or c.get("started", "")
        by_time.plot([p[key] for p in pts], [p["q_gap"] for p in pts], marker="o", ms=3, label=label)
        by_samples.plot([p["samples"] for p in pts], [p["q_gap"] for p in pts], marker="o", ms=3, label=label)
    random_gap = curves[0].get("random_q_gap")
    for ax in (by_time, by_samples):
        if random_gap is not None:
            ax.axhline(random_gap, color="grey", ls=":", lw=1, label="random legal move")
        ax.axhline(GOAL_QGAP, color="green", ls="--", lw=1, label=f"goal {GOAL_QGAP} (2 hours)")
    by_time.set_xlabel(xlabel)
    by_samples.set_xlabel("training samples seen")
    by_time.set_ylabel("golden val Q-gap (points lost per move)")
    save_figure(fig, (by_time, by_samples), curves, "Time to quality from scratch", path)
    five_metrics_figure(curves, "points", key, xlabel, metrics_path(path),
                        "The reference catalog's metrics from scratch")


def train_curve(args: argparse.Namespace, datasets: list[Path], val_dir: Path, val: dict[str, torch.Tensor],
                n_train: int, out: Path, fresh: Fresh | None = None) -> tuple[list[Point], dict[str, Any]]:
    cfg = load_preset(args.preset, gpu=args.gpu)
    model_over, module_kwargs = parse_settings(args.set)  # checked in main already
    # the preset's head weights, as the flywheel trains with them, unless --set says otherwise
    weights = {"value_weight": cfg.training.value_weight, "q_weight": cfg.training.q_weight,
               "policy_states": cfg.training.policy_states}
    weights.update({k: module_kwargs.pop(k) for k in list(weights) if k in module_kwargs})  # training settings
    config = ModelConfig(**{**preset(args.model or cfg.training.model).to_dict(), **model_over})
    lr = args.lr if args.lr is not None else cfg.training.scratch_lr
    batch_size = args.batch_size or cfg.training.batch_size
    # the GPU recipe's device, precision and compilation (on a CPU: fp32, eager, unless asked)
    hardware = HardwareSection(precision=args.precision or (cfg.hardware.precision if args.gpu else "32"),
                               accelerator=cfg.hardware.accelerator if args.gpu else "cpu",
                               compile=args.compile or (args.gpu and cfg.hardware.compile))
    budget = args.samples or args.budget
    kind = "samples" if args.samples else args.clock
    curve = Curve(eval_marks(budget, args.points, in_seconds=kind != "samples"), val, n_train, args.eval_batch,
                  not args.quiet, args.ema, fresh)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner of GPUs and tips
    with warnings.catch_warnings():  # Lightning's notes on what this run leaves out on purpose
        warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec).*")
        res = train(val_dir, TrainingSection(train_samples=args.samples,
                                             train_seconds=None if args.samples else args.budget, lr=lr,
                                             batch_size=batch_size, train_seed=args.seed,
                                             val_samples=FINAL_VAL_SAMPLES, **weights),
                    hardware,
                    architecture=config, train_dirs=fresh.window if fresh else datasets, clock=args.clock,
                    run_dir=out / "run", wandb=False,
                    progress=False, module_kwargs=module_kwargs, trainer_kwargs={"callbacks": [curve]})
    hparams = dict(load_module(res.last_checkpoint).hparams)
    hparams.pop("model_config", None)
    setup = {"model": config.to_dict(), "parameters": count_parameters(DominoTransformer(config)), "lr": lr,
             "batch_size": batch_size, "module": hparams, "precision": hardware.precision,
             "compile": hardware.compile, "accelerator": hardware.accelerator, "gpu_recipe": args.gpu,
             "seed": args.seed, "train_samples": n_train, "clock": kind, "budget": budget,
             "threads": torch.get_num_threads(), "run_dir": str(res.run_dir), "ema": args.ema}
    return curve.points, setup


def run_curve(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cfg = load_preset(args.preset, gpu=args.gpu)
    data = Path(args.data)
    workers = args.workers or os.cpu_count() or 1
    val_dir, golden_s = golden_val(cfg, data, args.val_per_shard, workers)
    seeds = train_seeds(args.start_seed, args.deals or cfg.data.seeds_per_iter, cfg.evaluation.golden_seeds)
    k = args.samples_per_deal or cfg.data.samples_per_shard
    datasets, deals_s, made = train_deals(cfg, data, seeds, k, workers, args.keep_shards, args.train_states)
    if args.prepare:
        print(f"data ready: {len(seeds)} deals x {k} samples ({made} made now in {deals_s:.0f} s), golden val "
              f"{val_dir} ({golden_s:.0f} s)")
        return {}
    val = load_tensors(val_dir, "val", in_memory=True)
    n_train = sum(read_manifest(d)["splits"]["train"]["count"] for d in datasets)
    load_before = load_average()
    started = datetime.now().isoformat(timespec="seconds")
    budget = f"{args.samples:,} samples" if args.samples else f"{args.budget:.0f} s ({args.clock} clock)"
    print(f"training from scratch for {budget} on {n_train:,} samples ({len(seeds)} deals x {k}, "
          f"{args.train_states} states); scoring on {len(val['targets']):,} golden val states",
          file=sys.stderr, flush=True)
    wall = time.perf_counter()
    fresh, window = None, args.window or FRESH_WINDOW
    if args.fresh:
        later = train_seeds(seeds[-1] + 1, FRESH_SEEDS, cfg.evaluation.golden_seeds)
        fresh = Fresh(args.preset, out / "fresh", datasets, later, k, args.train_states, cfg.data.global_seed,
                      window, args.keep_shards)
    with fresh or contextlib.nullcontext():
        points, setup = train_curve(args, datasets, val_dir, val, n_train, out, fresh)
    if fresh is not None:
        training_cpu = points[-1].cpu_minutes * 60 if points else 0.0
        setup["fresh"] = {**fresh.final, "window": window, "producer_cpu_s": round(fresh.cpu_s, 1),
                          "solve_cpu_share": round(fresh.cpu_s / (fresh.cpu_s + training_cpu), 4)
                          if fresh.cpu_s + training_cpu > 0 else None,
                          "windows": fresh.used}
    return {
        "label": args.label, "started": started, "command": " ".join(sys.argv), "mode": "learning",
        "machine": machine(), "load_before": load_before, "load_after": load_average(),
        "budget_s": args.budget, "wall_s": time.perf_counter() - wall, "preset": cfg.preset,
        "hand_size": cfg.data.hand_size, "setup": setup,
        "data": {"deals": len(seeds), "first_seed": seeds[0], "last_seed": seeds[-1], "samples_per_deal": k,
                 "deals_made_now": made, "deals_s": round(deals_s, 1), "golden_made_s": round(golden_s, 1),
                 "val_states": len(val["targets"]), "val_per_shard": args.val_per_shard,
                 "train_states": args.train_states, "train_samples": n_train},
        "random_q_gap": random_move_q_gap(val),
        "points": [asdict(p) for p in points],
    }


def report(result: dict[str, Any], out: Path) -> None:
    s, d = result["setup"], result["data"]
    print(f"{result['preset']} preset, model {s['parameters']:,} params, batch {s['batch_size']}, lr {s['lr']:g}, "
          f"{d['deals']} deals x {d['samples_per_deal']} {d.get('train_states', 'all')} samples; val "
          f"{d['val_states']:,} golden states (random legal move: Q-gap {result['random_q_gap']:.3f}); data made "
          f"now: {d['deals_made_now']} deals in {d['deals_s']} s, golden in {d['golden_made_s']} s (not counted)")
    print(table(result["points"]))
    f = s.get("fresh")
    if f:
        print(f"fresh deals: {f['deals']} made while training (seeds up to {f['last_seed']}, {f['states']:,} states) "
              f"in {f['cpu_s']} CPU-s; the producer used {f['producer_cpu_s']} CPU-s, "
              f"{f['solve_cpu_share']:.1%} of the CPU the run used (training and solving); window {f['window']}")
    print("\n".join(reference_lines(result["points"])))
    plot([result], out / "curve.png")
