"""The fast inference forward must give the module's own outputs to fp32 rounding: every path, every layout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from forge.ml.inference import InferenceNet, fp32_tolerance, inference_net, onednn_linear_available
from forge.ml.metrics import predict
from forge.ml.model import DominoTransformer, preset
from forge.ml.tokenize import FEATURE_VOCAB, featurize
from forge.oracle.solve import solve

BACKENDS = [pytest.param(True, id="onednn"), pytest.param(False, id="plain")]


def _trained_like(config) -> DominoTransformer:
    """Weights off their initial scale (as after training), so a wrong term would show."""
    torch.manual_seed(1)
    model = DominoTransformer(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def _full_game_batch(b: int = 96) -> dict[str, torch.Tensor]:
    """Random full-game tokens: every hand token present, 0-3 trick plays (so masks vary), and a
    random non-empty set of legal moves."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.cat([torch.randint(0, v, (b, 32, 1), generator=gen) for v in FEATURE_VOCAB], -1)
    plays = torch.randint(0, 4, (b, 1), generator=gen)
    masks = torch.ones(b, 32, dtype=torch.int8)
    masks[:, 29:] = (torch.arange(3) < plays).to(torch.int8)
    legal = torch.rand(b, 7, generator=gen) < 0.5
    legal[torch.arange(b), torch.randint(0, 7, (b,), generator=gen)] = True
    return {"tokens": tokens.to(torch.int8), "masks": masks, "legal": legal.to(torch.int8),
            "players": torch.randint(0, 4, (b,), generator=gen, dtype=torch.int8)}


def _reduced_game_batch() -> dict[str, torch.Tensor]:
    """Real samples of a 3-domino game: absent hand slots in the middle of the sequence."""
    sol = solve(5, 2, 3)
    arrays = featurize(sol.state, sol.V, sol.q.T, sol.hands, sol.decl_id)
    return {k: torch.from_numpy(arrays[k][:80].copy()) for k in ("tokens", "masks", "players", "legal")}


def _assert_same(model: DominoTransformer, net, batch) -> None:
    """Outputs within the fp32 bound; the same legal move chosen wherever the module's choice is
    clear of that bound (closer top-two legal logits may swap on rounding alone)."""
    with torch.inference_mode():
        ref = model(batch["tokens"], batch["masks"], batch["players"])
        out = net(batch["tokens"], batch["masks"], batch["players"])
    for name in ("logits", "value", "q"):
        want = getattr(ref, name)
        tol = fp32_tolerance(model.config, float(want.abs().max()))
        torch.testing.assert_close(getattr(out, name), want, atol=tol, rtol=0, msg=name)
    legal = batch["legal"] != 0
    tol = fp32_tolerance(model.config, float(ref.logits.abs().max()))
    top2 = ref.logits.masked_fill(~legal, float("-inf")).topk(2, -1).values
    clear = top2[:, 0] - top2[:, 1] > 2 * tol  # each forward is within tol of the other
    assert clear.float().mean() > 0.5, "too few rows with a clear choice to compare"
    assert torch.equal(predict(out.logits, legal)[clear], predict(ref.logits, legal)[clear])


@pytest.mark.parametrize("onednn", BACKENDS)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("size", ["large", "tiny"])
def test_inference_net_matches_the_module(size, norm_first, onednn):
    if onednn and not onednn_linear_available():
        pytest.skip("torch without oneDNN's linear")
    model = _trained_like(replace(preset(size), norm_first=norm_first))
    net = InferenceNet(model, onednn=onednn)
    _assert_same(model, net, _full_game_batch())
    _assert_same(model, net, _reduced_game_batch())
    every = _full_game_batch(33)  # no mask at all (every token present), odd batch size
    every["masks"].fill_(1)
    _assert_same(model, net, every)


def test_inference_net_is_a_snapshot_and_cpu_only():
    model = _trained_like(preset("tiny"))
    net = inference_net(model)
    assert isinstance(net, InferenceNet)
    batch = _full_game_batch(8)
    before = net(batch["tokens"], batch["masks"], batch["players"]).logits.clone()
    with torch.no_grad():
        model.policy_head.bias.add_(1.0)  # later training doesn't leak into an existing snapshot
    assert torch.equal(net(batch["tokens"], batch["masks"], batch["players"]).logits, before)
    assert inference_net(model, "meta") is model  # other devices: the module's own forward


def test_inference_net_refuses_layers_it_does_not_implement():
    model = _trained_like(preset("tiny"))
    for layer in model.encoder.layers:
        layer.activation = torch.nn.functional.gelu
    with pytest.raises(ValueError, match="ReLU"):
        InferenceNet(model)
