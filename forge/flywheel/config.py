"""Flywheel configuration: every value that shapes an iteration, loaded from a preset.

Presets live in ``templates/presets/<name>.yaml`` (the single source of their values); the
chosen configuration is copied into ``state.yaml`` at ``init`` so a workspace keeps running with
the values it started with even if a preset file changes later.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from forge.errors import InputError
from forge.ml.model_presets import PRESETS as MODEL_PRESETS
from forge.ml.settings import PRECISIONS, SELECTIONS
from forge.oracle.executors import EXECUTORS
from forge.oracle.rules import MAX_HAND, N_DECLS

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
PRESETS = TEMPLATES / "presets"
KEEP_SHARDS = ("golden", "all")
#: The largest seed (deal, tokenizer or training seed) the flywheel takes: far beyond any real run, and
#: small enough that every seed, and the seeds counted on from it, stay exact in int64 and float64
#: (polars columns, JSON) everywhere they go.
MAX_SEED = 2**48
#: Bounds checked at load, per field: (lowest, highest), None for no bound. A value outside names its
#: field; the lows that were already checked elsewhere are here too, so that this is the one table.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "seeds_per_iter": (1, 100_000),
    "samples_per_shard": (1, 1_000_000),
    "golden_samples_per_shard": (1, 1_000_000),
    "playout_deals": (0, 100_000),
    "epochs": (1, 10_000),
    # far past any stable rate (a diverging run is a real experiment: training stops at its first
    # non-finite loss), yet far from overflowing a float32 update (1e300 did, naming nothing)
    "lr": (None, 1e12),
    "scratch_lr": (None, 1e12),
    "batch_size": (1, 1 << 20),
    "replay_iters": (0, 100_000),
    "global_seed": (0, MAX_SEED),
    "train_seed": (0, MAX_SEED),
    "golden_val_seeds": (0, MAX_SEED),  # each seed
    "golden_test_seeds": (0, MAX_SEED),
    "devices": (1, 4096),
    "num_nodes": (1, 4096),
    "val_samples": (1, None),
    "train_samples": (1, 10**15),
    "train_seconds": (1.0, 30 * 86400),  # under a second trains nothing: an iteration without training
    "lr_horizon": (1, 10**15),
    "stop_total_seeds": (0, MAX_SEED),
    "retain_last": (1, 100_000),
    "retain_images": (0, 100_000),
    "retain_logs": (1, 100_000),
}
#: accelerator and strategy are names Lightning knows (cpu, gpu, ddp, fsdp, ...), never a path.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RETENTIONS = ("prune", "keep")


class ConfigError(InputError):
    """A configuration value is missing or invalid; the message names the field."""


@dataclass(frozen=True)
class Config:
    preset: str
    hand_size: int  # dominoes per hand (7 = full deals; fewer = reduced games)
    seeds_per_iter: int  # new training deals per iteration (one declaration each: train_decl(seed))
    samples_per_shard: int  # training states sampled from each shard
    golden_val_seeds: list[int]
    golden_test_seeds: list[int]
    golden_decls: list[int]
    golden_samples_per_shard: int
    playout_deals: int  # golden test deals played out by the model (0 = skip)
    model: str  # a model preset: forge.ml.model.PRESETS (tiny, small, large)
    epochs: int
    lr: float  # fine-tuning learning rate
    scratch_lr: float  # learning rate when there is no checkpoint to start from
    batch_size: int
    replay_iters: int  # earlier iterations whose training states are trained on again (a window)
    global_seed: int  # sampling seed of the tokenizer
    stop_iterations: int | None = None  # done after this many iterations
    stop_total_seeds: int | None = None  # done once this many training seeds were used
    stop_target_qgap: float | None = None  # done once val Q-gap <= this
    train_seed: int = 0  # training seed (the run's seed is train_seed + iteration)
    val_samples: int | None = None  # golden val samples scored after each epoch to pick the kept one (None: all)
    # Hardware, through Lightning (forge.ml.training.train): "auto" picks bf16-mixed on a CUDA GPU, fp32 on CPU.
    precision: str = "auto"  # auto | 32 | bf16-mixed | 16-mixed
    accelerator: str = "auto"  # auto | cpu | gpu | cuda
    devices: int = 1  # processes/GPUs per node (>1 with strategy ddp)
    strategy: str = "auto"  # auto | ddp | ...
    num_nodes: int = 1
    compile: bool = False  # torch.compile the model for training
    # Disk: "golden" deletes an iteration's training shards once it is recorded (tokens are kept, and any
    # shard is regenerated from its seed when needed again, e.g. for replay); "all" keeps every shard.
    keep_shards: str = "golden"
    # Where deals are solved: "local" worker processes (default, nothing to start) or a Ray cluster at
    # ray_address (HOST:PORT; null: RAY_ADDRESS or a cluster started on this machine).
    executor: str = "local"
    ray_address: str | None = None
    # Solve the next iteration's deals while this one trains (on cluster workers, or spare local cores).
    prefetch_next: bool = False
    # Which states training samples: "all" (the spec's rule) or "decisions" (only states where a legal move
    # can lose points: most states have one legal move or only optimal ones, and teach the policy nothing) or
    # "mixed" (decisions, and a quarter of the samples among the other states, which the value and Q heads
    # need). Golden sets always hold every state.
    train_states: str = "all"
    # A training budget per iteration, over the window of this and replay_iters earlier iterations' states
    # (at most one; null: `epochs` passes over it): samples, or seconds of the train stage's training.
    train_samples: int | None = None
    train_seconds: float | None = None
    # One learning-rate schedule over every sample the model has seen, across iterations: warm-up and cosine
    # over lr_horizon samples, then flat at its floor, with the optimiser state carried from one iteration
    # to the next. Its peak is scratch_lr for a flywheel that started from scratch, lr from a baseline.
    # null: each iteration fine-tunes with a fresh warm-up and cosine (at lr).
    lr_horizon: int | None = None
    # Loss weights of the value head (the state's value) and of the Q head (every legal move's Q), beside the
    # policy's weight 1; their targets are points / 42 in the loss and their errors are reported in points
    # (value MAE, Q-MAE). The defaults are what a state.yaml written before these fields trained with (no Q
    # head); the presets choose their own (README, "Time to quality").
    value_weight: float = 0.5
    q_weight: float = 0.0
    # Disk (forge.flywheel.retention, docs/disk.md): with retention "prune", once an iteration is recorded every
    # older one but the newest retain_last and (retain_best) the best keeps only its record, stage results,
    # training curve and gzip-compressed notebooks and logs: its checkpoints, HTML pages and W&B debug files
    # go, and the token-cache entries of its deals once it leaves the replay window. "keep": nothing is pruned.
    retention: str = "prune"
    retain_last: int = 3
    retain_best: bool = True
    retain_images: int = 10  # of the pruned iterations, every Nth keeps its notebooks' plots (0: none)
    retain_logs: int = 10  # loop and kernel logs kept (runs/loop-*.log, runs/logs/kernel-*.log), newest first

    @property
    def golden_seeds(self) -> set[int]:
        return set(self.golden_val_seeds) | set(self.golden_test_seeds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(name: str, value: Any, kind: str) -> Any:
    where = f"config.{name}"
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None and optional:
        return None
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"{where} must be a non-negative integer, got {value!r}")
    if kind in ("float", "rate"):
        sign = "positive" if kind == "rate" else "non-negative"
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
                or (kind == "rate" and value == 0)):
            raise ConfigError(f"{where} must be a finite {sign} number, got {value!r}")
        return float(value)
    if kind == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if kind == "ints" and (
        not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in value)
    ):
        raise ConfigError(f"{where} must be a list of non-negative integers, got {value!r}")
    return value


_KINDS = {
    "preset": "str", "hand_size": "int", "seeds_per_iter": "int", "samples_per_shard": "int",
    "golden_val_seeds": "ints", "golden_test_seeds": "ints", "golden_decls": "ints",
    "golden_samples_per_shard": "int", "playout_deals": "int", "model": "str", "epochs": "int",
    "lr": "rate", "scratch_lr": "rate", "batch_size": "int", "replay_iters": "int", "global_seed": "int",
    "stop_iterations": "int?", "stop_total_seeds": "int?", "stop_target_qgap": "float?",
    "train_seed": "int", "val_samples": "int?", "precision": "str", "accelerator": "str", "devices": "int",
    "strategy": "str", "num_nodes": "int", "compile": "bool", "keep_shards": "str", "executor": "str",
    "ray_address": "str?", "prefetch_next": "bool", "train_states": "str", "train_samples": "int?",
    "train_seconds": "float?", "lr_horizon": "int?", "value_weight": "float", "q_weight": "float",
    "retention": "str", "retain_last": "int", "retain_best": "bool", "retain_images": "int", "retain_logs": "int",
}


def _show(bound: float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def config_from_dict(data: Any) -> Config:
    """Validate a mapping into a Config; ConfigError names the first bad field.

    Fields with a default may be left out (files written before they existed keep loading).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"config has unknown field(s): {', '.join(map(str, unknown))}")
    values = {}
    for f in fields(Config):
        if f.name not in data:
            if f.default is MISSING:
                raise ConfigError(f"config.{f.name} is missing")
            continue
        values[f.name] = _check(f.name, data[f.name], _KINDS[f.name])
    for name, (low, high) in BOUNDS.items():
        value = values.get(name)
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                continue
            if low is not None and v < low:
                raise ConfigError(f"config.{name} must be at least {_show(low)}, got {v!r}")
            if high is not None and v > high:
                raise ConfigError(f"config.{name} must be at most {_show(high)}, got {v!r}")
    for name in ("accelerator", "strategy"):
        if name in values and not _NAME.match(values[name]):
            raise ConfigError(f"config.{name} must be a name such as auto, cpu, gpu or ddp (lower-case letters, "
                              f"digits, _), got {values[name]!r}")
    cfg = Config(**values)
    if not 1 <= cfg.hand_size <= MAX_HAND:
        raise ConfigError(f"config.hand_size must be 1..{MAX_HAND}, got {cfg.hand_size}")
    for name in ("seeds_per_iter", "samples_per_shard", "golden_samples_per_shard", "epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config.{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.val_samples is not None and cfg.val_samples < 1:
        raise ConfigError(f"config.val_samples must be at least 1 or null (all), got {cfg.val_samples}")
    for name in ("devices", "num_nodes"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config.{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"config.executor must be one of {', '.join(EXECUTORS)}, got {cfg.executor!r}")
    if cfg.keep_shards not in KEEP_SHARDS:
        raise ConfigError(f"config.keep_shards must be one of {', '.join(KEEP_SHARDS)}, got {cfg.keep_shards!r}")
    if cfg.retention not in RETENTIONS:
        raise ConfigError(f"config.retention must be one of {', '.join(RETENTIONS)}, got {cfg.retention!r}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"config.precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if cfg.train_states not in SELECTIONS:
        raise ConfigError(f"config.train_states must be one of {', '.join(SELECTIONS)}, got {cfg.train_states!r}")
    for name in ("train_samples", "lr_horizon"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ConfigError(f"config.{name} must be at least 1 or null, got {getattr(cfg, name)}")
    if cfg.train_seconds is not None and cfg.train_seconds <= 0:
        raise ConfigError(f"config.train_seconds must be positive or null, got {cfg.train_seconds}")
    if cfg.train_samples is not None and cfg.train_seconds is not None:
        raise ConfigError("config.train_samples and train_seconds are both set: give one training budget")
    if cfg.model not in MODEL_PRESETS:
        raise ConfigError(f"config.model must be one of {', '.join(MODEL_PRESETS)}, got {cfg.model!r}")
    if not cfg.golden_val_seeds or not cfg.golden_test_seeds or not cfg.golden_decls:
        raise ConfigError("config.golden_val_seeds, golden_test_seeds and golden_decls must not be empty")
    if any(d >= N_DECLS for d in cfg.golden_decls):
        raise ConfigError(f"config.golden_decls must be 0..{N_DECLS - 1}, got {cfg.golden_decls}")
    if set(cfg.golden_val_seeds) & set(cfg.golden_test_seeds):
        raise ConfigError("config.golden_val_seeds and golden_test_seeds overlap")
    return cfg


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_preset(name: str, **overrides: Any) -> Config:
    """The named preset from templates/presets, with ``overrides`` applied."""
    path = PRESETS / f"{name}.yaml"
    if name not in preset_names():  # a name from the folder, never a path (``../x``, ``/tmp/y``)
        raise ConfigError(f"unknown preset {name!r} (choose from: {', '.join(preset_names())})")
    data = yaml.safe_load(path.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None}, preset=name)
    return config_from_dict(data)
