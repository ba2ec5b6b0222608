"""Time to quality: how fast training from scratch makes a model that plays like the oracle.

The headline figure of the project. One run trains a fresh DominoTransformer for a wall-clock
``--budget`` and scores it, at fixed times (5, 15, 30, 60, 120 minutes, those within the budget)
and at ``--points`` even fractions of the budget, on a fixed subset of the golden val states
(``--val-per-shard`` samples from each of seeds 900-902 x 10 declarations; 1,000 each is exactly
the quick preset's golden val set). Evaluation (the fast fp32 ``evaluate_model``) pauses the
training clock and is reported apart. The learning-rate schedule is the module's cosine
(:func:`forge.ml.module.cosine_schedule`) laid over the budget's training time instead of a step
count, so the curve's last point is a finished schedule. It prints a table, and writes
``curve.json`` (every point) and ``curve.png`` under ``--out``.

Data are built with the project's public functions and cached under ``--data``: golden shards are
kept (``<data>/golden-h<H>``, also what flywheel mode links), each training deal (the first
``--deals`` non-golden seeds from ``--start-seed``, one declaration each) is solved, tokenized at
``--samples-per-deal`` into its own dataset and its shard deleted, so disk stays small; the time
spent making data is reported apart from the training clock.

``--flywheel quick|standard|tiny`` runs real flywheel iterations instead, in a fresh workspace
(golden shards linked from ``--data``), until the budget is spent, and prints val Q-gap per
iteration against cumulative wall-clock. ``--compare a.json b.json ...`` puts saved curves side
by side (table and one plot).

    python benchmarks/learning.py --budget 10m [--preset standard] [--deals 60 --samples-per-deal 10000]
        [--model large] [--batch-size 512] [--lr 3e-4] [--set shuffle_hands=true --set dropout=0]
        [--compile] [--precision 32|bf16-mixed] [--label NAME] [--out DIR] [--data DIR]
    python benchmarks/learning.py --flywheel quick --budget 30m
    python benchmarks/learning.py --compare runs/learning/a/curve.json runs/learning/b/curve.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from forge.atomic import atomic_write_text
from forge.errors import ForgeError, InputError
from forge.flywheel.config import Config, ConfigError, config_from_dict, load_preset
from forge.flywheel.state import StateStore, load_state
from forge.ml.data import ArrayBatches, load_tensors, shuffle_hand_slots
from forge.ml.evaluate import evaluate_model
from forge.ml.metrics import mover_q
from forge.ml.model import ModelConfig, count_parameters, preset
from forge.ml.module import DominoModule
from forge.ml.schedule import cosine_schedule
from forge.ml.store import StoreError, build_dataset, read_manifest
from forge.ml.tokenize import SELECTIONS
from forge.ml.training import FiniteGuard
from forge.oracle.deal import train_decl
from forge.oracle.generate import generate
from forge.oracle.shard import shard_path

REPO = Path(__file__).resolve().parents[1]
#: Minutes at which the table reports the curve (those within the budget).
FIXED_MINUTES = (5, 15, 30, 60, 120)
#: Resolution of the time-based LR schedule (its "steps" are fractions of the budget).
SCHEDULE_TICKS = 100_000
#: Val Q-gap the project aims at within two hours from scratch on 2 CPU cores.
MOONSHOT_QGAP = 0.5
METRICS = ("q_gap", "accuracy", "blunder_rate")


# ------------------------------------------------------------------------------------------ args


def parse_budget(text: str) -> float:
    """Seconds from "90s", "10m", "1.5h" or a bare number of minutes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"budget must be a positive time like 90s, 10m or 1.5h, got {text!r}")
    return float(m.group(1)) * {"s": 1, "m": 60, "": 60, "h": 3600}[m.group(2)]


def _value(text: str) -> Any:
    """A value as YAML, but ``3e-4`` is a number (YAML 1.1 wants ``3.0e-4``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_settings(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value`` pairs (values as YAML) split into ModelConfig fields and DominoModule kwargs."""
    model_keys = {f.name for f in fields(ModelConfig)}
    # --model and --lr say those two
    module_keys = set(inspect.signature(DominoModule.__init__).parameters) - {"self", "model_config", "lr"}
    model, module = {}, {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in model_keys | module_keys:
            raise InputError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(model_keys | module_keys))}")
        (model if key in model_keys else module)[key] = _value(value)
    return model, module


def flywheel_settings(preset: str, pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (values as YAML) as state.yaml config keys, checked against ``preset``."""
    updates = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--set {pair!r}: expected KEY=VALUE with KEY a state.yaml config key")
        updates[key] = _value(value)
    try:
        config_from_dict({**load_preset(preset).to_dict(), **updates})
    except ConfigError as exc:
        raise InputError(f"--set: {exc}") from None
    return updates


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ------------------------------------------------------------------------------------------ data


def _dataset_ready(out: Path, split: str, jobs: list[tuple[int, int]], k: int, g: int, selection: str = "all") -> bool:
    """Whether ``out`` already holds ``split`` built from exactly these deals at this sampling."""
    try:
        manifest = read_manifest(out)
    except (FileNotFoundError, StoreError):
        return False
    entry = manifest.get("splits", {}).get(split, {})
    sources = [(s.get("seed"), s.get("decl_id")) for s in entry.get("sources", [])]
    return (manifest.get("global_seed") == g and entry.get("samples_per_shard") == k and sources == jobs
            and entry.get("selection", "all") == selection)


def golden_val(cfg: Config, data: Path, per_shard: int, workers: int) -> tuple[Path, float]:
    """The golden val subset as a dataset (shards kept under ``data/golden-h<H>``); seconds spent."""
    jobs = [(s, d) for s in cfg.golden_val_seeds for d in cfg.golden_decls]
    out = data / "tokens" / f"golden-val-h{cfg.hand_size}-k{per_shard}-g{cfg.global_seed}"
    if _dataset_ready(out, "val", jobs, per_shard, cfg.global_seed):
        return out, 0.0
    start = time.perf_counter()
    golden = data / f"golden-h{cfg.hand_size}"
    print(f"golden val: solving and tokenizing {len(jobs)} deals into {golden} ...", file=sys.stderr, flush=True)
    for _ in generate(jobs, golden, hand_size=cfg.hand_size, workers=workers, progress=False):
        pass
    build_dataset({"val": [shard_path(golden, s, d) for s, d in jobs]}, out, per_shard, cfg.global_seed,
                  cache_dir=data / "tokens" / "cache", progress=False)
    return out, time.perf_counter() - start


def train_seeds(start: int, count: int, golden: set[int]) -> list[int]:
    """``count`` consecutive seeds from ``start``, golden seeds skipped (as the flywheel plans them)."""
    seeds, seed = [], start
    while len(seeds) < count:
        if seed not in golden:
            seeds.append(seed)
        seed += 1
    return seeds


def train_deals(cfg: Config, data: Path, seeds: list[int], k: int, workers: int,
                keep_shards: bool, selection: str = "all") -> tuple[list[Path], float, int]:
    """One dataset per training deal (tokenized at ``k``), made where missing, a few deals at a
    time with their shards deleted after tokenizing; returns the datasets, seconds spent and
    deals made."""
    tail = "" if selection == "all" else f"-{selection}"
    root = data / "tokens" / f"train-h{cfg.hand_size}-k{k}-g{cfg.global_seed}{tail}"
    shards = data / f"shards-h{cfg.hand_size}"
    out = {s: root / f"seed_{s:06d}" for s in seeds}
    todo = [s for s in seeds
            if not _dataset_ready(out[s], "train", [(s, train_decl(s))], k, cfg.global_seed, selection)]
    start = time.perf_counter()
    chunk = max(4, workers)
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        print(f"training deals: solving and tokenizing seeds {part[0]}..{part[-1]} "
              f"({i + len(part)}/{len(todo)})", file=sys.stderr, flush=True)
        for res in generate([(s, train_decl(s)) for s in part], shards, hand_size=cfg.hand_size,
                            workers=workers, progress=False):
            build_dataset({"train": [res.path]}, out[res.seed], k, cfg.global_seed,
                          cache_dir=data / "tokens" / "cache", progress=False, selection={"train": selection})
            if not keep_shards:
                res.path.unlink(missing_ok=True)
    return [out[s] for s in seeds], time.perf_counter() - start, len(todo)


def concat_train(datasets: list[Path]) -> dict[str, torch.Tensor]:
    parts = [load_tensors(d, "train", in_memory=True) for d in datasets]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def random_move_q_gap(val: dict[str, torch.Tensor]) -> float:
    """Mean Q-gap of a uniformly random legal move: the floor any learning must beat."""
    q = mover_q(val["qvals"], val["teams"], val["legal"])
    legal = val["legal"] != 0
    gaps = ((q.max(-1).values.unsqueeze(-1) - q) * legal).sum(-1) / legal.sum(-1)
    return float(gaps.double().mean())


# ------------------------------------------------------------------------------------------ training


class TrainClock:
    """Training time on three scales, evaluation pauses excluded: wall-clock seconds, this
    process's CPU seconds, and samples seen. ``budget`` is in the unit of ``kind``.

    CPU seconds are what a shared machine cannot steal: with one torch thread they are about the
    wall-clock the same work takes on an idle core (``--clock cpu``); ``--samples`` budgets make a
    run's curve against samples independent of the machine altogether.
    """

    KINDS = ("wall", "cpu", "samples")

    def __init__(self, budget: float, kind: str = "wall"):
        if kind not in self.KINDS:
            raise InputError(f"clock must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.budget, self.kind = budget, kind
        self.samples = 0
        self._start: tuple[float, float] | None = None
        self._paused_at: tuple[float, float] | None = None
        self._paused = (0.0, 0.0)

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self._start = self._now()

    def seconds(self) -> tuple[float, float]:
        """(wall, cpu) seconds of training so far."""
        if self._start is None:
            return 0.0, 0.0
        now = self._paused_at or self._now()
        return tuple(n - s - p for n, s, p in zip(now, self._start, self._paused))  # type: ignore[return-value]

    def elapsed(self) -> float:
        """Training so far in the budget's unit."""
        wall, cpu = self.seconds()
        return {"wall": wall, "cpu": cpu, "samples": float(self.samples)}[self.kind]

    def fraction(self) -> float:
        return min(1.0, self.elapsed() / self.budget)

    def pause(self) -> None:
        self._paused_at = self._now()

    def resume(self) -> None:
        now = self._now()
        self._paused = tuple(p + n - a for p, n, a in zip(self._paused, now, self._paused_at))  # type: ignore
        self._paused_at = None


class BudgetModule(DominoModule):
    """The project's module with its cosine schedule laid over the budget, not a step count.

    A step-count schedule would need the number of steps that fit in the budget, which a shared
    CPU's speed does not tell in advance; the shape (warm-up, cosine, floor) is the module's own.
    """

    clock: TrainClock

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        opt = self.make_optimizer()
        factor = cosine_schedule(SCHEDULE_TICKS, hp.warmup_frac, hp.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda _: factor(min(SCHEDULE_TICKS - 1, int(self.clock.fraction() * SCHEDULE_TICKS))))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
    value_mae: float | None
    train_loss: float  # mean over the steps since the previous point
    samples_per_s: float  # wall-clock, over the steps since the previous point
    lr: float
    eval_s: float


class Curve(L.Callback):
    """Scores the model on the val subset whenever the clock passes the next mark in ``marks``
    (the budget's unit), and stops training at the budget."""

    def __init__(self, clock: TrainClock, marks: list[float], val: dict[str, torch.Tensor], n_train: int,
                 eval_batch: int, verbose: bool = True):
        self.clock, self.marks, self.val, self.n_train = clock, list(marks), val, n_train
        self.eval_batch, self.verbose = eval_batch, verbose
        self.points: list[Point] = []
        self._loss, self._steps, self._window = 0.0, 0, (0, 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.clock.samples += len(batch["targets"])
        self._loss += float(outputs["loss"])
        self._steps += 1
        t = self.clock.elapsed()
        if not self.marks or t < self.marks[0]:
            return
        while self.marks and t >= self.marks[0]:
            self.marks.pop(0)
        self.clock.pause()
        self._score(trainer, pl_module)
        self.clock.resume()
        if t >= self.clock.budget:
            trainer.should_stop = True

    def _score(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        start = time.perf_counter()
        was_training = pl_module.model.training
        m = evaluate_model(pl_module.model, self.val, self.eval_batch, with_value=True,
                           move_head=pl_module.move_head)
        pl_module.model.train(was_training)
        wall, cpu = self.clock.seconds()
        samples = self.clock.samples
        window = wall - self._window[1]
        point = Point(
            minutes=wall / 60, cpu_minutes=cpu / 60, samples=samples, epochs=samples / self.n_train,
            q_gap=m["q_gap"], decision_q_gap=m.get("decision_q_gap"), accuracy=m["accuracy"],
            blunder_rate=m["blunder_rate"],
            value_mae=m.get("value_mae"), train_loss=self._loss / max(1, self._steps),
            samples_per_s=(samples - self._window[0]) / window if window > 0 else float("nan"),
            lr=trainer.optimizers[0].param_groups[0]["lr"], eval_s=time.perf_counter() - start,
        )
        self.points.append(point)
        self._loss, self._steps, self._window = 0.0, 0, (samples, wall)
        if self.verbose:
            print(f"  {point.minutes:7.2f} min ({point.cpu_minutes:.2f} CPU)  {point.samples:>10,} samples  "
                  f"Q-gap {point.q_gap:.3f}  acc {point.accuracy:.3f}  ({point.samples_per_s:,.0f} samples/s)",
                  file=sys.stderr, flush=True)


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


def train_curve(args: argparse.Namespace, cfg: Config, train: dict[str, torch.Tensor],
                val: dict[str, torch.Tensor]) -> tuple[list[Point], dict[str, Any]]:
    model_over, module_kwargs = parse_settings(args.set)  # checked in main already
    config = ModelConfig(**{**preset(args.model or cfg.model).to_dict(), **model_over})
    lr = args.lr if args.lr is not None else cfg.scratch_lr
    batch_size = args.batch_size or cfg.batch_size
    L.seed_everything(args.seed, verbose=False)
    module = BudgetModule(model_config=config.to_dict(), lr=lr, **module_kwargs)
    clock = TrainClock(args.samples or args.budget, "samples" if args.samples else args.clock)
    module.clock = clock
    if args.compile:
        module.model.compile()
    n_train = len(train["targets"])
    marks = eval_marks(clock.budget, args.points, in_seconds=clock.kind != "samples")
    curve = Curve(clock, marks, val, n_train, args.eval_batch, not args.quiet)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner of GPUs and tips
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=args.precision, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, gradient_clip_val=1.0, callbacks=[FiniteGuard(), curve],
    )
    batches = ArrayBatches(train, batch_size, shuffle=True, seed=args.seed)
    with warnings.catch_warnings():  # Lightning's notes on what this run leaves out on purpose
        warnings.filterwarnings("ignore", message=r".*(validation_step|does not have many workers|LeafSpec).*")
        trainer.fit(module, train_dataloaders=batches)
    setup = {"model": config.to_dict(), "parameters": count_parameters(module.model), "lr": lr,
             "batch_size": batch_size, "module": dict(module.hparams), "precision": args.precision,
             "compile": args.compile, "seed": args.seed, "train_samples": n_train, "clock": clock.kind,
             "budget": clock.budget, "threads": torch.get_num_threads()}
    setup["module"].pop("model_config", None)
    return curve.points, setup


# ------------------------------------------------------------------------------------------ output


def text_table(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]]) -> str:
    """A fixed-width table: each column is (header, key, format spec such as ">8.2f"); the header
    takes the spec's alignment and width."""
    heads = []
    for header, _, spec in columns:
        align, width = re.match(r"([<>^]?)(\d*)", spec).groups()
        heads.append(f"{header:{align or '>'}{width}}")
    head = " ".join(heads)
    return "\n".join([head, "-" * len(head)] + [" ".join(f"{r[key]:{spec}}" for _, key, spec in columns)
                                                 for r in rows])


def table(points: list[dict[str, Any]]) -> str:
    return text_table([("minutes", "minutes", "8.2f"), ("CPU min", "cpu_minutes", "8.2f"),
                       ("samples", "samples", ">11,"), ("epochs", "epochs", "7.2f"), ("Q-gap", "q_gap", "7.3f"),
                       ("decisions", "decision_q_gap", "10.3f"),
                       ("accuracy", "accuracy", "9.4f"), ("blunders", "blunder_rate", "9.4f"),
                       ("loss", "train_loss", "7.4f"), ("samples/s", "samples_per_s", "10,.0f")], points)


def _time_axis(curve: dict[str, Any]) -> tuple[str, str]:
    """The point field and axis label of a curve's clock (CPU minutes for CPU-clock runs)."""
    if curve.get("setup", {}).get("clock") == "cpu":
        return "cpu_minutes", "training CPU minutes (evaluation excluded)"
    return "minutes", "training wall-clock minutes (evaluation excluded)"


def plot(curves: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_samples) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    key, xlabel = _time_axis(curves[0])
    for c in curves:
        pts = c["points"]
        label = c.get("label") or c.get("started", "")
        by_time.plot([p[key] for p in pts], [p["q_gap"] for p in pts], marker="o", ms=3, label=label)
        by_samples.plot([p["samples"] for p in pts], [p["q_gap"] for p in pts], marker="o", ms=3, label=label)
    random_gap = curves[0].get("random_q_gap")
    for ax in (by_time, by_samples):
        if random_gap is not None:
            ax.axhline(random_gap, color="grey", ls=":", lw=1, label="random legal move")
        ax.axhline(MOONSHOT_QGAP, color="green", ls="--", lw=1, label=f"target {MOONSHOT_QGAP}")
        ax.grid(alpha=0.3)
    by_time.set_xlabel(xlabel)
    by_samples.set_xlabel("training samples seen")
    by_time.set_ylabel("golden val Q-gap (points)")
    by_time.legend(fontsize=8)
    cpu = curves[0].get("machine", {}).get("cpu", "")
    fig.suptitle(f"Time to quality from scratch ({cpu})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


# ------------------------------------------------------------------------------------------ modes


def run_learning(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_preset(args.preset)
    data = Path(args.data)
    workers = args.workers or os.cpu_count() or 1
    val_dir, golden_s = golden_val(cfg, data, args.val_per_shard, workers)
    seeds = train_seeds(args.start_seed, args.deals or cfg.seeds_per_iter, cfg.golden_seeds)
    k = args.samples_per_deal or cfg.samples_per_shard
    datasets, deals_s, made = train_deals(cfg, data, seeds, k, workers, args.keep_shards, args.train_states)
    if args.prepare:
        print(f"data ready: {len(seeds)} deals x {k} samples ({made} made now in {deals_s:.0f} s), golden val "
              f"{val_dir} ({golden_s:.0f} s)")
        return {}
    train = concat_train(datasets)
    val = load_tensors(val_dir, "val", in_memory=True)
    load_before = load_average()
    started = datetime.now().isoformat(timespec="seconds")
    budget = f"{args.samples:,} samples" if args.samples else f"{args.budget:.0f} s ({args.clock} clock)"
    print(f"training from scratch for {budget} on {len(train['targets']):,} samples "
          f"({len(seeds)} deals x {k}); scoring on {len(val['targets']):,} golden val states",
          file=sys.stderr, flush=True)
    wall = time.perf_counter()
    points, setup = train_curve(args, cfg, train, val)
    result = {
        "label": args.label, "started": started, "command": " ".join(sys.argv), "mode": "learning",
        "machine": machine(), "load_before": load_before, "load_after": load_average(),
        "budget_s": args.budget, "wall_s": time.perf_counter() - wall, "preset": cfg.preset,
        "hand_size": cfg.hand_size, "setup": setup,
        "data": {"deals": len(seeds), "first_seed": seeds[0], "last_seed": seeds[-1], "samples_per_deal": k,
                 "deals_made_now": made, "deals_s": round(deals_s, 1), "golden_made_s": round(golden_s, 1),
                 "val_states": len(val["targets"]), "val_per_shard": args.val_per_shard,
                 "train_states": args.train_states, "train_samples": len(train["targets"])},
        "random_q_gap": random_move_q_gap(val),
        "points": [p.__dict__ for p in points],
    }
    return result


def _flywheel(ws: Path, *argv: str) -> None:
    cmd = [sys.executable, "-m", "forge.cli.flywheel", "--root", str(ws), *argv]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ForgeError(f"{' '.join(cmd[1:])} failed ({done.returncode}): {tail[0]}")


SPEED_KEYS = ("batch_size", "precision", "compile", "model")


def _variant(text: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """"key=value,key=value" over the base setup: (run keys, model fields, module kwargs)."""
    pairs = [p for p in text.split(",") if p and p != "base"]
    run = {}
    for pair in list(pairs):
        key, _, value = pair.partition("=")
        if key in SPEED_KEYS:
            run[key] = yaml.safe_load(value)
            pairs.remove(pair)
    return (run, *parse_settings(pairs))


def _endless(batches: ArrayBatches) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from batches


def _train_step(module: DominoModule, opt: torch.optim.Optimizer, bf16: bool):
    """One optimiser step as Lightning takes it (autocast, backward, clip to norm 1, AdamW)."""

    def step(batch: dict[str, torch.Tensor]) -> None:
        if module.hparams.shuffle_hands:
            batch = shuffle_hand_slots(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.losses(module(batch), batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()

    return step


def run_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Training throughput of each variant on the real training data, interleaved round by round
    (so a shared machine's load falls on all alike), wall-clock and this process's CPU time.
    With ``--threads 1`` the CPU figures are what an idle core would give."""
    cfg = load_preset(args.preset)
    seeds = train_seeds(args.start_seed, args.deals or cfg.seeds_per_iter, cfg.golden_seeds)
    k = args.samples_per_deal or cfg.samples_per_shard
    datasets, _, _ = train_deals(cfg, Path(args.data), seeds, k, args.workers or os.cpu_count() or 1, False)
    train = concat_train(datasets)
    runs = {}
    for text in args.speed:
        run, model_over, module_kwargs = _variant(text)
        config = ModelConfig(**{**preset(run.get("model", args.model or cfg.model)).to_dict(), **model_over})
        torch.manual_seed(args.seed)
        module = DominoModule(model_config=config.to_dict(), lr=args.lr or cfg.scratch_lr, **module_kwargs).train()
        if run.get("compile", args.compile):
            module.model.compile()
        bf16 = run.get("precision", args.precision) == "bf16-mixed"
        batch_size = run.get("batch_size", args.batch_size or cfg.batch_size)
        batches = _endless(ArrayBatches(train, batch_size, shuffle=True, seed=args.seed, drop_last=True))
        step = _train_step(module, module.make_optimizer(), bf16)
        start = time.perf_counter()
        for _ in range(args.speed_warmup):
            step(next(batches))
        runs[text] = {"step": step, "batches": batches, "batch_size": batch_size,
                      "warmup_s": time.perf_counter() - start, "wall": [], "cpu": []}
    load_before = load_average()
    for _ in range(args.speed_rounds):
        for r in runs.values():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.speed_steps):
                r["step"](next(r["batches"]))
            n = args.speed_steps * r["batch_size"]
            r["wall"].append(n / (time.perf_counter() - wall))
            r["cpu"].append(n / (time.process_time() - cpu))
    base = statistics.median(next(iter(runs.values()))["cpu"])
    rows = [{"variant": text, "batch_size": r["batch_size"], "warmup_s": round(r["warmup_s"], 1),
             "wall_samples_per_s": statistics.median(r["wall"]), "cpu_samples_per_s": statistics.median(r["cpu"]),
             "vs_first": statistics.median(r["cpu"]) / base} for text, r in runs.items()]
    return {"label": args.label, "started": datetime.now().isoformat(timespec="seconds"), "mode": "speed",
            "command": " ".join(sys.argv), "machine": machine(), "load_before": load_before,
            "load_after": load_average(), "rounds": args.speed_rounds, "steps": args.speed_steps, "variants": rows}


def speed_table(rows: list[dict[str, Any]]) -> str:
    return text_table([("variant", "variant", "<40"), ("batch", "batch_size", ">6"),
                       ("warm-up s", "warmup_s", ">10.1f"), ("wall samples/s", "wall_samples_per_s", ">15,.0f"),
                       ("CPU samples/s", "cpu_samples_per_s", ">14,.0f"), ("vs first", "vs_first", ">9.2f")], rows)


def run_flywheel(args: argparse.Namespace) -> dict[str, Any]:
    """Real iterations of a preset in a fresh workspace until the budget is spent (the iteration
    under way is finished). Golden shards are made beforehand (timed apart) and linked in."""
    cfg = load_preset(args.flywheel)
    data = Path(args.data).resolve()
    golden = data / f"golden-h{cfg.hand_size}"
    start = time.perf_counter()
    for _ in generate([(s, d) for s in sorted(cfg.golden_seeds) for d in cfg.golden_decls], golden,
                      hand_size=cfg.hand_size, workers=args.workers, progress=False):
        pass
    golden_s = time.perf_counter() - start
    ws = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="forge-learning-"))
    (ws / "data").mkdir(parents=True, exist_ok=True)
    link = ws / "data" / golden.name
    if not link.exists():
        link.symlink_to(golden, target_is_directory=True)
    _flywheel(ws, "init", "--preset", args.flywheel, "--wandb-group", "learning", "--wandb-mode", "disabled",
              "--force")
    updates = flywheel_settings(args.flywheel, args.set)
    if updates:
        with StateStore(ws).edit() as st:
            st.config = config_from_dict({**st.config.to_dict(), **updates})
    load_before = load_average()
    started = datetime.now().isoformat(timespec="seconds")
    wall = time.perf_counter()
    rows = []
    while time.perf_counter() - wall < args.budget:
        it_start = time.perf_counter()
        _flywheel(ws, "--once", "--no-wandb")
        entry = load_state(ws).history[-1]
        val = entry.val or {}
        rows.append({
            "iteration": entry.iteration, "seeds": entry.total_seeds, "seconds": time.perf_counter() - it_start,
            "minutes": (time.perf_counter() - wall) / 60, **{m: val.get(m) for m in METRICS},
            "timings": dict(entry.timings),
        })
        r = rows[-1]
        if not args.quiet:
            print(f"  iteration {r['iteration']}: {r['minutes']:.1f} min, val Q-gap {r['q_gap']:.3f}", file=sys.stderr,
                  flush=True)
    if not args.workspace:
        shutil.rmtree(ws, ignore_errors=True)
    return {"label": args.label, "started": started, "command": " ".join(sys.argv), "mode": "flywheel",
            "preset": args.flywheel, "settings": updates, "machine": machine(), "load_before": load_before,
            "load_after": load_average(), "budget_s": args.budget, "golden_s": round(golden_s, 1), "iterations": rows}


def flywheel_table(rows: list[dict[str, Any]]) -> str:
    return text_table([("iter", "iteration", ">4"), ("seeds", "seeds", ">6"), ("iter s", "seconds", "7.0f"),
                       ("cum. min", "minutes", "9.2f"), ("Q-gap", "q_gap", "7.3f"), ("accuracy", "accuracy", "9.4f"),
                       ("blunders", "blunder_rate", "9.4f")], rows)


def compare_flywheel(curves: list[dict[str, Any]]) -> None:
    """Flywheel runs side by side: val Q-gap per iteration, cumulative minutes at the last, and the
    mean of the last three iterations (one iteration's Q-gap is noisy)."""
    if not all(c.get("mode") == "flywheel" for c in curves):
        raise InputError("--compare: flywheel runs compare only with flywheel runs")
    width = max(12, *(len(c.get("label") or c["started"]) for c in curves))
    n = max(len(c["iterations"]) for c in curves)
    print(f"{'val Q-gap, iteration':<{width}} " + " ".join(f"{i + 1:>6}" for i in range(n))
          + "   last 3 mean, minutes, load")
    for c in curves:
        rows = c["iterations"]
        cells = " ".join(f"{r['q_gap']:6.3f}" for r in rows) + " " * 7 * (n - len(rows))
        tail = statistics.mean(r["q_gap"] for r in rows[-3:])
        print(f"{(c.get('label') or c['started']):<{width}} {cells}   {tail:.3f}, {rows[-1]['minutes']:.1f}, "
              f"{c.get('load_before')}")


def compare(paths: list[str], out: Path | None) -> None:
    """Q-gap of saved curves point by point (runs of one budget and --points score at the same
    fractions of it), with each run's load average; one plot of them all."""
    curves = []
    for path in paths:
        try:
            curves.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise InputError(f"--compare: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if any(c.get("mode") == "flywheel" for c in curves):
        compare_flywheel(curves)
        return
    key, _ = _time_axis(curves[0])
    width = max(12, *(len(c.get("label") or c["started"]) for c in curves))
    n = max(len(c["points"]) for c in curves)
    print(f"{'Q-gap at point':<{width}} " + " ".join(f"{i + 1:>7}" for i in range(n)) + f"   {key} at the last, load")
    for c in curves:
        pts = c["points"]
        cells = " ".join(f"{p['q_gap']:7.3f}" for p in pts) + " " * 8 * (n - len(pts))
        print(f"{(c.get('label') or c['started']):<{width}} {cells}   {pts[-1][key]:.2f}, {c.get('load_before')}")
    if out is not None:
        plot(curves, out)
        print(f"plot: {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=parse_budget, default=parse_budget("10m"),
                    help="training time: 90s, 10m, 1.5h or minutes (default 10m), on --clock")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what the budget counts: wall-clock, or this process's CPU time (load-proof with --threads 1)")
    ap.add_argument("--samples", type=int, help="budget in training samples instead of time")
    ap.add_argument("--preset", default="standard", help="flywheel preset giving hand size, model, batch, "
                    "scratch LR, golden seeds (default standard)")
    ap.add_argument("--data", default=str(REPO / "data" / "learning"), help="cache of golden shards and tokens")
    ap.add_argument("--out", help="folder for curve.json and curve.png (default runs/learning/<label or time>)")
    ap.add_argument("--label", default="", help="name of this run in tables and plots")
    ap.add_argument("--deals", type=int, help="training deals (default: the preset's seeds per iteration)")
    ap.add_argument("--samples-per-deal", type=int, help="states sampled per deal (default: the preset's)")
    ap.add_argument("--start-seed", type=int, default=0)
    ap.add_argument("--train-states", choices=SELECTIONS, default="all",
                    help="which states training samples: all (the spec's rule) or decisions (a move can lose points)")
    ap.add_argument("--val-per-shard", type=int, default=1000,
                    help="golden val states per shard scored at each point (1000: the quick preset's set)")
    ap.add_argument("--model", help="tiny, small or large (default: the preset's)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float, help="peak LR (default: the preset's scratch_lr)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a ModelConfig field (dropout=0) or DominoModule argument (shuffle_hands=true); "
                         "in flywheel mode a state.yaml config key (lr=3e-4); repeatable")
    ap.add_argument("--precision", default="32", choices=("32", "bf16-mixed"))
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--workers", type=int, help="processes solving deals (default: all cores)")
    ap.add_argument("--points", type=int, default=8, help="evaluations at even fractions of the budget")
    ap.add_argument("--eval-batch", type=int, default=512)
    ap.add_argument("--prepare", action="store_true", help="make the data, then stop")
    ap.add_argument("--keep-shards", action="store_true", help="keep training shards after tokenizing")
    ap.add_argument("--flywheel", choices=("tiny", "quick", "standard"), help="run flywheel iterations instead")
    ap.add_argument("--workspace", help="flywheel mode: workspace folder (default: a temp folder, removed)")
    ap.add_argument("--speed", nargs="+", metavar="VARIANT",
                    help="training throughput instead: variants like base, dropout=0, precision=bf16-mixed, "
                    "compile=true, batch_size=1024 (comma-joined), interleaved; the first is the reference")
    ap.add_argument("--speed-rounds", type=int, default=3)
    ap.add_argument("--speed-steps", type=int, default=5)
    ap.add_argument("--speed-warmup", type=int, default=3)
    ap.add_argument("--compare", nargs="+", metavar="JSON", help="tabulate and plot saved curves side by side")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    for name in ("samples", "deals", "samples_per_deal", "batch_size", "points", "threads", "workers", "val_per_shard"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        ap.error("--lr must be a positive number")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else REPO / "runs" / "learning" / (
        args.label or datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        # a bad key fails before any data is made
        flywheel_settings(args.flywheel, args.set) if args.flywheel else parse_settings(args.set)
        for text in args.speed or []:
            _variant(text)
        if args.compare:
            compare(args.compare, Path(args.out) / "compare.png" if args.out else None)
            return 0
        result = run_speed(args) if args.speed else run_flywheel(args) if args.flywheel else run_learning(args)
        if not result:
            return 0
    except ForgeError as e:
        print(f"learning: {e}", file=sys.stderr)
        return 2
    write_json(out / "curve.json", result)
    m = result["machine"]
    print(f"\n{m['cpu']}, {m['threads']} threads, torch {m['torch']}; load average before "
          f"{result['load_before']}, after {result['load_after']}")
    if args.speed:
        print(f"median of {args.speed_rounds} interleaved rounds of {args.speed_steps} steps each")
        print(speed_table(result["variants"]))
    elif args.flywheel:
        print(f"flywheel preset {args.flywheel}: golden sets ready in {result['golden_s']} s (not counted)")
        print(flywheel_table(result["iterations"]))
    else:
        s, d = result["setup"], result["data"]
        print(f"{result['preset']} preset, model {s['parameters']:,} params, batch {s['batch_size']}, lr {s['lr']:g}, "
              f"{d['deals']} deals x {d['samples_per_deal']} samples; val {d['val_states']:,} golden states "
              f"(random legal move: Q-gap {result['random_q_gap']:.3f}); data made now: {d['deals_made_now']} deals "
              f"in {d['deals_s']} s, golden in {d['golden_made_s']} s (not counted)")
        print(table(result["points"]))
        plot([result], out / "curve.png")
    print(f"saved: {out / 'curve.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
