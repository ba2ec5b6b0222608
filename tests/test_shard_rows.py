"""ShardRows: single-state lookups that decode one row group, equal to the in-memory Solution."""

from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from forge.ml.playout import oracle_policy, play_out, play_out_shards
from forge.oracle.shard import WRITE_OPTIONS, shard_path, to_table, write_shard
from forge.oracle.shard_rows import ShardRows
from forge.oracle.solve import solve


@pytest.fixture(scope="module")
def sol():
    return solve(21, 3, 4)  # ~20K states


def _write(sol, folder, **options):
    """The shard as forge writes it, but cut into small row groups (real shards: 1M rows each)."""
    path = shard_path(folder, sol.seed, sol.decl_id)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(sol), path, **{**WRITE_OPTIONS, **options})
    return path


@pytest.mark.parametrize("statistics", [True, False], ids=["footer-stats", "no-stats"])
def test_every_state_reads_back_across_row_groups(sol, tmp_path, statistics):
    path = _write(sol, tmp_path, row_group_size=997, write_statistics=statistics)
    assert pq.ParquetFile(path).metadata.num_row_groups > 10
    rows = ShardRows(path)
    assert len(rows) == len(sol) and (rows.seed, rows.decl_id, rows.hand_size) == (21, 3, 4)
    assert np.array_equal(rows.hands, sol.hands)
    for r in range(0, len(sol), 7):
        state = int(sol.state[r])
        assert rows.lookup(state) == r
        assert rows.value(r) == sol.V[r]
        assert np.array_equal(rows.q_row(r), sol.q[:, r])


def test_unreachable_states_and_bad_rows_are_errors(sol, tmp_path):
    rows = ShardRows(_write(sol, tmp_path, row_group_size=997))
    reachable = set(sol.state.tolist())
    gaps = [int(sol.state[0]) - 1, int(sol.state[-1]) + 1]
    gaps += [s + 1 for s in sol.state[996:5000:997].tolist() if s + 1 not in reachable]  # between groups
    gaps += [s for s in range(int(sol.state[10]), int(sol.state[10]) + 500) if s not in reachable][:20]
    for state in gaps:
        with pytest.raises(KeyError, match="not reachable"):
            rows.lookup(state)
    with pytest.raises(IndexError):
        rows.q_row(len(sol))


def test_play_out_from_shards_equals_play_out_in_memory(tmp_path):
    sols = [solve(seed, seed % 10, 3) for seed in range(40, 46)]
    paths = [write_shard(s, tmp_path) for s in sols]
    rng = random.Random(0)
    choices = {}

    def replayable(positions):  # the same random choice for the same (deal, state) in both runs
        return [choices.setdefault((p.solution.seed, p.state), rng.choice(p.legal)) for p in positions]

    in_memory = play_out(replayable, sols).deals
    from_shards = play_out_shards(replayable, paths).deals
    assert [(d.seed, d.outcome, d.lost) for d in from_shards] == [(d.seed, d.outcome, d.lost) for d in in_memory]
    assert sum(d.points_lost for d in in_memory) > 0
    assert all(d.points_lost == 0 for d in play_out_shards(oracle_policy, paths).deals)
