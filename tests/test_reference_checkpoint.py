"""A checkpoint of the public reference trainer imports: its own outputs are reproduced through the
module and the inference net, its missing Q head is reported untrained and never scored, and it
serves as evaluation input and fine-tuning start. Only safe globals are ever unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from forge.cli import eval as eval_cli
from forge.commandline import run_cli
from forge.ml.checkpoints import (
    SAFE_GLOBALS,
    CheckpointError,
    baseline_architecture,
    checkpoint_info,
    read_checkpoint,
    same_shape,
)
from forge.ml.inference import InferenceNet, fp32_tolerance
from forge.ml.loading import load_module, load_weights
from forge.ml.model import preset
from forge.ml.module import DominoModule
from forge.ml.reference import REFERENCE
from forge.ml.settings import TrainingSection
from forge.ml.store import build_dataset
from forge.ml.training import train
from forge.oracle.shard import write_shard
from forge.oracle.solve import solve

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference-checkpoint"
CKPT = FIXTURE / "reference-large.ckpt"
pytestmark = pytest.mark.skipif(not CKPT.is_file(), reason=f"reference fixture not found at {FIXTURE}")


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    with np.load(FIXTURE / "expected.npz") as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


@pytest.fixture(scope="module")
def module() -> DominoModule:
    return load_module(CKPT).eval()


def _assert_reproduces(config, out, expected) -> None:
    for name, ref in (("logits", "ref_logits"), ("value", "ref_value")):
        want = expected[ref]
        tol = fp32_tolerance(config, float(want.abs().max()))
        torch.testing.assert_close(getattr(out, name), want, atol=tol, rtol=0, msg=name)


def test_the_module_reproduces_the_reference_outputs(module, expected):
    assert module.config.describe() == "embed 128, 8 heads, 4 layers, ff 512"
    with torch.inference_mode():
        out = module.model(expected["tokens"], expected["masks"], expected["players"])
    _assert_reproduces(module.config, out, expected)


def test_the_inference_net_reproduces_the_reference_outputs(module, expected):
    out = InferenceNet(module.model)(expected["tokens"], expected["masks"], expected["players"])
    _assert_reproduces(module.config, out, expected)


def test_the_missing_q_head_is_reported_untrained_not_random(module):
    info = checkpoint_info(CKPT)
    assert info.imported_from == REFERENCE and not info.checksum
    assert info.trained_heads == ("policy", "value") == module.trained_heads
    assert module.hparams.q_weight == 0
    assert same_shape(baseline_architecture(CKPT), preset("large"))  # what `flywheel init --baseline` asks
    assert not module.model.q_head.weight.any() and not module.model.q_head.bias.any()


def test_eval_reports_only_the_trained_heads(tmp_path, capsys):
    shards = tmp_path / "shards"
    split = {"val": [write_shard(solve(s, d, 3), shards) for s, d in ((900, 0), (901, 6))]}
    build_dataset(split, tmp_path / "ds", 40, 0, progress=False)
    out = tmp_path / "metrics.json"
    argv = ["--checkpoint", str(CKPT), "--data", str(tmp_path / "ds"), "--out", str(out)]
    assert run_cli(eval_cli.main, argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics == json.loads(capsys.readouterr().out)
    assert metrics["trained_heads"] == ["policy", "value"]
    assert {"accuracy", "q_gap", "value_mae"} <= metrics.keys() and "q_mae" not in metrics


def test_weights_load_into_this_projects_module_for_fine_tuning():
    module = DominoModule.from_preset("large")
    load_weights(module, CKPT)  # what training's --resume and the flywheel's baseline do
    state = read_checkpoint(CKPT)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    with pytest.raises(CheckpointError, match=r"'large' .* but this run builds a 'small'"):
        load_weights(DominoModule.from_preset("small"), CKPT)


def test_training_fine_tunes_from_it(tmp_path):
    shards = tmp_path / "shards"
    split = {"train": [write_shard(solve(s, 6, 3), shards) for s in (1, 2)],
             "val": [write_shard(solve(3, 6, 3), shards)]}
    build_dataset(split, tmp_path / "ds", 30, 0, progress=False)
    result = train(tmp_path / "ds", TrainingSection(epochs=1, batch_size=32), resume=CKPT, run_dir=tmp_path / "runs",
                   wandb=False, progress=False)
    info = checkpoint_info(result.last_checkpoint)  # this project's checkpoint now, checksum and all
    assert info.imported_from is None and info.checksum and info.trained_heads == ("policy", "value")
    assert info.config == load_module(CKPT).config


def _reference_dict() -> dict:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(CKPT, weights_only=True)


def test_a_q_value_reference_checkpoint_is_refused_by_name(tmp_path):
    raw = _reference_dict()
    raw["hyper_parameters"]["loss_mode"] = "qvalue"
    path = tmp_path / "qvalue.ckpt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=f"{path}: reference checkpoint trained with loss_mode 'qvalue'"):
        checkpoint_info(path)


class _Payload:
    """Unpickling this would run code (it would create the marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path):
    raw = _reference_dict()
    marker = tmp_path / "ran"
    raw["callbacks"] = {"evil": _Payload(marker)}
    path = tmp_path / "evil.ckpt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()
