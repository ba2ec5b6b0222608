"""Time to quality: how fast training from scratch makes a model that plays like the oracle.

The headline figure of the project, in four modes (each a module of ``benchmarks/ttq/``):

- curve (default): a fresh DominoTransformer trained for ``--budget`` (by default 10 minutes of
  this process's CPU time on one torch thread, which a shared machine cannot steal; ``--clock
  wall``; or ``--samples``) through the project's own training, on ``--deals`` deals with the
  preset's recipe (default ``quick``: the small model at scratch_lr, its samples per deal and
  training states), scored at fixed times and at ``--points`` even fractions of the budget on a
  fixed subset of the golden val states (``--val-per-shard`` samples from each of seeds 900-902 x
  10 declarations);
- ``--speed VARIANT ...``: training throughput of variants, interleaved;
- ``--flywheel quick|standard|tiny``: a real loop in a fresh workspace until the budget is spent;
- ``--compare a.json b.json ...``: saved runs side by side (flywheel runs beside wall-clock
  trainer runs: Q-gap, value MAE and Q-MAE at wall-clock minutes, with the reference's figures).

Each run writes ``curve.json`` (and ``curve.png`` with its Q-gap, ``curve-metrics.png`` with the
reference catalog's other metrics, for curves and flywheel runs) under ``--out``. Data are built with
the project's public functions and cached under ``--data``; the time spent making data is
reported apart from the training clock.

    python benchmarks/learning.py [--budget 10m] [--preset quick|standard] [--train-states all|decisions]
        [--deals 60 --samples-per-deal 40000] [--model large] [--batch-size 256] [--lr 2e-3] [--ema 0.999]
        [--set move_head=q --set q_weight=1 --set policy_weight=0] [--label NAME] [--out DIR]
    python benchmarks/learning.py --budget 2h --clock wall --threads 2
    python benchmarks/learning.py --flywheel quick --budget 2h
    python benchmarks/learning.py --speed base precision=bf16-mixed --threads 2 --clock wall
    python benchmarks/learning.py --compare runs/learning/a/curve.json runs/learning/b/curve.json
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime
from pathlib import Path

import torch
from ttq import compare, curve, flywheel, speed
from ttq.common import REPO, flywheel_settings, parse_budget, parse_settings, write_json

from forge.errors import ForgeError
from forge.flywheel.config import RECIPES, load_preset, takes_gpu_recipe
from forge.ml.settings import SELECTIONS

#: Training deals of a curve or speed run unless --deals says otherwise.
DEALS = 60


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=parse_budget, default=parse_budget("10m"),
                    help="training time: 90s, 10m, 1.5h or minutes (default 10m), on --clock")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                    help="what the budget counts: this process's CPU time (default; load-proof with one thread) "
                         "or wall-clock")
    ap.add_argument("--samples", type=int, help="budget in training samples instead of time")
    ap.add_argument("--preset", default="quick", help="flywheel preset giving hand size, model, batch, "
                    "scratch LR, samples per deal, training states, golden seeds (default quick)")
    ap.add_argument("--data", default=str(REPO / "data" / "learning"), help="cache of golden shards and tokens")
    ap.add_argument("--out", help="folder for curve.json and curve.png (default runs/learning/<label or time>)")
    ap.add_argument("--label", default="", help="name of this run in tables and plots")
    ap.add_argument("--deals", type=int, default=DEALS, help=f"training deals (default {DEALS})")
    ap.add_argument("--samples-per-deal", type=int, help="states sampled per deal (default: the preset's)")
    ap.add_argument("--start-seed", type=int, default=0)
    ap.add_argument("--train-states", choices=SELECTIONS,
                    help="which states training samples: all (the spec's rule) or decisions (a move can lose "
                         "points); default: the preset's")
    ap.add_argument("--val-per-shard", type=int, default=1000,
                    help="golden val states per shard scored at each point (1000: the quick preset's set)")
    ap.add_argument("--model", help="tiny, small or large (default: the preset's)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float, help="peak LR (default: the preset's scratch_lr)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a ModelConfig field (dropout=0) or DominoModule argument (shuffle_hands=true); "
                         "in flywheel mode a state.yaml config key (lr=3e-4); repeatable")
    ap.add_argument("--ema", type=float, metavar="DECAY",
                    help="curve mode: also score an exponential moving average of the weights (e.g. 0.999)")
    ap.add_argument("--precision", choices=("32", "bf16-mixed"),
                    help="default: 32 on a CPU, the GPU recipe's (bf16-mixed) on a GPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network (the GPU recipe does)")
    ap.add_argument("--recipe", choices=RECIPES, default="auto",
                    help="curve mode: gpu trains with the preset's GPU recipe (its gpu block: model, batch, LR, "
                         "precision, compile) on CUDA; auto (default): that when torch sees a CUDA GPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: with --clock cpu, what an "
                    "idle core gives, whatever else the machine runs)")
    ap.add_argument("--workers", type=int, help="processes solving deals (default: all cores)")
    ap.add_argument("--points", type=int, default=8, help="evaluations at even fractions of the budget")
    ap.add_argument("--eval-batch", type=int, default=512)
    ap.add_argument("--fresh", action="store_true",
                    help="curve mode: keep solving new deals beside training (one process, one core), taken in "
                         "at each epoch's start; --deals are the first ones; the CPU share of solving is reported")
    ap.add_argument("--window", type=int, help="--fresh: train on the latest N deals (default 120: about 2 GB of "
                    "RAM at 40,000 samples per deal)")
    ap.add_argument("--prepare", action="store_true", help="make the data, then stop")
    ap.add_argument("--keep-shards", action="store_true", help="keep training shards after tokenizing")
    ap.add_argument("--flywheel", choices=("tiny", "quick", "standard"), help="run a flywheel loop instead")
    ap.add_argument("--workspace", help="flywheel mode: workspace folder (default: a temp folder, removed)")
    ap.add_argument("--speed", nargs="+", metavar="VARIANT",
                    help="training throughput instead: variants like base, dropout=0, precision=bf16-mixed, "
                    "compile=true, batch_size=1024 (comma-joined), interleaved; the first is the reference")
    ap.add_argument("--speed-rounds", type=int, default=3)
    ap.add_argument("--speed-steps", type=int, default=5)
    ap.add_argument("--speed-warmup", type=int, default=3)
    ap.add_argument("--compare", nargs="+", metavar="JSON", help="tabulate and plot saved curves side by side")
    ap.add_argument("--quiet", action="store_true")
    return ap


def use_gpu(recipe: str, preset: str) -> bool:
    """Whether a curve trains with the preset's GPU recipe (forge's choice, as init makes it); asked
    for, it also needs a CUDA GPU here, since the benchmark trains now."""
    gpu = takes_gpu_recipe(recipe, preset, torch.cuda.is_available)
    if gpu and not torch.cuda.is_available():
        raise ForgeError("--recipe gpu: torch sees no CUDA GPU on this machine")
    return gpu


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    for name in ("samples", "deals", "window", "samples_per_deal", "batch_size", "points", "threads", "workers",
                 "val_per_shard", "speed_rounds", "speed_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        ap.error("--lr must be a positive number")
    try:
        args.gpu = use_gpu(args.recipe, args.preset) and not args.flywheel  # a flywheel takes its state.yaml's
    except ForgeError as e:
        ap.error(str(e))
    if args.train_states is None:
        args.train_states = load_preset(args.flywheel or args.preset, gpu=args.gpu).data.train_states
    out = Path(args.out) if args.out else REPO / "runs" / "learning" / (
        args.label or datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        # a bad key fails before any data is made (and before this process's threads are touched)
        flywheel_settings(args.flywheel, args.set) if args.flywheel else parse_settings(args.set)
        for text in args.speed or []:
            speed.variant(text)
        if args.compare:
            compare.compare(args.compare, Path(args.out) / "compare.png" if args.out else None)
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.speed:
            result = speed.run_speed(args, out)
        elif args.flywheel:
            result = flywheel.run_flywheel(args)
        else:
            result = curve.run_curve(args, out)
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
        speed.report(result, args)
    elif args.flywheel:
        flywheel.report(result)
        flywheel.plot([result], out / "curve.png")
        print(f"plot: {out / 'curve.png'}")
    else:
        curve.report(result, out)
    print(f"saved: {out / 'curve.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
