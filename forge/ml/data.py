"""Batches straight from the int8 store arrays: one gather per array per batch, no per-sample
``__getitem__``, no collate and no worker processes. On a CPU the model's arithmetic is then
almost all of a training step.

Batches are dicts of int8 tensors named as in the store (``tokens``, ``masks``, ``players``,
``teams``, ``values``, ``qvals``, ``legal``, ``targets``); the module widens them where it
needs to, on whatever device it runs on. No Lightning here: the views and the generate and tokenize
kernels read data through this module, and Lightning's import (with torch._dynamo) is seconds of CPU;
the Lightning data module that training uses is :mod:`forge.ml.datamodule`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from forge.ml.store import load_split
from forge.ml.tokenize import F_DECL
from forge.oracle.rules import MAX_HAND

Batch = dict[str, Tensor]


def load_tensors(data_dir: str | Path, split: str, in_memory: bool = True) -> dict[str, Tensor]:
    """A split as int8 tensors; ``in_memory`` copies it into RAM (fast random gathers), otherwise
    the tensors share the read-only memory map (fine for sequential evaluation of big splits)."""
    arrays = load_split(data_dir, split)
    if in_memory:
        return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}  # a private copy
    with warnings.catch_warnings():  # read-only views: nothing here writes to a batch in place
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}


def concat_splits(data_dirs: Sequence[str | Path], split: str) -> dict[str, Tensor]:
    """One split of several datasets, concatenated in the given order into RAM."""
    parts = [load_tensors(d, split, in_memory=len(data_dirs) == 1) for d in data_dirs]
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def decl_of(batch: Mapping[str, Tensor]) -> Tensor:
    """Declaration of each sample, read from the context token."""
    return batch["tokens"][:, 0, F_DECL]


class ArrayBatches:
    """Iterable of batches over a split held as tensors.

    ``shuffle``: a fresh permutation per pass (seeded by ``seed`` and the pass number, so runs
    repeat), gathered with ``index_select``; otherwise contiguous zero-copy slices in order.

    Under data-parallel training each of ``world_size`` processes builds the same global
    permutation and takes its own contiguous ``rank``-th share of it (padded by wrapping, as
    torch's DistributedSampler pads), so every rank runs the same number of steps and together
    they cover the split once per pass. ``world_size=1`` is the plain, single-process order.
    """

    def __init__(
        self,
        tensors: Mapping[str, Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.tensors = dict(tensors)
        self.n = len(next(iter(self.tensors.values())))
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.per_rank = -(-self.n // world_size)  # samples this rank sees per pass
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def _indices(self) -> Tensor | None:
        """This rank's sample indices for the next pass, in order; None: all of them, unshuffled."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen)
            self.epoch += 1
        elif self.world_size == 1:
            return None
        else:
            order = torch.arange(self.n)
        if self.world_size == 1:
            return order
        total = self.per_rank * self.world_size
        if total > self.n:
            order = order.repeat(-(-total // self.n))[:total]
        return order[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def __iter__(self) -> Iterator[Batch]:
        stop = len(self) * self.batch_size
        idx = self._indices()
        if idx is None:
            for start in range(0, min(stop, self.n), self.batch_size):
                yield {k: v[start : start + self.batch_size] for k, v in self.tensors.items()}
            return
        for start in range(0, min(stop, len(idx)), self.batch_size):
            rows = idx[start : start + self.batch_size]
            yield {k: v.index_select(0, rows) for k, v in self.tensors.items()}


def spread_indices(n: int, k: int) -> Tensor:
    """``k`` indices evenly spaced over ``range(n)`` (all of them if ``k >= n``), ascending.

    Splits are shards concatenated in order (one declaration per shard), so an even spread
    samples every shard, hence every declaration, in proportion.
    """
    if k >= n:
        return torch.arange(n)
    return torch.arange(k, dtype=torch.int64) * n // k


def subset(tensors: Mapping[str, Tensor], indices: Tensor) -> dict[str, Tensor]:
    """The rows ``indices`` of every array, copied into RAM (a small gather from a memory map)."""
    return {k: v.index_select(0, indices) for k, v in tensors.items()}


def shuffle_hand_slots(batch: Batch, generator: torch.Generator | None = None) -> Batch:
    """Permute each player's 7 hand tokens at random, with the mover's labels to match.

    The model must not learn "slot i" (hands are sorted, so slot order leaks pip order); the
    permutation moves each domino with its features, and the mover's Q row, legal mask and
    target follow their domino. Trick tokens describe dominoes by features only, so they stay.
    """
    tokens, masks = batch["tokens"], batch["masks"]
    b, dev = tokens.shape[0], tokens.device
    rand = torch.rand(b, 4, MAX_HAND, generator=generator).to(dev)
    perm = rand.argsort(-1)  # new slot j of player p holds old slot perm[b, p, j]
    src = torch.arange(tokens.shape[1], device=dev).repeat(b, 1)
    src[:, 1 : 1 + 4 * MAX_HAND] = (1 + MAX_HAND * torch.arange(4, device=dev).view(1, 4, 1) + perm).view(b, -1)
    out = dict(batch)
    out["tokens"] = tokens.gather(1, src.unsqueeze(-1).expand(-1, -1, tokens.shape[2]))
    out["masks"] = masks.gather(1, src)
    mp = perm.gather(1, batch["players"].long().view(b, 1, 1).expand(-1, 1, MAX_HAND)).squeeze(1)
    out["qvals"] = batch["qvals"].gather(1, mp)
    out["legal"] = batch["legal"].gather(1, mp)
    out["targets"] = (mp == batch["targets"].long().unsqueeze(1)).int().argmax(1).to(batch["targets"].dtype)
    return out
