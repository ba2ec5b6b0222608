"""A Lightning callback that publishes training progress (epoch, step, loss, ETA) for the panel."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L

from forge.flywheel.progress import StageProgress
from forge.ml.schedule import Budget


def _budget(trainer: L.Trainer) -> Budget | None:
    """The run's budget, when it has one (a run without one trains for its epochs)."""
    found = next((cb for cb in trainer.callbacks if isinstance(cb, Budget)), None)
    return found if found is not None and math.isfinite(found.clock.budget) else None


class TrainProgress(L.Callback):
    def __init__(self, progress: StageProgress):
        self.progress = progress
        self._t0 = 0.0
        self._step0 = 0

    def _total(self, trainer: L.Trainer) -> int:
        """Steps the run will take: its epochs', or under a budget, as far as the budget's clock
        tells (exact for samples, an estimate from the pace so far for seconds)."""
        budget = _budget(trainer)
        if budget is None:
            return int(trainer.estimated_stepping_batches)
        done, fraction = trainer.global_step - self._step0, budget.clock.fraction()
        if budget.clock.kind == "samples":
            per_step = budget.clock.samples / done if done else None
            return self._step0 + (math.ceil(budget.clock.budget / per_step) if per_step else 0)
        return self._step0 + (math.ceil(done / fraction) if fraction > 0 else 0)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._t0, self._step0 = time.monotonic(), trainer.global_step
        self.progress.update(phase="training", done=trainer.global_step, total=self._total(trainer), force=True)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        total = self._total(trainer)
        step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        rate = (step - self._step0) / max(1e-9, time.monotonic() - self._t0)
        eta = (total - step) / rate if rate > 0 else None
        budget = _budget(trainer)
        if budget is None:
            detail = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        elif budget.clock.kind == "samples":
            detail = f"{budget.clock.samples:,}/{budget.clock.budget:,.0f} samples"
        else:
            detail = f"{budget.clock.elapsed():.0f}/{budget.clock.budget:.0f} s of training"
        if loss is not None:
            detail += f", loss {float(loss):.4f}"
        if eta is not None:
            detail += f", ETA {eta:.0f} s"
        self.progress.update(phase="training", done=step, total=total, detail=detail)

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        where = "after the budget" if _budget(trainer) is not None else f"after epoch {trainer.current_epoch + 1}"
        self.progress.update(phase="validating", detail=where, force=True)
