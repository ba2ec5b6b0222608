"""Speed mode: training throughput of variants (``base``, ``precision=bf16-mixed``,
``batch_size=1024``, ``dropout=0.1``, comma-joined), each a short run of the project's own
training (:func:`forge.ml.training.train` with a sample budget) on the real training data,
interleaved round by round so that a shared machine's load falls on all alike; wall-clock and
this process's CPU time, the first steps of each run left out. With ``--threads 1`` the CPU
figures are what an idle core would give. A ``compile=true`` variant compiles in every round
(left out of the figures, but minutes of waiting)."""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from forge.flywheel.config import load_preset
from forge.ml.model import ModelConfig, preset
from forge.ml.settings import HardwareSection, TrainingSection
from forge.ml.training import train
from ttq.common import load_average, machine, parse_settings, text_table
from ttq.data import golden_val, train_deals, train_seeds

SPEED_KEYS = ("batch_size", "precision", "compile", "model")


def variant(text: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """"key=value,key=value" over the base setup: (run keys, model fields, module kwargs)."""
    pairs = [p for p in text.split(",") if p and p != "base"]
    run = {}
    for pair in list(pairs):
        key, _, value = pair.partition("=")
        if key in SPEED_KEYS:
            run[key] = yaml.safe_load(value)
            pairs.remove(pair)
    return (run, *parse_settings(pairs))


class Throughput(L.Callback):
    """Wall and CPU seconds of a run's steps after its first ``warmup`` (compilation, caches)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start: tuple[float, float] | None = None
        self.seconds = (0.0, 0.0)
        self.steps = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.start = (time.perf_counter(), time.process_time())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None:
            self.seconds = (time.perf_counter() - self.start[0], time.process_time() - self.start[1])
            self.steps = trainer.global_step - self.warmup


def run_speed(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cfg = load_preset(args.preset)
    workers = args.workers or os.cpu_count() or 1
    val_dir, _ = golden_val(cfg, Path(args.data), args.val_per_shard, workers)
    seeds = train_seeds(args.start_seed, args.deals or cfg.data.seeds_per_iter, cfg.evaluation.golden_seeds)
    k = args.samples_per_deal or cfg.data.samples_per_shard
    datasets, _, _ = train_deals(cfg, Path(args.data), seeds, k, workers, False, args.train_states)
    runs = {text: {"wall": [], "cpu": []} for text in args.speed}
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    load_before = load_average()
    for r in range(args.speed_rounds):
        for text, figures in runs.items():
            run, model_over, module_kwargs = variant(text)
            weights = {k: module_kwargs.pop(k) for k in ("value_weight", "q_weight") if k in module_kwargs}
            name = run.get("model", args.model or cfg.training.model)
            config = ModelConfig(**{**preset(name).to_dict(), **model_over})
            batch_size = run.get("batch_size", args.batch_size or cfg.training.batch_size)
            meter = Throughput(args.speed_warmup)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec).*")
                samples = (args.speed_warmup + args.speed_steps) * batch_size
                train(val_dir, TrainingSection(train_samples=samples, lr=args.lr or cfg.training.scratch_lr,
                                               batch_size=batch_size, train_seed=args.seed + r, **weights),
                      HardwareSection(precision=run.get("precision", args.precision or "32"), accelerator="cpu",
                                      compile=run.get("compile", args.compile)),
                      architecture=config, train_dirs=datasets, run_dir=out / "speed-runs", wandb=False,
                      progress=False, module_kwargs=module_kwargs,
                      trainer_kwargs={"callbacks": [meter], "limit_val_batches": 0})
            n = meter.steps * batch_size
            figures["batch_size"] = batch_size
            figures["wall"].append(n / meter.seconds[0])
            figures["cpu"].append(n / meter.seconds[1])
        print(f"  round {r + 1}/{args.speed_rounds} done", file=sys.stderr, flush=True)
    base = statistics.median(next(iter(runs.values()))["cpu"])
    rows = [{"variant": text, "batch_size": f["batch_size"], "wall_samples_per_s": statistics.median(f["wall"]),
             "cpu_samples_per_s": statistics.median(f["cpu"]), "vs_first": statistics.median(f["cpu"]) / base}
            for text, f in runs.items()]
    return {"label": args.label, "started": datetime.now().isoformat(timespec="seconds"), "mode": "speed",
            "command": " ".join(sys.argv), "machine": machine(), "load_before": load_before,
            "load_after": load_average(), "rounds": args.speed_rounds, "steps": args.speed_steps, "variants": rows}


def speed_table(rows: list[dict[str, Any]]) -> str:
    return text_table([("variant", "variant", "<40"), ("batch", "batch_size", ">6"),
                       ("wall samples/s", "wall_samples_per_s", ">15,.0f"),
                       ("CPU samples/s", "cpu_samples_per_s", ">14,.0f"), ("vs first", "vs_first", ">9.2f")], rows)


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"median of {args.speed_rounds} interleaved rounds of {args.speed_steps} steps each "
          f"(after {args.speed_warmup} warm-up steps per run)")
    print(speed_table(result["variants"]))
