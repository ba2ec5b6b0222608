"""How long a training run trains, and where its learning rate stands.

A run trains for a number of epochs (the schedule laid over its steps), or for a budget: samples,
or seconds of wall-clock or of this process's CPU time (the schedule laid over the budget, since
how many steps fit in a time budget is not known in advance). A model that goes on learning
across runs, as the flywheel's model does from one iteration to the next, instead follows one
schedule over every sample it has seen (``horizon``): its warm-up happens once, and each run
takes the learning rate up where the last one left it.

The shape is always the module's: linear warm-up, cosine down to ``min_ratio`` at progress 1,
then flat (:func:`lr_factor`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L

from forge.errors import InputError

#: Resolution of schedules laid over a fraction (a budget or a horizon) rather than a step count.
SCHEDULE_TICKS = 100_000
CLOCKS = ("wall", "cpu")


def cosine_schedule(total_steps: int, warmup_frac: float, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine from 1 down to ``min_ratio`` at the last step."""
    warmup = max(1, int(round(warmup_frac * total_steps))) if warmup_frac > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def lr_factor(progress: float, warmup_frac: float, min_ratio: float) -> float:
    """The same shape over a progress in [0, 1] (flat at ``min_ratio`` beyond 1)."""
    tick = min(SCHEDULE_TICKS - 1, max(0, int(progress * SCHEDULE_TICKS)))
    return cosine_schedule(SCHEDULE_TICKS, warmup_frac, min_ratio)(tick)


class TrainClock:
    """Training time on three scales, pauses excluded: wall-clock seconds, this process's CPU
    seconds, and samples seen (on every process together). ``budget`` is in the unit of ``kind``.

    CPU seconds are what a shared machine cannot steal: with one torch thread they are about the
    wall-clock the same work takes on an idle core; sample budgets are independent of the machine.
    """

    KINDS = ("wall", "cpu", "samples")

    def __init__(self, budget: float, kind: str = "wall"):
        if kind not in self.KINDS:
            raise InputError(f"clock must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.budget, self.kind = budget, kind
        self.samples = 0
        self._start: tuple[float, float] | None = None
        self._paused_at: tuple[float, float] | None = None
        self._paused = (0.0, 0.0)

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self._start = self._now()

    def seconds(self) -> tuple[float, float]:
        """(wall, cpu) seconds of training so far."""
        if self._start is None:
            return 0.0, 0.0
        now = self._paused_at or self._now()
        return tuple(n - s - p for n, s, p in zip(now, self._start, self._paused))  # type: ignore[return-value]

    def elapsed(self) -> float:
        """Training so far in the budget's unit."""
        wall, cpu = self.seconds()
        return {"wall": wall, "cpu": cpu, "samples": float(self.samples)}[self.kind]

    def fraction(self) -> float:
        return min(1.0, self.elapsed() / self.budget)

    def pause(self) -> None:
        self._paused_at = self._now()

    def resume(self) -> None:
        now = self._now()
        self._paused = tuple(p + n - a for p, n, a in zip(self._paused, now, self._paused_at))  # type: ignore
        self._paused_at = None


class Budget(L.Callback):
    """Counts the samples a run trains on and stops it when its clock reaches the budget.

    Always present in a run (``budget`` None: it only counts), so that checkpoints can say how many
    samples the model has seen in all (``samples_seen``), which a continuing schedule reads.
    """

    def __init__(self, clock: TrainClock | None = None):
        self.clock = clock or TrainClock(math.inf, "samples")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # counted before the step, so that the LR set after it already counts this batch
        n = len(batch["targets"]) * trainer.world_size
        self.clock.samples += n
        pl_module.samples_seen += n

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stop = self.clock.elapsed() >= self.clock.budget
        if trainer.world_size > 1:  # clocks differ between processes: all stop at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop = True


def budget_clock(samples: int | None, seconds: float | None, clock: str = "wall") -> TrainClock | None:
    """The clock of a budget in samples or seconds (one of them: the training section checks the
    values), None without a budget."""
    if samples is not None:
        return TrainClock(samples, "samples")
    if seconds is not None:
        if clock not in CLOCKS:
            raise InputError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        return TrainClock(float(seconds), clock)
    return None
