"""Training a DominoTransformer with Lightning on any hardware: CSV logs, last/best checkpoints, optional W&B.

Each run gets ``<run_dir>/domino/version_N/`` holding ``metrics.csv``, ``checkpoints/``
(``last.ckpt`` and ``best.ckpt``, best by validation Q-gap) and, unless disabled, an offline
W&B run under ``wandb/``. ``resume`` starts from a checkpoint's weights (fine-tuning: fresh
optimiser and schedule), or, with ``continuing``, goes on with its optimiser state and sample count
under one schedule over ``lr_horizon`` samples (the flywheel's model learning across iterations).
A run trains for ``epochs``, or for a budget of samples or seconds (:mod:`forge.ml.schedule`); it
may train on several datasets' train splits at once (``train_dirs``: a replay window, or a function
giving a window that grows while it trains). The train command and the flywheel's train stage call
:func:`train`.

Hardware is Lightning's business: ``precision``, ``accelerator``, ``devices``, ``strategy``
(``ddp``: one process per device, each reading its own share of the memory-mapped train split)
and ``num_nodes`` go to the Trainer; ``compile`` runs the network through ``torch.compile``.
Whatever the hardware, only global rank 0 writes the run folder and its checkpoints.

A run that diverges fails: :class:`FiniteGuard` stops at the first non-finite training loss
and refuses to checkpoint non-finite weights or validation metrics, and the run's checkpoints
are then deleted, so a caller can never mistake a diverged model for a result.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from forge.commandline import TRAIN
from forge.errors import ForgeError, InputError
from forge.ml.budget_bar import BudgetProgressBar
from forge.ml.checkpoints import config_of, read_checkpoint
from forge.ml.datamodule import DominoDataModule
from forge.ml.devices import on_cuda
from forge.ml.loading import load_weights
from forge.ml.model import PRESETS, ModelConfig, preset
from forge.ml.module import OPTIMIZER_STATES, SAMPLES_SEEN, DominoModule
from forge.ml.run_logs import BEST_METRIC
from forge.ml.schedule import Budget, budget_clock
from forge.ml.settings import WANDB_PROJECT, HardwareSection, TrainingSection
from forge.ml.store import StoreError, load_split, read_manifest

#: Gradients are clipped to this norm in every training step.
GRAD_CLIP = 1.0
#: What "auto" means on a CPU, chosen by measurement (benchmarks/learning.py --speed, 2-core AMD
#: EPYC with AVX-512 BF16, large model, batch 256, 2 threads, quiet machine, medians of 5
#: interleaved rounds): without dropout fp32 trains 717 samples/s, bf16-mixed 678 (0.95x). bf16
#: paid only while the models used dropout (486 vs 659), whose fp32 masks it made cheaper. A CPU
#: with AMX tiles (Intel Sapphire Rapids and later) may differ; it was not measured here.
CPU_PRECISION = "32"
#: Data-parallel strategies that get find_unused_parameters: the Q head takes no gradient
#: while its loss weight is 0, which plain DDP refuses.
_FIND_UNUSED = {"ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"}
#: How rank 0 tells the processes it launches (which re-run the command) its run folder.
_VERSION_ENV = "FORGE_TRAIN_VERSION"


@dataclass
class RunResult:
    run_dir: Path  # <run_dir>/domino/version_N
    last_checkpoint: Path
    best_checkpoint: Path | None  # None without a validation split
    metrics_csv: Path
    metrics: dict[str, float] = field(default_factory=dict)  # last logged values (val/..., train/...)
    best_q_gap: float | None = None
    wandb_dir: Path | None = None
    global_rank: int = 0  # under DDP every process returns; only rank 0's paths were written
    samples: int = 0  # samples this run trained on (all processes together)
    samples_seen: int = 0  # samples the final weights have seen over every run (continuing runs add up)


def best_epoch(per_epoch: Mapping[int, float]) -> int | None:
    """The epoch whose checkpoint a run keeps, from its :data:`BEST_METRIC` per epoch: the lowest, the
    first on a tie (the "best" ModelCheckpoint below, mode "min", replaces its file only when strictly
    lower). The one statement of the rule, for anyone reading a run's log afterwards."""
    return min(per_epoch, key=per_epoch.__getitem__) if per_epoch else None


def result_dict(result: RunResult) -> dict[str, Any]:
    """A RunResult as JSON-able data (paths as text), e.g. for a caller in another process."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}


def result_from_dict(data: dict[str, Any]) -> RunResult:
    paths = ("run_dir", "last_checkpoint", "best_checkpoint", "metrics_csv", "wandb_dir")
    return RunResult(**{k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()})


class TrainingDiverged(ForgeError):
    """Training produced a non-finite loss, weights or metric; the run's checkpoints are deleted."""


class FiniteGuard(L.Callback):
    """Fails the run as soon as training stops being finite.

    Lightning's own means do not fit: ``Trainer(detect_anomaly=True)`` checks every backward
    op (many times slower), and ``EarlyStopping(check_finite=True)`` looks only at validation
    time and then stops quietly, leaving its checkpoints behind. This costs one ``isfinite``
    on the loss per step (plus, with several processes, a one-element all-reduce so that all
    ranks stop at the same step), and one scan of the weights per checkpoint.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return
        bad = not bool(torch.isfinite(loss).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
            raise TrainingDiverged(
                f"training diverged: loss {float(loss)} at epoch {trainer.current_epoch}, batch {batch_idx} "
                f"(step {trainer.global_step}, lr {lr:.3g}); no checkpoint kept; try a lower learning rate")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        bad = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith("val/") and not math.isfinite(float(v))}
        if bad:
            raise TrainingDiverged(f"training diverged: validation at epoch {trainer.current_epoch} gave "
                                   + ", ".join(f"{k} = {v}" for k, v in sorted(bad.items())) + "; no checkpoint kept")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        bad = nonfinite_tensors(checkpoint["state_dict"])
        if bad:
            raise TrainingDiverged(f"training diverged: {len(bad)} weight tensor(s) non-finite at epoch "
                                   f"{trainer.current_epoch} ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
                                   "no checkpoint kept")


def nonfinite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


class SafeWandbLogger(WandbLogger):
    """A WandbLogger whose failures turn into one warning and silence: W&B is a side channel
    and must never stop a training run."""

    _failed = False

    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        if self._failed:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any W&B failure is non-fatal by design
            self._failed = True
            warnings.warn(f"W&B logging disabled after an error in {what}: {e}", stacklevel=2)

    def log_metrics(self, metrics, step=None) -> None:
        self._guard("log_metrics", super().log_metrics, metrics, step)

    def log_hyperparams(self, params) -> None:
        self._guard("log_hyperparams", super().log_hyperparams, params)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._guard("after_save_checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._guard("finalize", super().finalize, status)


def _wandb_logger(save_dir: Path, group: str | None, mode: str, name: str) -> SafeWandbLogger | None:
    """Start W&B now (offline by default) so that a failure shows before training, as a warning."""
    try:
        import wandb

        logger = SafeWandbLogger(
            project=WANDB_PROJECT, group=group, name=name, save_dir=str(save_dir), mode=mode,
            settings=wandb.Settings(silent=True, init_timeout=60, x_disable_stats=True),
        )
        _ = logger.experiment
        return logger
    except Exception as e:  # noqa: BLE001 - W&B must never fail training
        warnings.warn(f"W&B disabled: could not start a {mode} run ({e})", stacklevel=2)
        return None


def _finish_wandb() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"W&B did not finish cleanly: {e}", stacklevel=2)


# ---------------------------------------------------------------------------------------- checks


def _integer(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InputError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_arguments(training: Any, hardware: Any, threads: Any, module_kwargs: Mapping[str, Any]) -> None:
    """What the sections do not check themselves, before anything is read or written: a NaN or infinite
    loss weight would otherwise "train" a model of NaNs."""
    if not isinstance(training, TrainingSection) or not isinstance(hardware, HardwareSection):
        raise InputError("train takes a TrainingSection and a HardwareSection (forge.ml.settings)")
    if threads is not None:
        _integer("threads", threads)
    for key in ("value_weight", "q_weight", "policy_states", "model"):
        if key in module_kwargs:
            raise InputError(f"{key} is a training setting: give it in the TrainingSection, not module_kwargs")
    for key, value in module_kwargs.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            _finite(key, value)


def _check_data(data_dir: Path, train_dirs: list[Path] | None = None) -> list[str]:
    """The dataset's splits, after checking the manifest and the train and val arrays' shapes
    (memory maps: cheap), so that a bad dataset fails before any run folder exists. With
    ``train_dirs``, their train splits are checked and ``data_dir`` needs none."""
    for other in train_dirs or []:
        _check_data(other)
    splits = read_manifest(data_dir).get("splits")
    if not isinstance(splits, dict):
        raise StoreError(f"{data_dir}: manifest.json has no splits table; rebuild the dataset")
    if "train" not in splits and not train_dirs:
        raise StoreError(f"{data_dir}: dataset has no 'train' split (has: {', '.join(sorted(splits)) or 'none'})")
    for name in ("train", "val"):
        if name not in splits or (name == "train" and train_dirs):
            continue
        count = splits[name].get("count") if isinstance(splits[name], dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < (1 if name == "train" else 0):
            raise StoreError(f"{data_dir}: manifest.json gives split {name!r} no usable sample count "
                             f"({count!r}); rebuild the dataset")
        load_split(data_dir, name)
    return sorted(splits)


def _model_config(model: str | ModelConfig | dict | None, ckpt: dict | None, resume: Any) -> ModelConfig:
    if model is None:
        return config_of(ckpt, resume) if ckpt is not None else preset("large")
    if isinstance(model, ModelConfig):
        return model
    if isinstance(model, dict):
        try:
            return ModelConfig(**model)
        except TypeError as e:
            raise InputError(f"model: not a model configuration ({e})") from None
    if model not in PRESETS:
        raise InputError(f"model: unknown preset {model!r} (choose {', '.join(PRESETS)})")
    return preset(model)


# ---------------------------------------------------------------------------------------- hardware


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """"auto": bf16-mixed on a CUDA device that supports bfloat16, 16-mixed on an older one;
    :data:`CPU_PRECISION` on a CPU. Any other value as given."""
    if precision != "auto":
        return precision
    if on_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return CPU_PRECISION


def _strategy(strategy: str) -> str:
    """Lightning's name for ``strategy``; InputError for one that cannot start from here."""
    if strategy in ("ddp", "ddp_spawn") and (hasattr(sys, "ps1") or sys.flags.interactive):
        # Lightning refuses too, naming its own strategy; say what to do instead
        raise InputError(
            f"strategy {strategy!r} starts one process per device by re-running the command, which a notebook "
            f"kernel (or any interactive Python) cannot do: run {TRAIN} with --strategy ddp, "
            "or use strategy 'ddp_notebook', which forks this process (on CPU only safe with one thread per "
            "process: GNU OpenMP hangs in a forked child that starts threads after its parent used them)")
    return f"{strategy}_find_unused_parameters_true" if strategy in _FIND_UNUSED else strategy


def _launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 as far as its launcher says (before Lightning has
    started): a process that Lightning's DDP launcher re-ran, or a torchrun/other-node worker,
    is not, and must not create the run folder."""
    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    return os.environ.get("NODE_RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def _discard_checkpoints(ckpt_dir: Path) -> None:
    shutil.rmtree(ckpt_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------- train


def train(
    data_dir: str | Path,
    training: TrainingSection | None = None,
    hardware: HardwareSection | None = None,
    *,
    resume: str | Path | None = None,
    from_scratch: bool | None = None,
    continuing: bool = False,
    architecture: ModelConfig | None = None,
    run_dir: str | Path = "runs",
    wandb: bool = True,
    wandb_group: str | None = None,
    wandb_mode: str = "offline",
    threads: int | None = None,
    progress: bool = True,
    module_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    train_dirs: list[str | Path] | Callable[[], list[str | Path]] | None = None,
    clock: str = "wall",
) -> RunResult:
    """Train (or fine-tune from ``resume``) as ``training`` and ``hardware`` say (:mod:`forge.ml.settings`:
    their defaults without them), and return the run's checkpoints and final metrics.

    The network is ``training.model``'s preset, or ``architecture`` (any :class:`ModelConfig`); with
    neither, the resumed checkpoint's, else "large". A resume checkpoint of another architecture raises
    CheckpointError. The learning rate's peak is ``training.scratch_lr`` when the weights start from
    scratch (``from_scratch``; default: without ``resume``) and ``training.lr`` otherwise.
    ``training.val_samples`` validates on that many samples spread over the val split (enough to choose
    the epoch; the full golden sets are scored once, afterwards); None: the whole split.
    ``module_kwargs`` go to :class:`DominoModule` (shuffle_hands, ...), ``trainer_kwargs`` to
    ``lightning.Trainer``.

    ``train_dirs`` trains on those datasets' train splits together (``data_dir`` then gives only
    val/test); a function instead of a list is asked again at each epoch's start, so deals made
    while the run trains join it (an epoch is then one pass over the window as it stood).

    A budget (``training.train_samples`` or ``train_seconds``, of ``clock``: wall or cpu) stops the run
    there, mid-epoch if need be, lays the LR schedule over the budget, validates once at the end and
    keeps the last weights. ``training.lr_horizon`` lays the schedule over every sample the weights
    have seen instead, and ``continuing`` takes the ``resume`` checkpoint's optimiser state and sample
    count along, so a sequence of runs follows one warm-up and one cosine.

    Bad arguments raise InputError and a bad dataset StoreError before any run folder is made;
    a run that diverges raises :class:`TrainingDiverged` and leaves no checkpoint.
    """
    training = TrainingSection() if training is None else training
    hardware = HardwareSection() if hardware is None else hardware
    module_kwargs = dict(module_kwargs or {})
    _check_arguments(training, hardware, threads, module_kwargs)
    budget = budget_clock(training.train_samples, training.train_seconds, clock)
    if continuing and resume is None:
        raise InputError("continuing goes on from a checkpoint: give resume")
    epochs = None if budget is not None else training.epochs
    lr = training.peak_lr(resume is None if from_scratch is None else from_scratch)
    seed = training.train_seed % 2**32  # Lightning would replace a larger seed by a random one
    batch_size, val_samples, lr_horizon = training.batch_size, training.val_samples, training.lr_horizon
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    window = train_dirs if callable(train_dirs) else None  # a window that grows as the run goes
    fixed = train_dirs() if callable(train_dirs) else train_dirs
    train_dirs = [Path(d) for d in fixed] if fixed else None
    if window is not None and not train_dirs:
        raise InputError("a growing train window needs at least one dataset to start from")
    splits = _check_data(data_dir, train_dirs)
    ckpt = read_checkpoint(resume) if resume is not None else None
    config = _model_config(architecture or training.model, ckpt, resume)
    if threads:
        torch.set_num_threads(threads)
    accelerator, precision = hardware.accelerator, resolve_precision(hardware.precision, hardware.accelerator)
    L.seed_everything(seed, verbose=False)
    module = DominoModule(model_config=config.to_dict(), lr=lr, value_weight=training.value_weight,
                          q_weight=training.q_weight, policy_states=training.policy_states, **module_kwargs)
    if resume is not None:
        load_weights(module, resume, ckpt)
    if continuing:
        module.samples_seen = int(ckpt.get(SAMPLES_SEEN) or 0)
        states = ckpt.get(OPTIMIZER_STATES) or []
        module.optimizer_state = states[0] if states else None  # an imported model starts a fresh one
    if lr_horizon is not None:
        module.lr_progress = lambda: module.samples_seen / lr_horizon
    elif budget is not None:
        module.lr_progress = budget.fraction
    samples_before = module.samples_seen
    if hardware.compile:
        module.model.compile()  # in place: the state dict (hence the checkpoint) keeps its keys

    rank_zero = _launched_as_rank_zero()
    version = None if rank_zero else os.environ.get(_VERSION_ENV)
    csv = CSVLogger(save_dir=str(run_dir), name="domino", version=int(version) if version else None)
    version_dir = Path(csv.log_dir)  # version_N, chosen (not yet made) by listing the existing ones
    has_val = "val" in splits
    ckpt_dir = version_dir / "checkpoints"
    # Two callbacks: Lightning writes "last" only when some checkpoint is written that step,
    # so "last" gets its own every-epoch callback rather than save_last on the "best" one.
    last_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False)
    counter = Budget(budget)
    validated = LastValidation()
    callbacks: list[L.Callback] = [FiniteGuard(), counter, last_cb, LearningRateMonitor(logging_interval="step"),
                                   validated]
    if budget is not None and progress:  # Lightning's bar would stop part-way through an epoch, drawn as failed
        callbacks.append(BudgetProgressBar())
    best_cb = None
    if has_val and budget is None:  # a budget run keeps its last weights (a continuing schedule goes on from them)
        best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=BEST_METRIC, mode="min",
                                  save_top_k=1, enable_version_counter=False)
        callbacks.append(best_cb)
    data = DominoDataModule(data_dir, batch_size=batch_size, seed=seed, val_samples=val_samples,
                            train_dirs=window or train_dirs)
    n_train = sum(read_manifest(d)["splits"]["train"]["count"] for d in train_dirs or [data_dir])
    steps = max(1, -(-n_train // batch_size))
    kwargs: dict[str, Any] = dict(
        max_epochs=-1 if epochs is None else epochs, accelerator=accelerator, devices=hardware.devices,
        strategy=_strategy(hardware.strategy), num_nodes=hardware.num_nodes, precision=precision, logger=[csv],
        callbacks=callbacks,
        # at least ~20 logged points per epoch (loss, learning rate), so a short run's curves and its
        # warm-up + cosine schedule are drawn, not two points
        gradient_clip_val=GRAD_CLIP, log_every_n_steps=max(1, min(50, steps // 20)),
        enable_progress_bar=progress, enable_model_summary=progress, num_sanity_val_steps=0,
        use_distributed_sampler=False, default_root_dir=str(run_dir),
        limit_val_batches=1.0 if has_val else 0,
        reload_dataloaders_every_n_epochs=1 if window is not None else 0,
    )
    extra = dict(trainer_kwargs or {})
    kwargs["callbacks"] += list(extra.pop("callbacks", []))
    kwargs.update(extra)
    try:
        trainer = L.Trainer(**kwargs)
    except (MisconfigurationException, ValueError) as e:
        raise InputError(f"cannot train on this hardware setting: {str(e).splitlines()[0]}") from None
    if precision == "16-mixed" and isinstance(trainer.accelerator, CPUAccelerator):
        # Lightning would quietly train in bf16-mixed instead: say so rather than do something else
        raise InputError("precision 16-mixed needs a GPU (fp16 autocast does not run on CPU); use bf16-mixed or 32")

    # Everything is checked: only now does the run folder (version_N) come to exist.
    loggers: list[Logger] = [csv]
    wb = None
    if rank_zero:
        _ = csv.experiment  # claims version_N (and creates it) before W&B writes there
        wb = _wandb_logger(version_dir, wandb_group, wandb_mode, f"domino-v{csv.version}") if wandb else None
        if wb is not None:
            loggers.append(wb)
        trainer.loggers = loggers
        for lg in loggers:
            lg.log_hyperparams({"data_dir": str(data_dir), "epochs": epochs, "batch_size": batch_size,
                                "resume": str(resume) if resume else None, "seed": seed, "lr": lr,
                                "precision": precision, "accelerator": accelerator, "devices": hardware.devices,
                                "strategy": hardware.strategy, "num_nodes": hardware.num_nodes,
                                "compile": hardware.compile, "val_samples": val_samples,
                                "max_samples": training.train_samples, "max_seconds": training.train_seconds,
                                "clock": clock, "lr_horizon": lr_horizon,
                                "continuing": continuing, "samples_seen_before": samples_before,
                                "train_dirs": [str(d) for d in train_dirs] if train_dirs else None,
                                "growing_window": window is not None})
        os.environ[_VERSION_ENV] = str(csv.version)  # for the processes a DDP launch starts
    try:
        _fit(trainer, module, data)
        if budget is not None:  # stopped mid-epoch: score the final weights once, and keep them
            if has_val and validated.step != trainer.global_step:  # not already, at an epoch's end
                _validate(trainer, module, data)
            trainer.save_checkpoint(ckpt_dir / "last.ckpt")
        bad = nonfinite_tensors(module.state_dict())
        if bad:
            raise TrainingDiverged(f"training diverged: {len(bad)} weight tensor(s) non-finite after the last "
                                   f"epoch ({', '.join(bad[:3])}); no checkpoint kept")
    except TrainingDiverged:
        if trainer.is_global_zero:
            _discard_checkpoints(ckpt_dir)
        raise
    finally:
        if rank_zero:
            os.environ.pop(_VERSION_ENV, None)
        if wb is not None:
            _finish_wandb()

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = Path(best_cb.best_model_path) if best_cb is not None and best_cb.best_model_path else None
    best_score = best_cb.best_model_score if best_cb is not None else None
    return RunResult(
        run_dir=version_dir,
        last_checkpoint=Path(last_cb.best_model_path or ckpt_dir / "last.ckpt"),
        best_checkpoint=best,
        metrics_csv=version_dir / "metrics.csv",
        metrics=metrics,
        best_q_gap=float(best_score) if best_score is not None else None,
        wandb_dir=version_dir / "wandb" if wb is not None else None,
        global_rank=trainer.global_rank,
        samples=module.samples_seen - samples_before,
        samples_seen=module.samples_seen,
    )


class LastValidation(L.Callback):
    """The step of the last validation during fit: a budget run that stopped at an epoch's end has
    scored its final weights already, and must not log the same point a second time."""

    step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def _validate(trainer: L.Trainer, module: DominoModule, data: DominoDataModule) -> None:
    """One validation pass after fit, its figures logged at the last step like an epoch's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\('val/")
        trainer.validate(module, datamodule=data, verbose=False)


def _fit(trainer: L.Trainer, module: DominoModule, data: DominoDataModule) -> None:
    """``trainer.fit``, with Ctrl+C and SIGTERM given back to the caller as they came.

    Lightning answers a KeyboardInterrupt with a graceful shutdown, then ``sys.exit(1)`` with
    SIGINT left ignored for the rest of the process (a notebook kernel could then never be
    interrupted again); the caller gets the interruption itself, and its SIGINT handler back.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        with warnings.catch_warnings():
            # Under DDP every rank validates the same samples with the same weights, so the
            # epoch-level validation figures need no all-reduce (Lightning suggests one for each).
            warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\('val/")
            trainer.fit(module, datamodule=data)
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt):
            raise stop.__context__ from None
        raise
    finally:
        if main_thread and sigint is not None:
            signal.signal(signal.SIGINT, sigint)
