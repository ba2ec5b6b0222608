"""Look up single states in a shard without loading it: one row group at a time, on demand.

A play-out visits about 28 states of a deal whose shard holds 5-80 million rows; decoding the
whole file (a second or more, and hundreds of MB) to read 28 rows was nearly all of a play-out's
time. Shards are sorted by state and parquet keeps each row group's min and max, so a state's
row group is found from the footer alone and only that group is decoded (~15 ms).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forge.oracle.deal import deal
from forge.oracle.shard import Q_COLUMNS, ShardError, read_shard_info


class ShardRows:
    """The :class:`~forge.oracle.solve.Solution` lookups (``lookup``, ``value``, ``q_row``) served
    from a shard file, keeping the last ``cache`` decoded row groups."""

    def __init__(self, path: str | os.PathLike, cache: int = 2):
        self.path = Path(path)
        info = read_shard_info(self.path)
        self.seed, self.decl_id, self.hand_size = info.seed, info.decl_id, info.hand_size
        self.hands = deal(info.seed, info.hand_size)
        self._file = pq.ParquetFile(self.path)
        meta = self._file.metadata
        col = self._file.schema_arrow.get_field_index("state")
        self._starts, self._mins, self._maxs, start = [], [], [], 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stats = group.column(col).statistics
            if stats is None or not stats.has_min_max:  # not written by forge: decode to learn them
                states = self._read(g, ["state"])["state"]
                lo, hi = (int(states[0]), int(states[-1])) if len(states) else (1, 0)
            else:
                lo, hi = int(stats.min), int(stats.max)
            self._starts.append(start)
            self._mins.append(lo)
            self._maxs.append(hi)
            start += group.num_rows
        self.rows = start
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._size = max(1, cache)

    def __len__(self) -> int:
        return self.rows

    def lookup(self, state: int) -> int:
        """Row of ``state``; KeyError if it is not reachable."""
        g = bisect_right(self._mins, state) - 1
        if g >= 0 and state <= self._maxs[g]:
            states = self._group(g)["state"]
            i = int(np.searchsorted(states, state))
            if i < len(states) and states[i] == state:
                return self._starts[g] + i
        raise KeyError(f"state {state:#x} is not reachable in this deal")

    def value(self, row: int) -> int:
        g, i = self._locate(row)
        return int(self._group(g)["V"][i])

    def q_row(self, row: int) -> np.ndarray:
        """The mover's Q per local domino (int8, -128 illegal) at ``row``."""
        g, i = self._locate(row)
        return self._group(g)["q"][:, i]

    def _locate(self, row: int) -> tuple[int, int]:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range for {self.rows} rows")
        g = bisect_right(self._starts, row) - 1
        return g, row - self._starts[g]

    def _group(self, g: int) -> dict[str, np.ndarray]:
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        cols = self._read(g, ["state", "V", *Q_COLUMNS])
        group = {"state": cols["state"], "V": cols["V"], "q": np.stack([cols[c] for c in Q_COLUMNS])}
        self._cache[g] = group
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return group

    def _read(self, g: int, columns: list[str]) -> dict[str, np.ndarray]:
        try:
            table = self._file.read_row_group(g, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{self.path}: unreadable shard data ({exc})") from None
        return {name: table.column(name).to_numpy() for name in table.column_names}
