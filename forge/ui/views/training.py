"""What the train stage did: a curve redrawn while Lightning trains, then the run's curves, its
learning-rate schedule, which epoch's checkpoint was kept and why, and its throughput.

The live curve is a Lightning callback passed to the stage (``stages.train.run(ctx,
callbacks=[curve])``); everything else reads the run's ``metrics.csv``, so a stage that was
already done (and trained nothing in this kernel) shows the same record.
"""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from forge.flywheel.stages.train import TrainResult
from forge.ml.training import BEST_METRIC, best_epoch
from forge.ui.views.display import displayable, live


class LiveCurve(L.Callback):
    """Training loss per step and validation Q-gap per epoch, redrawn in place in the notebook.

    Live (a person's notebook) it redraws at most every ``every`` seconds, after each validation
    and when training ends. Headless (the loop) nobody watches, so it draws nothing: the notebook's
    curves from metrics.csv follow anyway. Either way it measures training throughput (samples per
    second of training steps, validation excluded).
    """

    def __init__(self, every: float = 2.0, redraw: bool | None = None):
        self.every = every
        self.redraw = live() if redraw is None else redraw
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val: list[tuple[int, float]] = []  # (step, val Q-gap)
        self.samples = 0
        self.seconds = 0.0
        self._tick: float | None = None
        self._drawn = 0.0
        self._handle: Any = None

    @property
    def samples_per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tick = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._tick is None:
            self._tick = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        self.seconds += now - (self._tick or now)
        self._tick = now  # the next step's time includes fetching its batch
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.steps.append(int(trainer.global_step))
        self.losses.append(float(loss))
        self.samples += len(batch["targets"])
        if self.redraw and now - self._drawn >= self.every:
            self.draw()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gap = trainer.callback_metrics.get(BEST_METRIC)
        if gap is not None and not trainer.sanity_checking:
            self.val.append((int(trainer.global_step), float(gap)))
            if self.redraw:
                self.draw()
        self._tick = None  # validation time is not training time

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.redraw:
            self.draw()

    def figure(self) -> Figure:
        fig, ax = plt.subplots(figsize=(8, 3))
        lines = ax.plot(self.steps, self.losses, color="#4575b4", lw=1, label="train loss, per step (left)")
        ax.set_xlabel("step")
        ax.set_ylabel("train loss", color="#4575b4")
        if self.val:
            ax_gap = ax.twinx()
            lines += ax_gap.plot(*zip(*self.val), "o-", color="#d73027", label="val Q-gap, per epoch (right)")
            ax_gap.set_ylabel("val Q-gap (points / move)", color="#d73027")
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper right")  # both axes' lines
        rate = self.samples_per_second
        ax.set_title(f"training live: step {self.steps[-1] if self.steps else 0}"
                     + (f", {rate:,.0f} samples/s" if rate else ""), fontsize=10)
        fig.tight_layout()
        return fig

    def draw(self) -> None:
        from IPython.display import display

        image = displayable(self.figure())
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self._drawn = time.perf_counter()


def metrics_frame(csv: str | os.PathLike) -> pl.DataFrame:
    """The run's ``metrics.csv`` (Lightning's CSVLogger: one row per logging call, blanks elsewhere)."""
    return pl.read_csv(csv, infer_schema_length=None)


def _series(frame: pl.DataFrame, column: str, x: str = "step") -> tuple[list, list]:
    if column not in frame.columns:
        return [], []
    part = frame.filter(pl.col(column).is_not_null()).select(x, column)
    return part[x].to_list(), part[column].to_list()


def per_epoch(frame: pl.DataFrame, column: str) -> tuple[list[int], list[float]]:
    """A per-epoch metric with epochs numbered from 1, as the train stage's result numbers them."""
    epochs, values = _series(frame, column, "epoch")
    return [int(e) + 1 for e in epochs], values


def lr_columns(frame: pl.DataFrame) -> list[str]:
    """LearningRateMonitor's columns (``lr-<optimizer>/pg<N>``, one per parameter group)."""
    return [c for c in frame.columns if c.startswith("lr-")]


def curves_figure(frame: pl.DataFrame, kept_epoch: int | None = None) -> Figure:
    """Losses, validation Q-gap and accuracy per epoch, and the learning-rate schedule."""
    fig, (ax_loss, ax_val, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.3))
    ax_loss.plot(*_series(frame, "train/loss"), color="#4575b4", lw=1, alpha=0.7, label="train (step)")
    ax_loss.plot(*_series(frame, "train/loss_epoch"), "s-", color="#313695", label="train (epoch mean)")
    ax_loss.plot(*_series(frame, "val/loss"), "o-", color="#d73027", label="val")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("loss")
    ax_loss.legend(fontsize=8)
    epochs, gaps = per_epoch(frame, BEST_METRIC)
    lines = ax_val.plot(epochs, gaps, "o-", color="#d73027", label="val Q-gap (left)")
    if kept_epoch is not None and kept_epoch in epochs:
        lines += ax_val.plot([kept_epoch], [gaps[epochs.index(kept_epoch)]], "*", ms=16, color="#fdae61",
                             label="kept checkpoint")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("Q-gap (points / move)", color="#d73027")
    ax_val.set_xticks(sorted(set(epochs)))
    ax_val.set_title("validation")
    ax_acc = ax_val.twinx()
    lines += ax_acc.plot(*per_epoch(frame, "val/accuracy"), "s--", color="#2b7de9", label="val accuracy (right)")
    ax_acc.set_ylabel("accuracy (share of states)", color="#2b7de9")
    # one legend for both axes' lines (a twin axis' own legend would leave its lines unnamed)
    ax_val.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    for column in lr_columns(frame):
        steps, rates = _series(frame, column)
        ax_lr.plot(steps, rates, lw=1.2, marker="." if len(steps) < 30 else None, label=column)
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("learning rate as logged (linear warm-up, then cosine)", fontsize=9)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if lr_columns(frame):
        ax_lr.legend(fontsize=7)
    fig.tight_layout()
    return fig


def kept_checkpoint(result: TrainResult, frame: pl.DataFrame) -> tuple[int | None, str]:
    """Which epoch's weights the stage kept (numbered from 1), and why: the stage's own record when
    it has one, else derived from metrics.csv by training's own rule (:func:`forge.ml.training.best_epoch`)."""
    if result.kept_epoch is not None:
        return result.kept_epoch, result.kept_reason or "recorded by the train stage"
    epochs, gaps = per_epoch(frame, BEST_METRIC)
    all_epochs = frame["epoch"].drop_nulls()
    last = int(all_epochs.max()) + 1 if len(all_epochs) else None
    if not gaps:
        return last, "no validation split: the last epoch's weights"
    best = best_epoch(dict(enumerate(gaps)))
    assert best is not None
    reason = (f"lowest {BEST_METRIC} {gaps[best]:.4f} over epochs {epochs[0]}..{epochs[-1]} "
              f"(checkpoint monitor {BEST_METRIC}, mode min)")
    if epochs[best] != epochs[-1]:
        reason += f"; the last epoch ({epochs[-1]}) had {gaps[-1]:.4f}"
    return int(epochs[best]), reason


def kept_frame(result: TrainResult, frame: pl.DataFrame) -> pl.DataFrame:
    epoch, reason = kept_checkpoint(result, frame)
    epochs, gaps = per_epoch(frame, BEST_METRIC)
    gap = gaps[epochs.index(epoch)] if epoch in epochs else None
    return pl.DataFrame({"kept epoch": [epoch], f"its {BEST_METRIC}": [gap], "why": [reason],
                         "checkpoint": [result.checkpoint], "started from": [result.started_from],
                         "lr": [f"{result.lr:.3g}"]})


def throughput_frame(result: TrainResult, frame: pl.DataFrame, curve: LiveCurve | None = None) -> pl.DataFrame:
    """Training speed: measured step by step when the curve watched this run, else from the stage's time."""
    steps = frame["step"].drop_nulls()
    epochs = frame["epoch"].drop_nulls()
    row: dict[str, Any] = {"epochs": int(epochs.max()) + 1 if len(epochs) else 0,  # metrics.csv counts from 0
                           "steps": int(steps.max()) if len(steps) else 0,
                           "stage seconds": result.seconds}
    if curve is not None and curve.samples_per_second:
        row["samples / s (training steps)"] = round(curve.samples_per_second)
        row["training-step seconds"] = round(curve.seconds, 2)
    elif row["stage seconds"]:
        row["steps / s (whole stage, start-up included)"] = round(row["steps"] / float(row["stage seconds"]), 2)
    return pl.DataFrame([row])
