"""A Lightning callback that publishes training progress (epoch, step, loss, ETA) for the panel."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from forge.flywheel.progress import StageProgress


class TrainProgress(L.Callback):
    def __init__(self, progress: StageProgress):
        self.progress = progress
        self._t0 = 0.0
        self._step0 = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._t0, self._step0 = time.monotonic(), trainer.global_step
        self.progress.update(phase="training", done=trainer.global_step,
                             total=int(trainer.estimated_stepping_batches), force=True)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        total = int(trainer.estimated_stepping_batches)
        step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        rate = (step - self._step0) / max(1e-9, time.monotonic() - self._t0)
        eta = (total - step) / rate if rate > 0 else None
        detail = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        if loss is not None:
            detail += f", loss {float(loss):.4f}"
        if eta is not None:
            detail += f", ETA {eta:.0f} s"
        self.progress.update(phase="training", done=step, total=total, detail=detail)

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.progress.update(phase="validating", detail=f"after epoch {trainer.current_epoch + 1}", force=True)
