"""What the train stage did: a curve redrawn while Lightning trains, then the run's curves, its
learning-rate schedule, which epoch's checkpoint was kept and why, and its throughput.

The live curve is a Lightning callback passed to the stage (``stages.train.run(ctx,
callbacks=[curve])``); everything else reads the run's ``metrics.csv``, so a stage that was
already done (and trained nothing in this kernel) shows the same record.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from forge.flywheel.stages.train import TrainResult
from forge.ml.run_logs import BEST_METRIC
from forge.ml.run_logs import metrics_frame as metrics_frame  # re-exported: 03_train reads its run through them
from forge.ml.run_logs import run_settings as run_settings
from forge.ml.training import best_epoch
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
        self.seen: list[int] = []  # samples trained on after each step
        self.val_seen: list[int] = []  # samples trained on at each validation
        self.samples = 0
        self.seconds = 0.0
        self._tick: float | None = None
        self._drawn = 0.0
        self._handle: Any = None
        self.clock: Any = None  # a budget run's TrainClock: the curve then speaks in the budget's terms

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from forge.ml.schedule import Budget

        clock = next((cb.clock for cb in trainer.callbacks if isinstance(cb, Budget)), None)
        self.clock = clock if clock is not None and math.isfinite(clock.budget) else None

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
        self.seen.append(self.samples)
        if self.redraw and now - self._drawn >= self.every:
            self.draw()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gap = trainer.callback_metrics.get(BEST_METRIC)
        if gap is not None and not trainer.sanity_checking:
            self.val.append((int(trainer.global_step), float(gap)))
            self.val_seen.append(self.samples)
            if self.redraw:
                self.draw()
        self._tick = None  # validation time is not training time

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.redraw:
            self.draw()

    def budget_text(self) -> str:
        """How much of the budget is used: ``34,000 of 60,000 samples`` or ``1.2 of 2.0 min of training``."""
        if self.clock is None:
            return ""
        if self.clock.kind == "samples":
            return f"{self.samples:,} of {self.clock.budget:,.0f} samples"
        cpu = " CPU" if self.clock.kind == "cpu" else ""
        return f"{self.clock.elapsed() / 60:.1f} of {self.clock.budget / 60:.1f}{cpu} min of training"

    def figure(self) -> Figure:
        fig, ax = plt.subplots(figsize=(8, 3))
        budget = self.clock is not None
        xs, val_xs = (self.seen, self.val_seen) if budget else (self.steps, [s for s, _ in self.val])
        lines = ax.plot(xs, self.losses, color="#4575b4", lw=1, label="train loss, per step (left)")
        ax.set_xlabel("samples trained on" if budget else "step")
        ax.set_ylabel("train loss", color="#4575b4")
        if self.val:
            ax_gap = ax.twinx()
            per = "per check" if budget else "per epoch"
            lines += ax_gap.plot(val_xs, [g for _, g in self.val], "o-", color="#d73027",
                                 label=f"val Q-gap, {per} (right)")
            ax_gap.set_ylabel("val Q-gap (points / move)", color="#d73027")
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper right")  # both axes' lines
        rate = self.samples_per_second
        where = self.budget_text() if budget else f"step {self.steps[-1] if self.steps else 0}"
        ax.set_title(f"training live: {where}" + (f", {rate:,.0f} samples/s" if rate else ""), fontsize=10)
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


def budget_text(settings: dict[str, Any]) -> str | None:
    """``60,000 samples`` or ``2.0 min of training``: the run's budget; None for a run of epochs."""
    if settings.get("max_samples"):
        return f"{int(settings['max_samples']):,} samples"
    if settings.get("max_seconds"):
        cpu = " CPU" if settings.get("clock") == "cpu" else ""
        return f"{float(settings['max_seconds']) / 60:.1f}{cpu} min of training"
    return None


def val_set(settings: dict[str, Any]) -> str:
    """Which val states the run's validation figures are on."""
    n = settings.get("val_samples")
    return f"{int(n):,} golden val states" if n else "all golden val states"


def val_note(settings: dict[str, Any]) -> str:
    """Why this notebook's val Q-gap differs from the history's for the same checkpoint (when it does)."""
    if not settings.get("val_samples"):
        return ('<p class="forge-val-note" style="font:12px system-ui,sans-serif;color:#555">Validation here is on '
                "all golden val states, as the evaluate stage's.</p>")
    return (f'<p class="forge-val-note" style="font:12px system-ui,sans-serif;color:#555">Val figures here are on '
            f"{val_set(settings)} (a fixed subset, scored during training to keep checks quick); the evaluate stage "
            "(04_evaluate, the history, the panel) scores the same checkpoint on all golden val states, so its "
            "val Q-gap differs from these by sampling alone.</p>")


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


def curves_figure(frame: pl.DataFrame, kept_epoch: int | None = None,
                  settings: dict[str, Any] | None = None) -> Figure:
    """Losses, validation Q-gap and accuracy, and the learning-rate schedule: per epoch for a run of
    epochs; for a budget run (``settings``, :func:`run_settings`) against samples trained on, one
    point per validation check and no epoch in sight (it may stop anywhere in one)."""
    settings = settings or {}
    budget = budget_text(settings)
    batch = int(settings.get("batch_size") or 1)
    x = "samples" if budget else "step"
    if budget:
        frame = frame.with_columns(samples=(pl.col("step") + 1) * batch)
    fig, (ax_loss, ax_val, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.5))
    x_label = f"samples trained on (steps x batch {batch})" if budget else "step"
    ax_loss.plot(*_series(frame, "train/loss", x), color="#4575b4", lw=1, alpha=0.7, label="train (step)")
    if not budget:
        ax_loss.plot(*_series(frame, "train/loss_epoch"), "s-", color="#313695", label="train (epoch mean)")
    ax_loss.plot(*_series(frame, "val/loss", x), "o-", color="#d73027", label=f"val ({val_set(settings)})")
    ax_loss.set_xlabel(x_label)
    ax_loss.set_title("loss")
    ax_loss.legend(fontsize=8)
    if budget:
        checks, gaps = _series(frame, BEST_METRIC, x)
        lines = ax_val.plot(checks, gaps, "o-", color="#d73027", label="val Q-gap, per check (left)")
        lines += ax_acc_plot(ax_val, *_series(frame, "val/accuracy", x))
        ax_val.set_xlabel(x_label)
        ax_val.set_title(f"validation on {val_set(settings)}: {len(checks)} check{'s' * (len(checks) != 1)}",
                         fontsize=9)
    else:
        epochs, gaps = per_epoch(frame, BEST_METRIC)
        lines = ax_val.plot(epochs, gaps, "o-", color="#d73027", label="val Q-gap (left)")
        if kept_epoch is not None and kept_epoch in epochs:
            lines += ax_val.plot([kept_epoch], [gaps[epochs.index(kept_epoch)]], "*", ms=16, color="#fdae61",
                                 label="kept checkpoint")
        lines += ax_acc_plot(ax_val, *per_epoch(frame, "val/accuracy"))
        ax_val.set_xlabel("epoch")
        ax_val.set_xticks(sorted(set(epochs)))
        ax_val.set_title(f"validation on {val_set(settings)}, per epoch" if settings else "validation", fontsize=9)
    ax_val.set_ylabel("Q-gap (points / move)", color="#d73027")
    # one legend for both axes' lines (a twin axis' own legend would leave its lines unnamed)
    ax_val.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    for column in lr_columns(frame):
        steps, rates = _series(frame, column, x)
        ax_lr.plot(steps, rates, lw=1.2, marker="." if len(steps) < 30 else None, label=column)
    ax_lr.set_xlabel(x_label)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("learning rate: warm-up, then cosine over the budget" if budget
                    else "learning rate as logged (linear warm-up, then cosine)", fontsize=9)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if lr_columns(frame):
        ax_lr.legend(fontsize=7)
    if budget:
        fig.suptitle(f"a budget run: {budget}", fontsize=10)
    fig.tight_layout()
    return fig


def ax_acc_plot(ax_val: Any, xs: list, values: list) -> list:
    """Val accuracy on a twin axis of the validation panel (its lines, for the shared legend)."""
    ax_acc = ax_val.twinx()
    ax_acc.set_ylabel("accuracy (share of states)", color="#2b7de9")
    return ax_acc.plot(xs, values, "s--", color="#2b7de9", label="val accuracy (right)")


def kept_checkpoint(result: TrainResult, frame: pl.DataFrame) -> tuple[int | None, str]:
    """Which epoch's weights the stage kept (numbered from 1), and why: the stage's own record when
    it has one (a budget run's: no epoch, the last weights), else derived from metrics.csv by
    training's own rule (:func:`forge.ml.training.best_epoch`)."""
    if result.kept_epoch is not None or result.kept_reason:
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


def kept_frame(result: TrainResult, frame: pl.DataFrame, settings: dict[str, Any] | None = None) -> pl.DataFrame:
    """The kept checkpoint, its val Q-gap (on which val states: see :func:`val_note`) and why it was kept."""
    settings = settings or {}
    epoch, reason = kept_checkpoint(result, frame)
    where = f"its val Q-gap ({val_set(settings)})" if settings else f"its {BEST_METRIC}"
    if budget_text(settings) or (epoch is None and result.kept_reason):
        _, gaps = _series(frame, BEST_METRIC)
        kept: dict[str, list] = {"kept": ["the last weights"], where: [gaps[-1] if gaps else None]}
    else:
        epochs, gaps = per_epoch(frame, BEST_METRIC)
        kept = {"kept epoch": [epoch], where: [gaps[epochs.index(epoch)] if epoch in epochs else None]}
    return pl.DataFrame({**kept, "why": [reason], "checkpoint": [result.checkpoint],
                         "started from": [result.started_from], "lr": [f"{result.lr:.3g}"]})


def kept_html(result: TrainResult, frame: pl.DataFrame, settings: dict[str, Any]) -> str:
    """:func:`kept_frame` with the note on which val states its figure is on."""
    from forge.ui.views.display import frame_html

    return frame_html(kept_frame(result, frame, settings), "forge-kept") + val_note(settings)


def throughput_frame(result: TrainResult, frame: pl.DataFrame, curve: LiveCurve | None = None,
                     settings: dict[str, Any] | None = None) -> pl.DataFrame:
    """Training speed: measured step by step when the curve watched this run, else from the stage's time.
    A budget run is told in the budget's terms (samples of the budget, minutes of training), without epochs."""
    settings = settings or {}
    steps = frame["step"].drop_nulls()
    epochs = frame["epoch"].drop_nulls()
    budget = budget_text(settings)
    row: dict[str, Any] = {"budget": budget} if budget else {
        "epochs": int(epochs.max()) + 1 if len(epochs) else 0}  # metrics.csv counts from 0
    if budget:
        row["samples trained on"] = result.samples
        if result.train_seconds is not None:
            row["minutes of training"] = round(result.train_seconds / 60, 2)
    row |= {"steps": int(steps.max()) + (1 if budget else 0) if len(steps) else 0, "stage seconds": result.seconds}
    if curve is not None and curve.samples_per_second:
        row["samples / s (training steps)"] = round(curve.samples_per_second)
        row["training-step seconds"] = round(curve.seconds, 2)
    elif row["stage seconds"]:
        row["steps / s (whole stage, start-up included)"] = round(row["steps"] / float(row["stage seconds"]), 2)
    return pl.DataFrame([row])
