"""Rules stepping (forge.oracle.play) and the play-out evaluation on reduced games."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from forge.ml.model import DominoTransformer, preset
from forge.ml.playout import ModelPolicy, golden_shards, oracle_policy, play_out, play_out_shards
from forge.ml.store import build_dataset
from forge.oracle.play import child_state, is_terminal, legal_moves, play
from forge.oracle.rules import ILLEGAL_Q
from forge.oracle.shard import write_shard
from forge.oracle.solve import solve
from forge.oracle.state import initial_state, pack_state

DEALS = [(seed, decl, n) for n in (2, 3, 4) for seed, decl in ((11, 6), (12, 0), (13, 7), (14, 8), (15, 9))]


@pytest.fixture(scope="module")
def solutions():
    return [solve(seed, decl, n) for seed, decl, n in DEALS]


@pytest.mark.parametrize("k", range(0, len(DEALS), 3))
def test_play_agrees_with_the_solver_on_every_state(solutions, k):
    """Legal moves match the oracle's legal Q, and Q(s, i) = points scored + V(child)."""
    sol = solutions[k]
    for r in range(len(sol)):
        state, q = int(sol.state[r]), sol.q[:, r]
        legal = legal_moves(state, sol.hands, sol.decl_id)
        assert legal == [i for i in range(7) if q[i] != ILLEGAL_Q]
        assert is_terminal(state) == (not legal)
        for i in legal:
            step = play(state, i, sol.hands, sol.decl_id)
            assert step.child == child_state(state, i, sol.hands, sol.decl_id)
            assert q[i] == step.points + sol.V[sol.lookup(step.child)]


def test_worked_tricks():
    """Sixes, one domino each: the tables' trick rules, points and next leader, by hand."""
    hands = np.array([[27], [26], [1], [0]], dtype=np.int8)  # 6-6, 6-5, 1-0, 0-0
    s = initial_state(1)
    for _ in range(3):
        s = child_state(s, 0, hands, 6)
    assert s == pack_state((0, 0, 0, 1), 0, 3, (0, 0, 0))
    assert play(s, 0, hands, 6) == (pack_state((0, 0, 0, 0), 0, 0), 1)  # 6-6 wins, 1 point
    with pytest.raises(ValueError, match="does not hold"):
        play(s, 3, hands, 6)
    # 6-4 (10 count) led, 6-6 from player 1 wins: team 1 scores 11, player 1 leads next.
    hands = np.array([[25], [27], [1], [0]], dtype=np.int8)
    s = initial_state(1)
    for _ in range(3):
        s = child_state(s, 0, hands, 6)
    assert play(s, 0, hands, 6) == (pack_state((0, 0, 0, 0), 1, 0), -11)


def test_oracle_policy_loses_nothing(solutions):
    result = play_out(oracle_policy, solutions)
    assert len(result.deals) == len(DEALS)
    for deal, sol in zip(result.deals, solutions):
        assert deal.points_lost == 0
        assert deal.outcome == deal.optimal_value == sol.V[sol.lookup(initial_state(sol.hand_size))]
    summary = result.summary()
    assert summary["playout_points_lost"] == 0 and summary["playout_perfect_hands"] == 1.0


def test_random_policy_loses_points_and_the_books_balance(solutions):
    rng = random.Random(0)
    result = play_out(lambda ps: [rng.choice(p.legal) for p in ps], solutions * 4)
    lost = [d.points_lost for d in result.deals]
    assert min(lost) >= 0 and sum(lost) > 0
    # play_out itself asserts outcome == V0 - lost_team0 + lost_team1 for every deal.
    assert result.summary()["playout_points_lost"] == pytest.approx(np.mean(lost))


def test_model_policy_plays_legal_moves_from_golden_shards(tmp_path):
    shards = [write_shard(solve(seed, seed % 10, 3), tmp_path / "shards") for seed in range(30, 36)]
    build_dataset({"train": shards[:3], "val": shards[3:]}, tmp_path / "data", 50, 0, progress=False)
    golden = golden_shards(tmp_path / "data", "val")
    assert golden == shards[3:]
    torch.manual_seed(0)
    policy = ModelPolicy(DominoTransformer(preset("tiny")))
    result = play_out_shards(policy, golden)  # play_out rejects any illegal choice
    assert [d.seed for d in result.deals] == [33, 34, 35]
    assert result.summary()["playout_deals"] == 3
