"""Move-quality metrics on batches whose answers are worked out by hand."""

from __future__ import annotations

import pytest
import torch

from forge.ml.metrics import MoveMetrics, compute_metrics, move_gaps, predict

X = -128  # illegal / absent


def _row(*q):
    return list(q) + [X] * (7 - len(q))


# Four samples (decl, mover's team, Q row in team-0 units, target, logits favour):
#  0: sixes, team 0, Q [5, 3, X, 5]: best 5 at slots 0 and 3 (tie); target 0; model picks 3.
#  1: sixes, team 1, Q [10, -4, 2]: team 1 minimises, best -4 at slot 1; model picks 0 (Q 10):
#     gap = 10 - (-4) = 14, a blunder.
#  2: blanks, team 0, only slot 1 legal; the model's biggest logit is on illegal slot 4.
#  3: notrump, team 1, Q [-6, -6, 0]: tie at slots 0 and 1; target 0; model picks 1.
QVALS = torch.tensor([_row(5, 3, X, 5), _row(10, -4, 2), _row(X, 7), _row(-6, -6, 0)], dtype=torch.int8)
LEGAL = (QVALS != X).to(torch.int8)
TEAMS = torch.tensor([0, 1, 0, 1], dtype=torch.int8)
TARGETS = torch.tensor([0, 1, 1, 0], dtype=torch.int8)
DECLS = torch.tensor([6, 6, 0, 9], dtype=torch.int8)
LOGITS = torch.full((4, 7), -1.0)
LOGITS[0, 3] = 2.0
LOGITS[1, 0] = 2.0
LOGITS[2, 4] = 50.0  # illegal: must never be chosen
LOGITS[2, 1] = -0.5
LOGITS[3, 1] = 2.0
# Values: V in team-0 units; the value head speaks for the mover in units of 42 points.
VALUES = torch.tensor([5, -4, 7, -6], dtype=torch.int8)  # mover's view: 5, 4, 7, 6
VALUE_PRED = torch.tensor([8, 4, 7, 0]) / 42.0  # errors 3, 0, 0, 6 -> MAE 2.25


def test_predictions_are_legal_and_gaps_are_in_the_movers_perspective():
    preds = predict(LOGITS, LEGAL)
    assert preds.tolist() == [3, 0, 1, 1]
    assert move_gaps(preds, QVALS, LEGAL, TEAMS).tolist() == [0, 14, 0, 0]


def test_hand_computed_batch():
    m = compute_metrics(LOGITS, QVALS, LEGAL, TEAMS, TARGETS, DECLS, value=VALUE_PRED, values=VALUES)
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(1 / 4)  # only sample 2 hits the published target
    assert m["zero_regret"] == pytest.approx(3 / 4)  # ties count as optimal
    assert m["q_gap"] == pytest.approx(14 / 4)
    assert m["blunder_rate"] == pytest.approx(1 / 4)
    assert m["p99_gap"] == 14
    assert m["value_mae"] == pytest.approx(2.25)
    assert "q_mae" not in m  # no Q predictions given
    assert m["tie_rate"] == pytest.approx(2 / 4)
    # decisions: samples 0, 1 and 3 have a legal move that loses points; sample 2 has one legal move
    assert m["decision_share"] == pytest.approx(3 / 4)
    assert m["decision_q_gap"] == pytest.approx(14 / 3)
    assert m["q_gap/sixes"] == pytest.approx(7.0)
    assert m["q_gap/blanks"] == 0 and m["q_gap/notrump"] == 0
    assert "q_gap/fives" not in m
    # Tie-breaks per predicted slot: slot 3 (1 of 1), slot 1 (1 of 2), slot 0 (0 of 1, a blunder).
    assert m["tiebreak/slot3"] == 1.0 and m["tiebreak/slot1"] == 0.5 and m["tiebreak/slot0"] == 0.0
    # The identity the tie-break rates are built for.
    shares = {0: 1 / 4, 1: 2 / 4, 3: 1 / 4}
    assert sum(shares[i] * m[f"tiebreak/slot{i}"] for i in shares) == pytest.approx(
        m["zero_regret"] - m["accuracy"]
    )


def test_q_mae_uses_legal_moves_in_the_movers_perspective():
    q_pred = torch.zeros(4, 7)
    q_pred[1, :3] = torch.tensor([-10.0, 4.0, -2.0]) / 42  # exact (team 1 sees -Q)
    q_pred[0, :4] = torch.tensor([5.0, 3.0, 99.0, 9.0]) / 42  # slot 2 illegal: ignored; slot 3 off by 4
    m = compute_metrics(LOGITS[:2], QVALS[:2], LEGAL[:2], TEAMS[:2], TARGETS[:2], DECLS[:2], q=q_pred[:2])
    assert m["q_mae"] == pytest.approx(4 / 6)


def test_the_game_value_is_the_best_legal_q_when_the_q_head_is_trained():
    from forge.ml.model import ModelOutput, game_value

    q = torch.zeros(4, 7)
    q[0, :4] = torch.tensor([5.0, 3.0, 99.0, 9.0]) / 42  # slot 2 illegal: its 99 must not count -> 9
    q[1, :3] = torch.tensor([-10.0, 4.0, -2.0]) / 42  # team 1's own view already -> 4
    q[2, 1] = 6.0 / 42  # the only legal move -> 6
    q[3, :3] = torch.tensor([6.0, 2.0, 1.0]) / 42  # -> 6
    out = ModelOutput(LOGITS, VALUE_PRED, q)
    v = game_value(out, LEGAL, ("policy", "value", "q"))
    assert (v * 42).tolist() == pytest.approx([9, 4, 6, 6])
    assert torch.equal(game_value(out, LEGAL, ("policy", "value")), VALUE_PRED)  # no Q head: the value head
    assert game_value(out, LEGAL, ("policy",)) is None
    m = compute_metrics(LOGITS, QVALS, LEGAL, TEAMS, TARGETS, DECLS, value=VALUE_PRED, values=VALUES, q=q,
                        game_value=v)
    # mover's V 5, 4, 7, 6: the game value is off by 4, 0, 1, 0; the value head by 3, 0, 0, 6
    assert m["game_value_mae"] == pytest.approx(5 / 4)
    assert m["value_mae"] == pytest.approx(2.25)
    assert "game_value_mae" not in compute_metrics(LOGITS, QVALS, LEGAL, TEAMS, TARGETS, DECLS, value=VALUE_PRED,
                                                   values=VALUES)  # no Q head scored, no V read off it


def test_p99_is_nearest_rank_and_accumulation_matches_one_shot():
    gen = torch.Generator().manual_seed(0)
    n = 1000
    qvals = torch.full((n, 7), X, dtype=torch.int8)
    qvals[:, 0] = 0
    gaps = torch.zeros(n, dtype=torch.int64)
    gaps[:30] = torch.arange(1, 31)  # 970 zeros then 1..30: the 990th smallest is 20
    qvals[:, 1] = -gaps.to(torch.int8)
    legal = (qvals != X).to(torch.int8)
    logits = torch.zeros(n, 7)
    logits[:, 1] = 1.0  # always the second move
    teams = torch.zeros(n, dtype=torch.int8)
    targets = torch.zeros(n, dtype=torch.int8)
    decls = torch.randint(0, 10, (n,), generator=gen, dtype=torch.int8)
    whole = compute_metrics(logits, qvals, legal, teams, targets, decls)
    assert whole["p99_gap"] == 20
    assert whole["q_gap"] == pytest.approx(sum(range(1, 31)) / n)
    assert whole["blunder_rate"] == pytest.approx(20 / n)
    acc = MoveMetrics()
    for lo in range(0, n, 128):
        s = slice(lo, lo + 128)
        acc.update(logits[s], qvals[s], legal[s], teams[s], targets[s], decls[s])
    assert acc.compute() == whole


def test_random_logits_never_pick_an_illegal_move():
    gen = torch.Generator().manual_seed(1)
    legal = (torch.rand(5000, 7, generator=gen) < 0.4).to(torch.int8)
    legal[torch.arange(5000), torch.randint(0, 7, (5000,), generator=gen)] = 1
    logits = torch.randn(5000, 7, generator=gen) * 100
    preds = predict(logits, legal)
    assert bool(legal.gather(1, preds.unsqueeze(1)).all())


def test_q_gap_per_trick_depth_averages_each_depths_gaps():
    # the four samples above at depths 0, 2, 2, 5 (tricks already played): gaps 0, 14, 0, 0
    m = compute_metrics(LOGITS, QVALS, LEGAL, TEAMS, TARGETS, DECLS, depths=torch.tensor([0, 2, 2, 5]))
    assert m["q_gap/depth0"] == 0 and m["q_gap/depth2"] == pytest.approx(7.0) and m["q_gap/depth5"] == 0
    assert not any(f"q_gap/depth{k}" in m for k in (1, 3, 4, 6))  # no sample there: no figure
    split = MoveMetrics()  # the same over two batches
    split.update(LOGITS[:2], QVALS[:2], LEGAL[:2], TEAMS[:2], TARGETS[:2], DECLS[:2], depths=torch.tensor([0, 2]))
    split.update(LOGITS[2:], QVALS[2:], LEGAL[2:], TEAMS[2:], TARGETS[2:], DECLS[2:], depths=torch.tensor([2, 5]))
    assert {k: v for k, v in split.compute().items() if "depth" in k} == {k: v for k, v in m.items() if "depth" in k}
    assert not any("depth" in k for k in compute_metrics(LOGITS, QVALS, LEGAL, TEAMS, TARGETS, DECLS))


def test_blunder_means_a_gap_over_ten_points_not_ten():
    # Team 0 movers; the model picks slot 1 each time: gaps 10 (not a blunder) and 11 (a blunder).
    qvals = torch.tensor([_row(10, 0), _row(11, 0)], dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    logits = torch.tensor([[0.0, 1.0] + [5.0] * 5] * 2)  # large logits on illegal slots never count
    m = compute_metrics(logits, qvals, legal, torch.zeros(2, dtype=torch.int8), torch.zeros(2, dtype=torch.int8),
                        torch.zeros(2, dtype=torch.int8))
    assert m["q_gap"] == pytest.approx(10.5)
    assert m["blunder_rate"] == pytest.approx(1 / 2)
    assert m["zero_regret"] == 0


def test_zero_regret_counts_the_chosen_moves_q_equal_to_the_best_in_the_movers_view():
    # Team 1 minimises: Q [3, -2, -2] has best -2 at slots 1 and 2; slot 2 is zero-regret, slot 0 is not.
    qvals = torch.tensor([_row(3, -2, -2), _row(3, -2, -2)], dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    logits = torch.full((2, 7), -1.0)
    logits[0, 2], logits[1, 0] = 1.0, 1.0
    m = compute_metrics(logits, qvals, legal, torch.ones(2, dtype=torch.int8), torch.ones(2, dtype=torch.int8),
                        torch.zeros(2, dtype=torch.int8))
    assert m["zero_regret"] == pytest.approx(1 / 2)
    assert m["accuracy"] == 0  # the target is slot 1 (lowest index among ties)
    assert m["q_gap"] == pytest.approx(5 / 2)


def test_value_mae_and_q_mae_are_in_points_whatever_the_batching():
    # Value 0.25 and Q 0.5 of 42 points everywhere: errors against V = 5 (team 0) and -4 (team 1 sees +4).
    values = torch.tensor([5, -4], dtype=torch.int8)
    qvals = torch.tensor([_row(21, 0), _row(-21, X, 21)], dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    teams = torch.tensor([0, 1], dtype=torch.int8)
    value, q = torch.full((2,), 0.25), torch.full((2, 7), 0.5)
    args = (torch.zeros(2, 7), qvals, legal, teams, torch.zeros(2, dtype=torch.int8), torch.zeros(2, dtype=torch.int8))
    whole = compute_metrics(*args, value=value, values=values, q=q)
    # |10.5 - 5| and |10.5 - 4|; Q (mover's view) 21, 0 | 21, -21 against 21 on legal slots only
    assert whole["value_mae"] == pytest.approx((5.5 + 6.5) / 2)
    assert whole["q_mae"] == pytest.approx((0 + 21 + 0 + 42) / 4)
    acc = MoveMetrics()
    for i in range(2):
        acc.update(*(a[i:i + 1] for a in args), value=value[i:i + 1], values=values[i:i + 1], q=q[i:i + 1])
    assert acc.compute()["value_mae"] == pytest.approx(whole["value_mae"])
    assert acc.compute()["q_mae"] == pytest.approx(whole["q_mae"])  # per legal move, not per state


def test_the_catalogue_declares_every_metric_the_views_and_flags_use():
    from forge.flywheel.records import HIGHER_IS_BETTER, TRACKED
    from forge.ml.catalog import CATALOG, REFERENCE_FIGURES, REFERENCE_FIVE
    from forge.ui.metric_info import info

    m = compute_metrics(LOGITS, QVALS, LEGAL, TEAMS, TARGETS, DECLS, value=VALUE_PRED, values=VALUES,
                        q=torch.zeros(4, 7))
    assert set(REFERENCE_FIVE) <= m.keys()
    assert {k for k in m if "/" not in k} <= CATALOG.keys()
    assert {("val", name) for name in REFERENCE_FIVE} <= set(TRACKED)
    assert "zero_regret" in HIGHER_IS_BETTER and "q_mae" not in HIGHER_IS_BETTER
    assert info("q_mae").unit == info("value_mae").unit == "points"
    shuffle = REFERENCE_FIGURES["Q-Val Shuffle (3.3M)"]
    assert [shuffle[n] for n in REFERENCE_FIVE] == [0.074, 0.994, 0.0024, 1.90, 0.96]
