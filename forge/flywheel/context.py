"""Which iteration a stage works on, with what configuration and data: resolved from state.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.flywheel.config import Config
from forge.flywheel.paths import Workspace, find_root
from forge.flywheel.records import HistoryEntry
from forge.flywheel.state import State, StateError, load_state, planned_seeds
from forge.oracle.deal import train_decl
from forge.oracle.shard_names import shard_path


@dataclass(frozen=True)
class Context:
    """What a stage needs to know about the iteration it works on.

    ``config`` is the configuration this iteration runs with: state.yaml's for the iteration in
    progress (or the next one), the iteration's own recorded snapshot for a past one. Inside a
    stage it is the stage's view of it (:class:`forge.flywheel.stages.base.ConfigView`), so the
    helpers below can read only what the stage declares.
    """

    ws: Workspace
    state: State
    iteration: int
    seeds: list[int]
    config: Config | Any  # Any: a stage's ConfigView
    no_wandb: bool = False
    progress: bool = True

    @property
    def is_pretrain(self) -> bool:
        """Iteration 0 of a workspace that pretrains a baseline: training deals stream in chunks."""
        return self.iteration == 0 and self.state.pretrain is not None

    @property
    def is_past(self) -> bool:
        return self.state.entry(self.iteration) is not None

    def shard(self, seed: int) -> Path:
        return shard_path(self.ws.shards(self.config.data.hand_size), seed, train_decl(seed))

    @property
    def train_shards(self) -> list[Path]:
        """This iteration's training shards (none for pretraining: its deals stream through training)."""
        return [] if self.is_pretrain else [self.shard(s) for s in self.seeds]

    def golden_jobs(self, split: str | None = None) -> list[tuple[int, int]]:
        cfg = self.config
        seeds = {"val": cfg.evaluation.golden_val_seeds, "test": cfg.evaluation.golden_test_seeds,
                 None: cfg.evaluation.golden_val_seeds + cfg.evaluation.golden_test_seeds}[split]
        return [(s, d) for s in seeds for d in cfg.evaluation.golden_decls]

    def golden_shards(self, split: str) -> list[Path]:
        out = self.ws.golden(self.config.data.hand_size)
        return [shard_path(out, s, d) for s, d in self.golden_jobs(split)]

    def earlier(self) -> list[HistoryEntry]:
        """Every entry before this iteration (reads the whole history: prefer previous/replay_seeds)."""
        return [h for h in self.state.history if h.iteration < self.iteration]

    def previous(self) -> HistoryEntry | None:
        """History entry of the iteration before this one, if any."""
        earlier = self.state.history.before(self.iteration, 1)
        return earlier[-1] if earlier else None

    def window(self) -> list[HistoryEntry]:
        """The ``replay_iters`` iterations before this one, whose deals it trains on again (never the
        pretraining: the baseline holds its deals, and they are many); read from the history's end."""
        if self.config.data.replay_iters <= 0:
            return []
        earlier = [h for h in self.state.history.before(self.iteration, self.config.data.replay_iters + 1)
                   if h.iteration > 0]
        return earlier[-self.config.data.replay_iters:]

    def replay_seeds(self) -> list[int]:
        """Seeds of the replay window's iterations (:meth:`window`), trained on again."""
        return [s for h in self.window() for s in h.seeds]

    def starting_point(self) -> tuple[Path | None, str]:
        """Checkpoint training starts from, and a label: the previous iteration's > the baseline > none
        (from scratch)."""
        prev = self.previous()
        if prev is not None and prev.checkpoint:
            return self.ws.root / prev.checkpoint, f"iteration {prev.iteration}"
        if self.state.baseline_checkpoint:
            return self.ws.root / self.state.baseline_checkpoint, "baseline"
        return None, "scratch"


def context(root: str | os.PathLike | None = None, iteration: int | None = None, no_wandb: bool = False,
            progress: bool = True, state: State | None = None) -> Context:
    """Resolve the iteration from state.yaml: the one in progress or the next (default), or a past one.

    Without ``root``, the workspace is the current folder or, for a notebook opened from
    ``notebooks/``, its parent. (A stage notebook's default may differ: see
    :func:`forge.flywheel.stages.context`.)
    """
    ws = Workspace.at(find_root(root))
    state = state or load_state(ws.root)
    if iteration is None or iteration == state.iteration:
        iteration = state.iteration
        seeds = planned_seeds(state)
        return Context(ws, state, iteration, list(seeds), state.config_of(iteration), no_wandb, progress)
    past = state.entry(iteration)
    if past is None:
        raise StateError(f"iteration {iteration} is neither in history nor the current one ({state.iteration})")
    return Context(ws, state, iteration, list(past.seeds), state.config_of(iteration), no_wandb, progress)
