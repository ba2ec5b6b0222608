"""Training a DominoTransformer with Lightning: CSV logs, last/best checkpoints, optional W&B.

Each run gets ``<run_dir>/domino/version_N/`` holding ``metrics.csv``, ``checkpoints/``
(``last.ckpt`` and ``best.ckpt``, best by validation Q-gap) and, unless disabled, an offline
W&B run under ``wandb/``. ``resume`` starts from a checkpoint's weights (fine-tuning: fresh
optimiser and schedule). The CLI is :mod:`forge.cli.train`; the flywheel calls :func:`train`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from forge.ml.checkpoints import config_of, load_weights, read_checkpoint
from forge.ml.data import DominoDataModule
from forge.ml.model import ModelConfig, preset
from forge.ml.module import DominoModule
from forge.ml.store import read_manifest

BEST_METRIC = "val/q_gap"


@dataclass
class TrainResult:
    run_dir: Path  # <run_dir>/domino/version_N
    last_checkpoint: Path
    best_checkpoint: Path | None  # None without a validation split
    metrics_csv: Path
    metrics: dict[str, float] = field(default_factory=dict)  # last logged values (val/..., train/...)
    best_q_gap: float | None = None
    wandb_dir: Path | None = None


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
            project="forge", group=group, name=name, save_dir=str(save_dir), mode=mode,
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


def _check_data(data_dir: Path) -> list[str]:
    splits = sorted(read_manifest(data_dir).get("splits", {}))
    if "train" not in splits:
        raise ValueError(f"{data_dir}: dataset has no 'train' split (has: {', '.join(splits) or 'none'})")
    return splits


def train(
    data_dir: str | Path,
    *,
    epochs: int = 10,
    lr: float = 3e-4,
    batch_size: int = 512,
    model: str | ModelConfig | dict | None = None,
    resume: str | Path | None = None,
    run_dir: str | Path = "runs",
    wandb: bool = True,
    wandb_group: str | None = None,
    wandb_mode: str = "offline",
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    module_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> TrainResult:
    """Train (or fine-tune from ``resume``) and return the run's checkpoints and final metrics.

    ``model`` is a preset name or a :class:`ModelConfig` (or its dict); None means the
    checkpoint's architecture when resuming, else "large". A resume checkpoint of another
    architecture raises CheckpointError.
    ``module_kwargs`` go to :class:`DominoModule` (loss weights, shuffle_hands, ...), and
    ``trainer_kwargs`` to ``lightning.Trainer``.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    splits = _check_data(data_dir)
    if threads:
        torch.set_num_threads(threads)
    ckpt = read_checkpoint(resume) if resume is not None else None
    if model is None:
        config = config_of(ckpt, resume) if ckpt is not None else preset("large")
    elif isinstance(model, ModelConfig):
        config = model
    elif isinstance(model, dict):
        config = ModelConfig(**model)
    else:
        config = preset(model)
    L.seed_everything(seed, verbose=False)
    module = DominoModule(model_config=config.to_dict(), lr=lr, **(module_kwargs or {}))
    if resume is not None:
        load_weights(module, resume)

    csv = CSVLogger(save_dir=str(run_dir), name="domino")
    _ = csv.experiment  # claims version_N (and creates it) before W&B writes there
    version_dir = Path(csv.log_dir)
    loggers: list[Logger] = [csv]
    wb = _wandb_logger(version_dir, wandb_group, wandb_mode, f"domino-v{csv.version}") if wandb else None
    if wb is not None:
        loggers.append(wb)
    for lg in loggers:
        lg.log_hyperparams({"data_dir": str(data_dir), "epochs": epochs, "batch_size": batch_size,
                            "resume": str(resume) if resume else None, "seed": seed})

    has_val = "val" in splits
    ckpt_dir = version_dir / "checkpoints"
    # Two callbacks: Lightning writes "last" only when some checkpoint is written that step,
    # so "last" gets its own every-epoch callback rather than save_last on the "best" one.
    last_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False)
    callbacks: list[L.Callback] = [last_cb, LearningRateMonitor(logging_interval="step")]
    best_cb = None
    if has_val:
        best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=BEST_METRIC, mode="min",
                                  save_top_k=1, enable_version_counter=False)
        callbacks.append(best_cb)
    data = DominoDataModule(data_dir, batch_size=batch_size, seed=seed)
    n_train = read_manifest(data_dir)["splits"]["train"]["count"]
    steps = max(1, -(-n_train // batch_size))
    kwargs: dict[str, Any] = dict(
        max_epochs=epochs, accelerator="auto", devices=1, logger=loggers,
        callbacks=callbacks,
        gradient_clip_val=1.0, log_every_n_steps=max(1, min(50, steps)),
        enable_progress_bar=progress, enable_model_summary=progress, num_sanity_val_steps=0,
        use_distributed_sampler=False, default_root_dir=str(run_dir),
        limit_val_batches=1.0 if has_val else 0,
    )
    extra = dict(trainer_kwargs or {})
    kwargs["callbacks"] += list(extra.pop("callbacks", []))
    kwargs.update(extra)
    trainer = L.Trainer(**kwargs)
    try:
        trainer.fit(module, datamodule=data)
    finally:
        if wb is not None:
            _finish_wandb()

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = Path(best_cb.best_model_path) if best_cb is not None and best_cb.best_model_path else None
    best_score = best_cb.best_model_score if best_cb is not None else None
    return TrainResult(
        run_dir=version_dir,
        last_checkpoint=Path(last_cb.best_model_path or ckpt_dir / "last.ckpt"),
        best_checkpoint=best,
        metrics_csv=version_dir / "metrics.csv",
        metrics=metrics,
        best_q_gap=float(best_score) if best_score is not None else None,
        wandb_dir=version_dir / "wandb" if wb is not None else None,
    )
