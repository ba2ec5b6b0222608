"""Tokenizer (spec "Tokenized sample (format v1)") on tiny real parquet shards.

Expected token features are written out by hand from the spec, not recomputed with the code
under test. Seed 0's hands (spec "A known answer" for player 0), by local index 0..6:
  P0: 0-0 2-0 2-2 3-1 4-0 4-4 5-2
  P1: 1-1 2-1 5-3 5-4 6-0 6-2 6-4
  P2: 3-0 3-3 4-1 5-0 5-5 6-1 6-5
  P3: 1-0 3-2 4-2 4-3 5-1 6-3 6-6
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forge.ml.tokenize import tokenize_shard
from forge.oracle.deal import deal
from forge.oracle.shard import ShardError
from forge.oracle.state import pack_state

X = -128  # illegal / absent Q
FULL = 0b1111111


def write_shard(
    path: Path,
    seed: int,
    decl_id: int,
    hand_size: int,
    states,
    values,
    qvals,
    *,
    row_group_size: int | None = None,
    drop_meta: str | None = None,
    drop_column: str | None = None,
) -> Path:
    """A shard file as the spec describes it: state int64, V int8, q0..q6 int8 + metadata."""
    qvals = np.asarray(qvals, dtype=np.int8).reshape(-1, 7)
    cols = {"state": pa.array(np.asarray(states, dtype=np.int64)), "V": pa.array(np.asarray(values, np.int8))}
    cols |= {f"q{i}": pa.array(qvals[:, i]) for i in range(7)}
    cols.pop(drop_column, None)
    meta = {"seed": str(seed), "decl_id": str(decl_id), "hand_size": str(hand_size), "format": "1"}
    meta.pop(drop_meta, None)
    table = pa.table(cols).replace_schema_metadata(meta)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def one_state(tmp_path: Path, decl_id: int, state: int, value: int, q: list[int], seed=0, hand_size=7):
    path = write_shard(tmp_path / f"seed_{seed:08d}_decl_{decl_id}.parquet", seed, decl_id, hand_size,
                       [state], [value], [q])
    out = tokenize_shard(path, 10, global_seed=0)
    assert {k: v.dtype for k, v in out.items()} == {k: np.int8 for k in out}
    assert len(out["targets"]) == 1
    return {k: v[0] for k, v in out.items()}


def test_seed0_hands_are_the_ones_written_above():
    names = [[f"{max(a, b)}-{min(a, b)}" for a, b in row] for row in [
        [(0, 0), (2, 0), (2, 2), (3, 1), (4, 0), (4, 4), (5, 2)],
        [(1, 1), (2, 1), (5, 3), (5, 4), (6, 0), (6, 2), (6, 4)],
        [(3, 0), (3, 3), (4, 1), (5, 0), (5, 5), (6, 1), (6, 5)],
        [(1, 0), (3, 2), (4, 2), (4, 3), (5, 1), (6, 3), (6, 6)]]]
    ids = [[h * (h + 1) // 2 + lo for h, lo in ((int(n[0]), int(n[2])) for n in row)] for row in names]
    assert deal(0).tolist() == ids


def test_pip_trump_mid_trick_every_token(tmp_path):
    # Fours (decl 4). Trick 1: P0 led 5-2, P1 5-3, P2 5-5 (wins), P3 5-1. Trick 2: P2 led 6-5;
    # P3 (team 1) to move and must follow sixes: 6-3 (local 5) or 6-6 (local 6).
    masks = (FULL - 64, FULL - 4, FULL - 16 - 64, FULL - 16)
    state = pack_state(masks, leader=2, trick_len=1, plays=(6, 7, 7))
    s = one_state(tmp_path, 4, state, -3, [X, X, X, X, X, -3, 5])
    # Fours by rank: 4-4, 6-4, 5-4, 4-3, 4-2, 4-1, 4-0 -> trump rank 0..6. Mover 3, leader rel 3.
    # high low dbl count trump | rel mover partner held type decl leader
    expected = np.array([
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3],  # context
        # P0: relative owner (0 - 3) % 4 = 1
        [0, 0, 1, 0, 7, 1, 0, 0, 1, 1, 4, 3],  # 0-0
        [2, 0, 0, 0, 7, 1, 0, 0, 1, 1, 4, 3],  # 2-0
        [2, 2, 1, 0, 7, 1, 0, 0, 1, 1, 4, 3],  # 2-2
        [3, 1, 0, 0, 7, 1, 0, 0, 1, 1, 4, 3],  # 3-1
        [4, 0, 0, 0, 6, 1, 0, 0, 1, 1, 4, 3],  # 4-0
        [4, 4, 1, 0, 0, 1, 0, 0, 1, 1, 4, 3],  # 4-4
        [5, 2, 0, 0, 7, 1, 0, 0, 0, 1, 4, 3],  # 5-2 played
        # P1: relative 2, the mover's partner
        [1, 1, 1, 0, 7, 2, 0, 1, 1, 2, 4, 3],  # 1-1
        [2, 1, 0, 0, 7, 2, 0, 1, 1, 2, 4, 3],  # 2-1
        [5, 3, 0, 0, 7, 2, 0, 1, 0, 2, 4, 3],  # 5-3 played
        [5, 4, 0, 0, 2, 2, 0, 1, 1, 2, 4, 3],  # 5-4
        [6, 0, 0, 0, 7, 2, 0, 1, 1, 2, 4, 3],  # 6-0
        [6, 2, 0, 0, 7, 2, 0, 1, 1, 2, 4, 3],  # 6-2
        [6, 4, 0, 2, 1, 2, 0, 1, 1, 2, 4, 3],  # 6-4: 10 count
        # P2: relative 3
        [3, 0, 0, 0, 7, 3, 0, 0, 1, 3, 4, 3],  # 3-0
        [3, 3, 1, 0, 7, 3, 0, 0, 1, 3, 4, 3],  # 3-3
        [4, 1, 0, 1, 5, 3, 0, 0, 1, 3, 4, 3],  # 4-1: 5 count
        [5, 0, 0, 1, 7, 3, 0, 0, 1, 3, 4, 3],  # 5-0: 5 count
        [5, 5, 1, 2, 7, 3, 0, 0, 0, 3, 4, 3],  # 5-5 played
        [6, 1, 0, 0, 7, 3, 0, 0, 1, 3, 4, 3],  # 6-1
        [6, 5, 0, 0, 7, 3, 0, 0, 0, 3, 4, 3],  # 6-5 on the table
        # P3: the mover
        [1, 0, 0, 0, 7, 0, 1, 0, 1, 4, 4, 3],  # 1-0
        [3, 2, 0, 1, 7, 0, 1, 0, 1, 4, 4, 3],  # 3-2: 5 count
        [4, 2, 0, 0, 4, 0, 1, 0, 1, 4, 4, 3],  # 4-2
        [4, 3, 0, 0, 3, 0, 1, 0, 1, 4, 4, 3],  # 4-3
        [5, 1, 0, 0, 7, 0, 1, 0, 0, 4, 4, 3],  # 5-1 played
        [6, 3, 0, 0, 7, 0, 1, 0, 1, 4, 4, 3],  # 6-3
        [6, 6, 1, 0, 7, 0, 1, 0, 1, 4, 4, 3],  # 6-6
        # trick: P2's lead 6-5, then two empty positions
        [6, 5, 0, 0, 7, 3, 0, 0, 0, 5, 4, 3],
        [0] * 12,
        [0] * 12,
    ])
    np.testing.assert_array_equal(s["tokens"], expected)
    np.testing.assert_array_equal(s["masks"], [1] * 30 + [0, 0])
    assert (s["players"], s["teams"], s["values"], s["targets"]) == (3, 1, -3, 5)  # team 1 minimizes
    np.testing.assert_array_equal(s["legal"], [0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(s["qvals"], [X, X, X, X, X, -3, 5])


def test_doubles_trump_two_plays(tmp_path):
    # Decl 7. P0 led 2-2 (trump), P1 followed 1-1; P2 (team 0) to move: 3-3 or 5-5, both worth 4.
    state = pack_state((FULL - 4, FULL - 1, FULL, FULL), leader=0, trick_len=2, plays=(2, 0, 7))
    s = one_state(tmp_path, 7, state, 4, [X, 4, X, X, 4, X, X])
    t = s["tokens"]
    # Doubles by pip value: 6-6 .. 0-0 -> trump rank 0..6. Mover 2, leader relative (0-2)%4 = 2.
    np.testing.assert_array_equal(t[0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 2])
    np.testing.assert_array_equal(t[29], [2, 2, 1, 0, 4, 2, 0, 1, 0, 5, 7, 2])  # P0's 2-2, partner
    np.testing.assert_array_equal(t[30], [1, 1, 1, 0, 5, 3, 0, 0, 0, 6, 7, 2])  # P1's 1-1
    np.testing.assert_array_equal(t[31], [0] * 12)
    np.testing.assert_array_equal(t[3], [2, 2, 1, 0, 4, 2, 0, 1, 0, 1, 7, 2])  # P0 local 2, played
    np.testing.assert_array_equal(t[1 + 14 + 4], [5, 5, 1, 2, 1, 0, 1, 0, 1, 3, 7, 2])  # P2's 5-5
    np.testing.assert_array_equal(t[1 + 21 + 6], [6, 6, 1, 0, 0, 1, 0, 0, 1, 4, 7, 2])  # P3's 6-6
    np.testing.assert_array_equal(t[1 + 7 + 6], [6, 4, 0, 2, 7, 3, 0, 0, 1, 2, 7, 2])  # P1's 6-4
    np.testing.assert_array_equal(s["masks"], [1] * 31 + [0])
    assert (s["players"], s["teams"], s["values"], s["targets"]) == (2, 0, 4, 1)  # tie -> lowest


def test_doubles_suit_three_plays(tmp_path):
    # Decl 8 (doubles a suit of their own, no trump power). Everyone's local 0 went in trick 1
    # and P1 won it; now P1 led 6-4, P2 played 6-5, P3 6-3; P0 (no six) may play anything.
    state = pack_state((FULL - 1, FULL - 1 - 64, FULL - 1 - 64, FULL - 1 - 32), leader=1, trick_len=3,
                       plays=(6, 6, 5))
    s = one_state(tmp_path, 8, state, 6, [X, -2, 6, 0, 6, -2, 1])
    t = s["tokens"]
    # Mover 0, leader relative 1. The doubles rank 6-6 .. 0-0 -> 0..6; others 7.
    np.testing.assert_array_equal(t[0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1])
    np.testing.assert_array_equal(t[29], [6, 4, 0, 2, 7, 1, 0, 0, 0, 5, 8, 1])  # P1's 6-4
    np.testing.assert_array_equal(t[30], [6, 5, 0, 0, 7, 2, 0, 1, 0, 6, 8, 1])  # P2's 6-5, partner
    np.testing.assert_array_equal(t[31], [6, 3, 0, 0, 7, 3, 0, 0, 0, 7, 8, 1])  # P3's 6-3
    np.testing.assert_array_equal(t[1], [0, 0, 1, 0, 6, 0, 1, 0, 0, 1, 8, 1])  # P0's 0-0, gone
    np.testing.assert_array_equal(t[3], [2, 2, 1, 0, 4, 0, 1, 0, 1, 1, 8, 1])  # P0's 2-2
    np.testing.assert_array_equal(t[1 + 14 + 1], [3, 3, 1, 0, 3, 2, 0, 1, 1, 3, 8, 1])  # P2's 3-3
    np.testing.assert_array_equal(s["masks"], [1] * 32)
    np.testing.assert_array_equal(s["legal"], [0, 1, 1, 1, 1, 1, 1])
    assert (s["players"], s["teams"], s["values"], s["targets"]) == (0, 0, 6, 2)


def test_notrump_two_plays(tmp_path):
    # Decl 9. P3 led 6-6, P0 (no six) played 4-4; P1 (team 1) follows: 6-0, 6-2 or 6-4.
    state = pack_state((FULL - 32, FULL, FULL, FULL - 64), leader=3, trick_len=2, plays=(6, 5, 7))
    s = one_state(tmp_path, 9, state, -12, [X, X, X, X, -10, -12, -12])
    t = s["tokens"]
    # Mover 1, leader relative (3-1)%4 = 2; trump rank 7 for every domino in notrump.
    np.testing.assert_array_equal(t[0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 2])
    np.testing.assert_array_equal(t[29], [6, 6, 1, 0, 7, 2, 0, 1, 0, 5, 9, 2])  # P3's 6-6, partner
    np.testing.assert_array_equal(t[30], [4, 4, 1, 0, 7, 3, 0, 0, 0, 6, 9, 2])  # P0's 4-4
    np.testing.assert_array_equal(t[31], [0] * 12)
    np.testing.assert_array_equal(t[1 + 7 + 6], [6, 4, 0, 2, 7, 0, 1, 0, 1, 2, 9, 2])  # mover's 6-4
    np.testing.assert_array_equal(t[3], [2, 2, 1, 0, 7, 3, 0, 0, 1, 1, 9, 2])  # P0's 2-2
    np.testing.assert_array_equal(t[6], [4, 4, 1, 0, 7, 3, 0, 0, 0, 1, 9, 2])  # P0's 4-4, played
    assert (s["players"], s["teams"], s["values"], s["targets"]) == (1, 1, -12, 5)  # tie -> lowest


def test_reduced_game_padding_and_terminal_dropped(tmp_path):
    # Seed 5, hand size 3: P0 2-1 4-3 6-3 | P1 4-2 5-2 6-4 | P2 2-0 2-2 6-0 | P3 5-1 5-5 6-1.
    assert deal(5, 3).tolist() == [[4, 13, 24], [12, 17, 25], [3, 5, 21], [16, 20, 22]]
    # Twos (decl 2): 2-2, 6-2, 5-2, 4-2, 3-2, 2-1, 2-0 -> rank 0..6. P0 led 2-1; P1 to move.
    mid = pack_state((0b110, 0b111, 0b111, 0b111), leader=0, trick_len=1, plays=(0, 7, 7))
    terminal = pack_state((0, 0, 0, 0), leader=2)
    start = pack_state((0b111,) * 4, leader=0)
    path = write_shard(tmp_path / "seed_00000005_decl_2.parquet", 5, 2, 3, [terminal, start, mid], [0, 7, 1],
                       [[X] * 7, [1, 7, 3, X, X, X, X], [3, 1, X, X, X, X, X]])
    out = tokenize_shard(path, 10, global_seed=0)
    assert len(out["targets"]) == 2  # the terminal row has no legal move
    np.testing.assert_array_equal(out["values"], [7, 1])
    hand_mask = [1, 1, 1, 0, 0, 0, 0]
    np.testing.assert_array_equal(out["masks"][0], [1] + hand_mask * 4 + [0, 0, 0])
    np.testing.assert_array_equal(out["masks"][1], [1] + hand_mask * 4 + [1, 0, 0])
    t = out["tokens"][1]
    for p in range(4):
        np.testing.assert_array_equal(t[1 + 7 * p + 3 : 1 + 7 * p + 7], np.zeros((4, 12)))  # padding
    # Mover 1, leader relative (0-1)%4 = 3.
    np.testing.assert_array_equal(t[1], [2, 1, 0, 0, 5, 3, 0, 0, 0, 1, 2, 3])  # P0's 2-1, played
    np.testing.assert_array_equal(t[8], [4, 2, 0, 0, 3, 0, 1, 0, 1, 2, 2, 3])  # P1's 4-2
    np.testing.assert_array_equal(t[10], [6, 4, 0, 2, 7, 0, 1, 0, 1, 2, 2, 3])  # P1's 6-4
    np.testing.assert_array_equal(t[16], [2, 2, 1, 0, 0, 1, 0, 0, 1, 3, 2, 3])  # P2's 2-2 (relative 1)
    np.testing.assert_array_equal(t[29], [2, 1, 0, 0, 5, 3, 0, 0, 0, 5, 2, 3])
    np.testing.assert_array_equal(out["targets"], [1, 1])  # team 0 max of [1,7,3]; team 1 min of [3,1]
    np.testing.assert_array_equal(out["players"], [0, 1])
    np.testing.assert_array_equal(out["legal"][0], [1, 1, 1, 0, 0, 0, 0])


def _numbered_shard(path: Path, rows: int, row_group_size: int | None = None) -> Path:
    """Rows whose Q encodes the row number (q0 = r % 100, q1 = r // 100); every 7th is terminal."""
    r = np.arange(rows)
    q = np.full((rows, 7), X, dtype=np.int8)
    q[:, 0], q[:, 1] = r % 100, r // 100
    q[r % 7 == 3] = X
    states = pack_state((FULL,) * 4, leader=np.zeros(rows, np.int64))
    return write_shard(path, 42, 3, 7, states, r % 43, q, row_group_size=row_group_size)


def test_sampling_rule_order_and_terminal_drop(tmp_path):
    path = _numbered_shard(tmp_path / "seed_00000042_decl_3.parquet", 5000)
    out = tokenize_shard(path, 300, global_seed=7)
    picked = np.random.default_rng((7, 42, 3)).choice(5000, size=300, replace=False)
    picked = picked[picked % 7 != 3]
    got = out["qvals"][:, 0].astype(int) + 100 * out["qvals"][:, 1].astype(int)
    np.testing.assert_array_equal(got, picked)
    np.testing.assert_array_equal(out["values"], picked % 43)
    # fewer rows than asked: every row, in file order
    small = tokenize_shard(path, 6000, global_seed=7)
    expect = np.arange(5000)[np.arange(5000) % 7 != 3]
    np.testing.assert_array_equal(small["qvals"][:, 0] + 100 * small["qvals"][:, 1].astype(int), expect)


def test_row_groups_and_reruns_give_identical_arrays(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _numbered_shard(tmp_path / "a" / "seed_00000042_decl_3.parquet", 5000)
    many = _numbered_shard(tmp_path / "b" / "seed_00000042_decl_3.parquet", 5000, row_group_size=64)
    assert pq.ParquetFile(many).metadata.num_row_groups > 50
    a, b, c = (tokenize_shard(p, 500, 3) for p in (one, many, one))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])
    other_seed = tokenize_shard(one, 500, 4)
    assert not np.array_equal(a["qvals"], other_seed["qvals"])


def _row_numbers(out: dict) -> np.ndarray:
    return out["qvals"][:, 0].astype(int) + 100 * out["qvals"][:, 1].astype(int)


@pytest.mark.parametrize("row_group_size", [None, 64])
def test_decision_selection_draws_by_the_spec_rule_among_decisions_only(tmp_path, row_group_size):
    # q0 = r % 100, q1 = r // 100: a move can lose points unless they are equal (r = 0, 101, 202, ...)
    path = _numbered_shard(tmp_path / "seed_00000042_decl_3.parquet", 5000, row_group_size)
    r = np.arange(5000)
    eligible = r[(r % 7 != 3) & (r % 100 != r // 100)]
    out = tokenize_shard(path, 300, global_seed=7, selection="decisions")
    expect = eligible[np.random.default_rng((7, 42, 3)).choice(len(eligible), size=300, replace=False)]
    np.testing.assert_array_equal(_row_numbers(out), expect)
    assert len(out["targets"]) == 300  # no terminal row to drop: every decision has a legal move
    again = tokenize_shard(path, 300, global_seed=7, selection="decisions")
    for name in out:
        np.testing.assert_array_equal(out[name], again[name])
    assert not np.array_equal(_row_numbers(tokenize_shard(path, 300, 8, "decisions")), expect)
    # fewer decisions than asked: all of them, in file order
    np.testing.assert_array_equal(_row_numbers(tokenize_shard(path, 6000, 7, "decisions")), eligible)


def test_mixed_selection_draws_a_quarter_among_the_other_states(tmp_path):
    path = _numbered_shard(tmp_path / "seed_00000042_decl_3.parquet", 5000)
    r = np.arange(5000)
    decision = (r % 7 != 3) & (r % 100 != r // 100)
    decisions, others = r[decision], r[~decision]  # others: no choice matters, or terminal (r % 7 == 3)
    out = tokenize_shard(path, 400, global_seed=7, selection="mixed")
    want_d = decisions[np.random.default_rng((7, 42, 3)).choice(len(decisions), size=300, replace=False)]
    want_o = others[np.random.default_rng((7, 42, 3)).choice(len(others), size=100, replace=False)]
    want = np.concatenate([want_d, want_o[want_o % 7 != 3]])  # terminal rows dropped, as always
    np.testing.assert_array_equal(_row_numbers(out), want)
    assert 0 < (~decision[want]).sum() <= 100
    again = tokenize_shard(path, 400, global_seed=7, selection="mixed")
    np.testing.assert_array_equal(_row_numbers(again), want)


def test_decisions_are_the_states_where_a_legal_move_loses_points():
    from forge.ml.tokenize import q_spread

    q = np.array([[3, 3, X, X, X, X, X],  # two legal moves, equal: nothing to decide
                  [5, X, X, X, X, X, X],  # one legal move
                  [X] * 7,  # terminal
                  [-4, 2, X, 9, X, X, X],  # worst legal -4, best 9 (team 0 units; either team loses 13)
                  [X, X, X, X, X, -42, 42]], dtype=np.int8)
    np.testing.assert_array_equal(q_spread(q), [0, 0, 0, 13, 84])


def test_the_fast_decision_test_agrees_with_the_spread_on_every_kind_of_row():
    # is_decision reads Q column by column with int8 wrap-around, and training's policy rows
    # (forge.ml.module.decision_rows) take the same rule on torch tensors: one rule, three ways; the
    # edges are ILLEGAL_Q (-128), the ends of the legal range and rows with no legal move
    import torch

    from forge.ml.module import decision_rows
    from forge.ml.tokenize import is_decision, q_spread

    rng = np.random.default_rng(0)
    q = rng.integers(-42, 43, size=(50_000, 7)).astype(np.int8)
    q[rng.random(q.shape) < 0.6] = X
    q[:4] = X  # terminal rows
    q[4] = [-42] + [X] * 6  # one legal move at the bottom of the range
    q[5] = [42, -42, X, X, X, X, X]  # the widest choice
    q[6] = [X, X, X, X, X, 42, 42]  # two equal moves at the top
    columns = [np.ascontiguousarray(q[:, i]) for i in range(7)]
    before = [c.copy() for c in columns]
    got = is_decision(columns)
    np.testing.assert_array_equal(got, q_spread(q) > 0)
    assert got[5] and not got[:5].any() and not got[6]
    assert 0.1 < got.mean() < 0.9  # both kinds of row are well represented
    qvals = torch.from_numpy(q)
    np.testing.assert_array_equal(decision_rows(qvals, (qvals != X).to(torch.int8)).numpy(), got)
    for c, b in zip(columns, before, strict=True):
        np.testing.assert_array_equal(c, b)  # the shard's columns are not written to


def test_an_unknown_selection_is_refused(tmp_path):
    from forge.errors import InputError

    path = _numbered_shard(tmp_path / "seed_00000042_decl_3.parquet", 50)
    with pytest.raises(InputError, match="selection must be one of all, decisions, mixed"):
        tokenize_shard(path, 10, 0, selection="hard")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("state,V\n1,2\n"), "not a readable parquet shard"),
        (lambda p: _truncated(p), "not a readable parquet shard"),
        (lambda p: write_shard(p, 1, 2, 7, [0], [0], [[0] * 7], drop_column="q3"), "missing column(s) q3"),
        (lambda p: write_shard(p, 1, 2, 7, [0], [0], [[0] * 7], drop_meta="decl_id"), "decl_id"),
        (lambda p: write_shard(p, 1, 12, 7, [0], [0], [[0] * 7]), "out of range"),
        (lambda p: _float_q(p), "q2 are not integers"),
        (lambda p: write_shard(p, 1, 2, 3, [(1 << 28) - 1], [0], [[0] * 7]), "not a valid state"),
        (lambda p: None, "no such shard file"),
    ],
    ids=["csv", "truncated", "no-column", "no-metadata", "bad-decl", "float", "state-vs-hand", "absent"],
)
def test_bad_shards_name_the_file(tmp_path, make, message):
    path = tmp_path / "seed_00000001_decl_2.parquet"
    make(path)
    with pytest.raises(ShardError, match="seed_00000001_decl_2.parquet") as err:
        tokenize_shard(path, 10, 0)
    assert message in str(err.value)


def _float_q(path: Path) -> None:
    write_shard(path, 1, 2, 7, [0], [0], [[0] * 7])
    table = pq.read_table(path)
    i = table.schema.get_field_index("q2")
    table = table.set_column(i, "q2", pa.array([0.5])).replace_schema_metadata(table.schema.metadata)
    pq.write_table(table, path)


def _truncated(path: Path) -> None:
    full = _numbered_shard(path.with_suffix(".full"), 2000).read_bytes()
    path.write_bytes(full[: len(full) // 2])
