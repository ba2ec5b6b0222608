"""The value and Q heads speak in points: their targets' scale (points / 42 in the loss), their outputs
in points, and the flywheel's configuration that trains them beside the policy."""

from __future__ import annotations

import math

import pytest
import torch

from forge.errors import InputError
from forge.flywheel.config import config_from_dict, load_preset
from forge.flywheel.stages.fitting import TrainSettings
from forge.ml.model import VALUE_SCALE, DominoTransformer, preset
from forge.ml.module import DominoModule, decision_rows, policy_loss, q_loss, value_loss
from forge.ml.settings import HardwareSection, TrainingSection
from forge.ml.training import train
from forge.oracle.rules import TOTAL_POINTS

X = -128


def test_value_target_is_the_movers_v_over_42_points():
    teams = torch.tensor([0, 1, 0])
    values = torch.tensor([42, 42, -21], dtype=torch.int8)  # team-0 units; team 1's mover sees -42
    exact = torch.tensor([1.0, -1.0, -0.5])
    assert value_loss(exact, values, teams) == 0
    # an error of 42 points on one state of three: MSE (1 + 0 + 0) / 3 in units of 42 points
    torch.testing.assert_close(value_loss(exact + torch.tensor([1.0, 0, 0]), values, teams), torch.tensor(1 / 3))
    assert VALUE_SCALE == TOTAL_POINTS == 42


def test_q_target_is_the_movers_q_over_42_points_on_legal_moves_only():
    qvals = torch.tensor([[21, X, X, X, X, X, X], [21, -21, X, X, X, X, X]], dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    teams = torch.tensor([0, 1])
    q = torch.tensor([[0.5, 9, 9, 9, 9, 9, 9], [-0.5, 0.5 + 1.0, 9, 9, 9, 9, 9]])  # one 42-point error
    torch.testing.assert_close(q_loss(q, qvals, legal, teams), torch.tensor(1 / 3))  # 3 legal moves


def test_heads_output_points_for_every_hand_slot_and_the_state():
    model = DominoTransformer(preset("tiny")).eval()
    for head, bias in ((model.value_head, 0.25), (model.q_head, -0.5)):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.constant_(head.bias, bias)
    b = 5
    tokens = torch.zeros(b, 32, 12, dtype=torch.int8)
    out = model(tokens, torch.ones(b, 32, dtype=torch.int8), torch.tensor([0, 1, 2, 3, 0]))
    assert out.q_points.shape == (b, 7) and out.value_points.shape == (b,)
    torch.testing.assert_close(out.value_points, torch.full((b,), 10.5))  # 0.25 of 42 points
    torch.testing.assert_close(out.q_points, torch.full((b, 7), -21.0))


def test_presets_train_the_q_head_beside_the_policy():
    for name in ("tiny", "quick", "standard"):
        cfg = load_preset(name)
        assert cfg.training.q_weight > 0 and cfg.training.value_weight > 0, name
        training = cfg.training
        module = DominoModule.from_preset("tiny", value_weight=training.value_weight, q_weight=training.q_weight)
        assert module.trained_heads == ("policy", "value", "q") and module.move_head == "policy"


def test_a_config_written_before_the_head_weights_keeps_what_it_trained():
    old = load_preset("quick").flat()  # as state.yaml held it then: flat, before the sections
    del old["q_weight"], old["value_weight"]
    cfg = config_from_dict(old)
    assert (cfg.training.q_weight, cfg.training.value_weight) == (0.0, 0.5)  # no Q head, the value weight it had


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1"])
def test_head_weights_are_checked(bad):
    from forge.flywheel.config import ConfigError

    with pytest.raises(ConfigError, match="config.training.q_weight"):
        config_from_dict({**load_preset("quick").to_dict(), "q_weight": bad})


def test_the_head_weights_are_training_settings_and_reach_the_module_only_from_there(tmp_path):
    settings = TrainSettings(data=tmp_path, run_dir=tmp_path / "r", resume=None, from_scratch=True,
                             training=TrainingSection(model="tiny", value_weight=2.0, q_weight=3.0),
                             hardware=HardwareSection())
    assert TrainSettings.from_json(settings.to_json()).arguments()["training"].q_weight == 3.0  # to a child, too
    with pytest.raises(InputError, match="q_weight is a training setting"):  # never a second way in
        train(tmp_path, TrainingSection(model="tiny"), module_kwargs={"q_weight": 3.0})


def test_decision_rows_are_the_states_where_a_legal_move_can_lose_points():
    qvals = torch.tensor([[10, 10, X, X, X, X, X],   # two legal moves, both best: no decision
                          [10, -4, X, X, X, X, X],   # one can lose 14 points
                          [X, 7, X, X, X, X, X],     # a single legal move
                          [-6, -6, -6, X, X, X, 5]], dtype=torch.int8)  # the 5 is illegal (legal mask below)
    legal = (qvals != X).to(torch.int8)
    legal[3, 6] = 0
    assert decision_rows(qvals, legal).tolist() == [False, True, False, False]


def test_the_policy_loss_counts_only_the_rows_it_is_given():
    """Hand-computed: uniform logits over two legal moves cost ln 2 per row (hard and soft targets alike),
    whatever the Q; a row's mask takes it out of the mean, not a share of it."""
    qvals = torch.tensor([[10, 10, X, X, X, X, X], [10, -4, X, X, X, X, X]], dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    logits = torch.zeros(2, 7)
    logits[1, 0] = 2.0  # row 1 favours its best move: CE of the hard target = ln(1 + e^-2)
    targets, teams = torch.tensor([0, 0]), torch.tensor([0, 0])
    hard = [math.log(2), math.log(1 + math.exp(-2))]
    every = policy_loss(logits, targets, qvals, legal, teams, 0.0, 1.0)
    torch.testing.assert_close(every, torch.tensor(sum(hard) / 2))
    only = policy_loss(logits, targets, qvals, legal, teams, 0.0, 1.0, decision_rows(qvals, legal))
    torch.testing.assert_close(only, torch.tensor(hard[1]))
    no_rows = torch.zeros(2, dtype=torch.bool)
    none = policy_loss(logits.requires_grad_(), targets, qvals, legal, teams, 0.7, 3.0, no_rows)
    assert none == 0 and none.requires_grad  # a batch without a decision: no policy loss, the graph kept


def test_policy_states_is_a_training_setting_that_reaches_the_module(tmp_path):
    assert TrainingSection().policy_states == "all"  # what every run before the setting trained with
    cfg = config_from_dict({**load_preset("quick").to_dict(), "policy_states": "decisions"})
    assert cfg.training.policy_states == "decisions"
    from forge.flywheel.config import ConfigError

    with pytest.raises(ConfigError, match="config.training.policy_states"):
        config_from_dict({**load_preset("quick").to_dict(), "policy_states": "some"})
    with pytest.raises(InputError, match="policy_states is a training setting"):
        train(tmp_path, TrainingSection(model="tiny"), module_kwargs={"policy_states": "decisions"})
