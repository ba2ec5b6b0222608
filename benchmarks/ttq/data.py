"""Golden val states and training deals for the curve and speed modes, made with the project's
own functions and cached under ``--data``: golden shards are kept (``<data>/golden-h<H>``, also
what flywheel mode links); each training deal is solved, tokenized into its own dataset and its
shard deleted (unless asked to keep it), so disk stays small while any subset of deals can be
trained on together (``forge.ml.training.train(train_dirs=...)``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from forge.flywheel.config import Config
from forge.ml.metrics import mover_q
from forge.ml.store import StoreError, build_dataset, read_manifest
from forge.oracle.deal import train_decl
from forge.oracle.generate import generate
from forge.oracle.shard import shard_path


def dataset_ready(out: Path, split: str, jobs: list[tuple[int, int]], k: int, g: int, selection: str = "all") -> bool:
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
    jobs = [(s, d) for s in cfg.evaluation.golden_val_seeds for d in cfg.evaluation.golden_decls]
    out = data / "tokens" / f"golden-val-h{cfg.data.hand_size}-k{per_shard}-g{cfg.data.global_seed}"
    if dataset_ready(out, "val", jobs, per_shard, cfg.data.global_seed):
        return out, 0.0
    start = time.perf_counter()
    golden = data / f"golden-h{cfg.data.hand_size}"
    print(f"golden val: solving and tokenizing {len(jobs)} deals into {golden} ...", file=sys.stderr, flush=True)
    for _ in generate(jobs, golden, hand_size=cfg.data.hand_size, workers=workers, progress=False):
        pass
    build_dataset({"val": [shard_path(golden, s, d) for s, d in jobs]}, out, per_shard, cfg.data.global_seed,
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
    """One dataset per training deal (``k`` states sampled among ``selection``), made where missing,
    a few deals at a time; returns the datasets, seconds spent and deals made."""
    tail = "" if selection == "all" else f"-{selection}"
    root = data / "tokens" / f"train-h{cfg.data.hand_size}-k{k}-g{cfg.data.global_seed}{tail}"
    shards = data / f"shards-h{cfg.data.hand_size}"
    out = {s: root / f"seed_{s:06d}" for s in seeds}
    todo = [s for s in seeds
            if not dataset_ready(out[s], "train", [(s, train_decl(s))], k, cfg.data.global_seed, selection)]
    start = time.perf_counter()
    chunk = max(4, workers)
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        print(f"training deals: solving and tokenizing seeds {part[0]}..{part[-1]} "
              f"({i + len(part)}/{len(todo)})", file=sys.stderr, flush=True)
        for res in generate([(s, train_decl(s)) for s in part], shards, hand_size=cfg.data.hand_size,
                            workers=workers, progress=False):
            build_dataset({"train": [res.path]}, out[res.seed], k, cfg.data.global_seed,
                          cache_dir=data / "tokens" / "cache", progress=False, selection={"train": selection})
            if not keep_shards:
                res.path.unlink(missing_ok=True)
    return [out[s] for s in seeds], time.perf_counter() - start, len(todo)


def random_move_q_gap(val: dict[str, torch.Tensor]) -> float:
    """Mean Q-gap of a uniformly random legal move: the floor any learning must beat."""
    q = mover_q(val["qvals"], val["teams"], val["legal"])
    legal = val["legal"] != 0
    gaps = ((q.max(-1).values.unsqueeze(-1) - q) * legal).sum(-1) / legal.sum(-1)
    return float(gaps.double().mean())
