"""``python -m forge.cli.train``: train a DominoTransformer on a tokenized dataset.

Each run gets ``<run-dir>/domino/version_N/`` holding ``metrics.csv``, ``checkpoints/``
(``last.ckpt`` and ``best.ckpt``, best by validation Q-gap) and, unless disabled, an offline
W&B run under ``wandb/``. ``--resume CKPT`` starts from a checkpoint's weights (fine-tuning:
fresh optimiser and schedule). From Python, call :func:`train`.
"""

from __future__ import annotations

import os

# On a machine shared with other busy processes, OpenMP threads that spin while waiting make torch
# up to 10x slower; sleeping waits cost little. Only takes effect if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger  # noqa: E402

from forge.cli.common import ArgumentParser, UsageError, number, run_cli  # noqa: E402
from forge.ml.checkpoints import config_of, load_weights, read_checkpoint  # noqa: E402
from forge.ml.data import DominoDataModule  # noqa: E402
from forge.ml.model import PRESETS, ModelConfig, preset  # noqa: E402
from forge.ml.module import DominoModule  # noqa: E402
from forge.ml.store import read_manifest  # noqa: E402

PROG = "python -m forge.cli.train"
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
        raise UsageError(f"{data_dir}: dataset has no 'train' split (has: {', '.join(splits) or 'none'})")
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


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Train a DominoTransformer on a tokenized dataset.")
    p.add_argument("--data", required=True, type=Path, help="tokenized dataset folder (manifest.json)")
    p.add_argument("--epochs", type=number(int), default=10)
    p.add_argument("--lr", type=number(float, 0), default=3e-4)
    p.add_argument("--batch-size", type=number(int), default=512)
    p.add_argument("--model", choices=sorted(PRESETS), default=None,
                   help="architecture preset (default: the --resume checkpoint's, else large)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--run-dir", type=Path, default=Path("runs"))
    p.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True,
                   help="log to W&B, offline, files under the run folder (default: on)")
    p.add_argument("--wandb-group", default=None, metavar="G")
    p.add_argument("--shuffle-hands", action="store_true", help="hand-slot shuffling augmentation")
    p.add_argument("--q-weight", type=number(float, 0), default=0.0, help="weight of the Q-regression loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=number(int), default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    if args.lr == 0:
        raise UsageError("--lr must be positive")
    result = train(
        args.data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, model=args.model,
        resume=args.resume, run_dir=args.run_dir, wandb=args.wandb, wandb_group=args.wandb_group,
        seed=args.seed, threads=args.threads, progress=not args.no_progress,
        module_kwargs={"shuffle_hands": args.shuffle_hands, "q_weight": args.q_weight},
    )
    print(f"run: {result.run_dir}")
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint:
        print(f"best checkpoint: {result.best_checkpoint} (val q_gap {result.best_q_gap:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
