"""DominoTransformer shapes and invariances, the losses, and hand-slot shuffling."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from forge.ml.checkpoints import weights_sha256
from forge.ml.data import shuffle_hand_slots
from forge.ml.inference import fp32_tolerance
from forge.ml.model import DominoTransformer, count_parameters, encoder_layer, preset
from forge.ml.module import DominoModule, policy_loss, q_loss, value_loss
from forge.ml.tokenize import FEATURE_VOCAB, featurize
from forge.oracle.solve import solve

X = -128


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    """Real format-v1 samples of a reduced game (hand size 3), so absent slots are padded."""
    sol = solve(3, 6, 3)
    arrays = featurize(sol.state, sol.V, sol.q.T, sol.hands, sol.decl_id)
    return {k: torch.from_numpy(v[:64].copy()) for k, v in arrays.items()}


def _features(b: int, gen: torch.Generator) -> torch.Tensor:
    cols = [torch.randint(0, v, (b, 32, 1), generator=gen) for v in FEATURE_VOCAB]
    return torch.cat(cols, -1).to(torch.int8)


def test_large_preset_size_and_output_shapes():
    model = DominoTransformer(preset("large"))
    assert 810_000 < count_parameters(model) < 825_000  # "about 817K"
    assert count_parameters(DominoTransformer(preset("small"))) < count_parameters(model)
    assert count_parameters(DominoTransformer(preset("tiny"))) < 50_000
    gen = torch.Generator().manual_seed(0)
    out = model.eval()(_features(5, gen), torch.ones(5, 32, dtype=torch.int8), torch.tensor([0, 1, 2, 3, 1]))
    assert out.logits.shape == (5, 7) and out.value.shape == (5,) and out.q.shape == (5, 7)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")


@pytest.mark.parametrize("norm_first", [False, True])
def test_last_layer_shortcut_matches_the_full_encoder(batch, norm_first):
    """The heads read 8 tokens; computing only those in the last layer must change nothing."""
    model = DominoTransformer(replace(preset("small"), norm_first=norm_first)).eval()
    tokens, masks, players = batch["tokens"], batch["masks"], batch["players"]
    with torch.no_grad():
        out = model(tokens, masks, players)
        x = torch.cat([e(t) for e, t in zip(model.embeddings, tokens.long().unbind(-1))], -1)
        x = model.encoder(model.input_proj(x), src_key_padding_mask=masks == 0)  # final norm included
        idx = 1 + 7 * players.long()[:, None] + torch.arange(7)
        hand = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
        pairs = ((out.logits, model.policy_head(hand).squeeze(-1)), (out.value, model.value_head(x[:, 0]).squeeze(-1)))
    for got, want in pairs:
        tol = fp32_tolerance(model.config, float(want.abs().max()))  # other shapes: other GEMM blocking
        torch.testing.assert_close(got, want, atol=tol, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_is_torchs_layer_in_training_too(batch, norm_first):
    """The model's own layer forward (attention on per-head views, one mask for all heads) gives
    nn.TransformerEncoderLayer's outputs and gradients, in training mode (dropout 0: no draws) on
    padded states, for every row and for a subset of query rows."""
    model = DominoTransformer(replace(preset("small"), dropout=0.0, norm_first=norm_first)).train()
    tokens, masks = batch["tokens"], batch["masks"]
    pad = masks == 0
    assert pad.any()
    x = model.input_proj(torch.cat([e(t) for e, t in zip(model.embeddings, tokens.long().unbind(-1))], -1))
    x = x.detach().requires_grad_()
    layer = model.encoder.layers[0]
    tol = fp32_tolerance(model.config, float(x.detach().abs().max()))
    want = layer(x, src_key_padding_mask=pad)
    got = encoder_layer(layer, x, x, (~pad).view(len(x), 1, 1, -1))
    torch.testing.assert_close(got, want, atol=tol, rtol=0)
    weights = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    grads_want = torch.autograd.grad((want * weights).sum(), [x, *layer.parameters()])
    grads_got = torch.autograd.grad((got * weights).sum(), [x, *layer.parameters()])
    for g, w in zip(grads_got, grads_want):
        torch.testing.assert_close(g, w, atol=tol * max(1.0, float(w.abs().max())), rtol=0)
    rows = torch.tensor([0, 5, 9])  # a subset of queries: the last layer's shortcut
    some = encoder_layer(layer, x[:, rows], x, (~pad).view(len(x), 1, 1, -1))
    torch.testing.assert_close(some, want[:, rows], atol=tol, rtol=0)


def test_padded_tokens_do_not_matter(batch):
    model = DominoTransformer(preset("tiny")).eval()
    tokens = batch["tokens"].clone()
    pad = batch["masks"] == 0
    assert pad.any()  # reduced game: absent hand slots and unplayed trick positions
    garbage = _features(len(tokens), torch.Generator().manual_seed(1))
    tokens[pad] = garbage[pad]
    with torch.no_grad():
        a = model(batch["tokens"], batch["masks"], batch["players"])
        b = model(tokens, batch["masks"], batch["players"])
    legal = batch["legal"].bool()
    torch.testing.assert_close(a.logits[legal], b.logits[legal])
    torch.testing.assert_close(a.value, b.value)


def test_policy_loss_hard_soft_and_team_sign():
    qvals = torch.tensor([[4, 0, X, X, X, X, X]] * 2, dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    teams = torch.tensor([0, 1])
    targets = torch.tensor([0, 1])  # team 1 minimises: slot 1
    logits = torch.tensor([[1.0, 0.0, 9, 9, 9, 9, 9]] * 2)  # big logits on illegal slots are ignored
    hard = policy_loss(logits, targets, qvals, legal, teams, soft_weight=0.0, temperature=1.0)
    ce = torch.nn.functional.cross_entropy(torch.tensor([[1.0, 0.0]] * 2), targets)
    torch.testing.assert_close(hard, ce)
    # Soft target for a temperature T: softmax of the mover's Q / T over legal moves.
    soft = policy_loss(logits, targets, qvals, legal, teams, soft_weight=1.0, temperature=2.0)
    p = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    logp = torch.log_softmax(torch.tensor([1.0, 0.0]), 0)
    expected = -((p * logp).sum() + (p.flip(0) * logp).sum()) / 2  # team 1 prefers slot 1
    torch.testing.assert_close(soft, expected)


def test_value_and_q_losses_use_the_movers_perspective():
    teams = torch.tensor([0, 1])
    values = torch.tensor([21, 21], dtype=torch.int8)
    assert value_loss(torch.tensor([0.5, -0.5]), values, teams) == 0
    qvals = torch.tensor([[42, X, X, X, X, X, X], [-42, 0, X, X, X, X, X]], dtype=torch.int8)
    legal = (qvals != X).to(torch.int8)
    q = torch.tensor([[1.0, 7, 7, 7, 7, 7, 7], [1.0, 0.0, 7, 7, 7, 7, 7]])
    assert q_loss(q, qvals, legal, teams) == 0


def test_hand_slot_shuffle_moves_labels_with_their_dominoes(batch):
    gen = torch.Generator().manual_seed(3)
    out = shuffle_hand_slots(batch, gen)
    b = len(batch["targets"])
    assert not torch.equal(out["tokens"], batch["tokens"])
    torch.testing.assert_close(out["tokens"][:, 0], batch["tokens"][:, 0])
    torch.testing.assert_close(out["tokens"][:, 29:], batch["tokens"][:, 29:])
    for k in range(b):
        m = int(batch["players"][k])
        old = batch["tokens"][k, 1 + 7 * m : 8 + 7 * m]
        new = out["tokens"][k, 1 + 7 * m : 8 + 7 * m]
        # Each new slot j carries some old slot's token, mask, Q and legality together.
        for j in range(7):
            src = [i for i in range(7) if torch.equal(old[i], new[j]) and
                   batch["qvals"][k, i] == out["qvals"][k, j] and batch["legal"][k, i] == out["legal"][k, j]]
            assert src, (k, j)
        t_old, t_new = int(batch["targets"][k]), int(out["targets"][k])
        assert torch.equal(old[t_old], new[t_new])
        assert batch["qvals"][k, t_old] == out["qvals"][k, t_new]
    # Every player's slots are permuted (a multiset check on all 28 hand tokens).
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    for k in range(b):
        assert key(out["tokens"][k, 1:29]) == key(batch["tokens"][k, 1:29])
        assert out["masks"][k, 1:29].sum() == batch["masks"][k, 1:29].sum()


def test_module_keeps_its_config_in_hparams():
    module = DominoModule.from_preset("tiny", q_weight=0.5)
    assert module.hparams["model_config"] == preset("tiny").to_dict()
    assert module.hparams["q_weight"] == 0.5


def test_trained_heads_follow_the_losses_of_the_run():
    assert DominoModule.from_preset("tiny").trained_heads == ("policy", "value")
    assert DominoModule.from_preset("tiny", q_weight=0.5).trained_heads == ("policy", "value", "q")
    assert DominoModule.from_preset("tiny", value_weight=0.0).trained_heads == ("policy",)


def test_weights_digest_sees_every_bit_and_no_order():
    state = DominoModule.from_preset("tiny").state_dict()
    digest = weights_sha256(state)
    assert weights_sha256(dict(reversed(list(state.items())))) == digest
    key = "model.encoder.layers.1.linear2.bias"
    flipped = dict(state)
    flipped[key] = state[key].clone()
    flipped[key].view(torch.int32)[3] ^= 1  # the lowest mantissa bit of one weight
    assert weights_sha256(flipped) != digest
    renamed = {("model.x" if k == key else k): v for k, v in state.items()}
    assert weights_sha256(renamed) != digest
