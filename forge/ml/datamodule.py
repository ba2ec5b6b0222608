"""The Lightning data module training runs on: the train, val and test splits of a tokenized dataset
as :class:`forge.ml.data.ArrayBatches`, split across data-parallel ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
from torch import Tensor

from forge.ml.data import ArrayBatches, concat_splits, load_tensors, spread_indices, subset
from forge.ml.store import read_manifest


class DominoDataModule(L.LightningDataModule):
    """Train / val / test batches of a tokenized dataset directory (``forge.ml.store`` layout).

    The train split is copied into RAM by default when one process trains (random gathers
    from RAM are cheapest); under data-parallel training (or with ``in_memory=False``) every
    rank gathers from the memory map instead, so the ranks of one machine share a single copy
    in the page cache rather than holding one each. Evaluation splits are read in order,
    straight from the memory map. ``val_samples`` validates on that many samples spread evenly
    over the val split (:func:`spread_indices`), the same ones every epoch; None: all of it.
    ``train_dirs`` trains on the train splits of those datasets, concatenated in RAM (a window of
    several iterations' data, say), instead of ``data_dir``'s own. ``train_dirs`` may also be a
    function returning the datasets to train on now: a window that grows while training runs (deals
    solved beside it); it is asked again at each epoch's start (with Lightning's
    ``reload_dataloaders_every_n_epochs=1``, which :func:`forge.ml.training.train` sets for it), and
    the split is gathered again only when its answer changed.
    """

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 512,
        eval_batch_size: int | None = None,
        seed: int = 0,
        in_memory: bool | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        val_samples: int | None = None,
        train_dirs: Sequence[str | Path] | Callable[[], Sequence[str | Path]] | None = None,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.window = train_dirs if callable(train_dirs) else None
        fixed = train_dirs() if callable(train_dirs) else train_dirs
        self.train_dirs = [Path(d) for d in fixed] if fixed else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.in_memory = in_memory
        self.val_samples = val_samples
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.splits: dict[str, dict[str, Tensor]] = {}

    def available(self) -> list[str]:
        return sorted(read_manifest(self.data_dir).get("splits", {}))

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def split(self, role: str) -> dict[str, Tensor]:
        name = self.split_names[role]
        if role == "train" and self.window is not None:
            now = [Path(d) for d in self.window()]
            if now and now != self.train_dirs:
                self.train_dirs = now
                self.splits.pop(name, None)
        if role == "train" and self.train_dirs and name not in self.splits:
            self.splits[name] = concat_splits(self.train_dirs, name)
        if name not in self.splits:
            in_memory = self.in_memory if self.in_memory is not None else self._rank_and_world()[1] == 1
            tensors = load_tensors(self.data_dir, name, in_memory=in_memory and role == "train")
            if role == "val" and self.val_samples is not None:
                tensors = subset(tensors, spread_indices(len(tensors["targets"]), self.val_samples))
            self.splits[name] = tensors
        return self.splits[name]

    def has(self, role: str) -> bool:
        return self.split_names[role] in self.available()

    def train_dataloader(self) -> ArrayBatches:
        # Lightning iterates the same object every epoch; each pass draws a fresh order.
        rank, world = self._rank_and_world()
        batches = ArrayBatches(self.split("train"), self.batch_size, shuffle=True, seed=self.seed,
                               rank=rank, world_size=world)
        if self.window is not None and self.trainer is not None:
            batches.epoch = self.trainer.current_epoch  # made anew each epoch: a fresh order each time
        return batches

    def val_dataloader(self) -> ArrayBatches:
        # Every rank validates the whole (sub)set: MoveMetrics are not reduced across processes,
        # and the weights are the same on every rank, so each logs the single-device figures.
        return ArrayBatches(self.split("val"), self.eval_batch_size)

    def test_dataloader(self) -> ArrayBatches:
        return ArrayBatches(self.split("test"), self.eval_batch_size)
