"""The progress bar of a run with a training budget: it counts towards the budget, not through an epoch.

Lightning's bar counts the batches of the epoch under way. A budget run stops mid-epoch when its
budget is spent, so that bar ends part-way ("Epoch 0: 46%", an ETA for the rest of an epoch that will
never run), drawn as a failure in a notebook. This bar's total is the budget (samples, or seconds of
training), its ETA the budget's remaining time, and it ends full when the budget is reached.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from forge.ml.schedule import Budget, TrainClock

UNITS = {"samples": "samples", "wall": "s", "cpu": "CPU s"}


def _clock(trainer: L.Trainer) -> TrainClock | None:
    return next((cb.clock for cb in trainer.callbacks if isinstance(cb, Budget)), None)


class BudgetProgressBar(TQDMProgressBar):
    """Training progress in the budget's unit (samples seen, or seconds of training), over all epochs."""

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        clock = _clock(trainer)
        if clock is None or trainer.current_epoch == 0:
            bar = self.train_progress_bar
            bar.reset()
            bar.total = clock.budget if clock is not None else None
            bar.unit = UNITS[clock.kind] if clock is not None else "it"
            bar.set_description(f"training (budget {clock.budget:,g} {bar.unit})" if clock else "training")
        # later epochs go on counting: the budget, not the epoch, is what is being used up

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        clock, bar = _clock(trainer), self.train_progress_bar
        if clock is None or bar is None or bar.disable:
            return
        bar.n = round(min(clock.elapsed(), clock.budget), 1)
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()

    def on_train_end(self, trainer: L.Trainer, *_: Any) -> None:
        clock, bar = _clock(trainer), self.train_progress_bar
        if clock is not None and bar is not None and not bar.disable and clock.elapsed() >= clock.budget:
            bar.n = bar.total  # the budget is reached: the run is complete, not cut short
            bar.set_description(f"training done (budget {clock.budget:,g} {bar.unit} reached)")
            bar.refresh()
        super().on_train_end(trainer, *_)
