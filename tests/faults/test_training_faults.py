"""Training faults (issue 10, faults 1 and 15; SIGTERM/Ctrl+C in fault 6): a diverged model never
passes as a result, bad arguments and bad datasets fail before any run folder exists, and an
interruption reaches the caller as an interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from forge.cli import train as train_cli
from forge.commandline import run_cli
from forge.errors import ForgeError, InputError, Terminated
from forge.ml.settings import HardwareSection, TrainingSection
from forge.ml.store import build_dataset
from forge.ml.training import TrainingDiverged, train
from forge.oracle.shard import write_shard
from forge.oracle.solve import solve
from forge.validation import first_problem

FAST = dict(wandb=False, progress=False)
TINY = dict(model="tiny", batch_size=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """360 training samples of the 4-domino game (6 deals), 120 for validation."""
    out = tmp_path_factory.mktemp("faults-data")
    splits = {"train": [write_shard(solve(s, 6, 4), out / "shards") for s in range(6)],
              "val": [write_shard(solve(s, 6, 4), out / "shards") for s in range(1000, 1002)]}
    build_dataset(splits, out / "data", 60, 0, progress=False)
    return out / "data"


def _checkpoints(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ckpt"))


@pytest.mark.parametrize("section, bad", [
    (TrainingSection, {"lr": float("inf")}), (TrainingSection, {"lr": float("nan")}), (TrainingSection, {"lr": 0.0}),
    (TrainingSection, {"lr": -1e-3}), (TrainingSection, {"epochs": 0}), (TrainingSection, {"batch_size": 0}),
    (TrainingSection, {"val_samples": 0}), (TrainingSection, {"train_seed": -1}), (TrainingSection, {"model": "huge"}),
    (TrainingSection, {"q_weight": float("nan")}), (HardwareSection, {"precision": "fp8"}),
    (HardwareSection, {"devices": 0}),
])
def test_bad_settings_are_refused_where_they_are_declared(section, bad):
    """The sections are the one validation: a bad value never reaches train() (nor a run folder)."""
    with pytest.raises(ValidationError) as err:
        section(**bad)
    assert first_problem(err.value).startswith(next(iter(bad)))  # names the field


def test_bad_module_arguments_are_refused_before_any_run_folder(mini, tmp_path):
    with pytest.raises(InputError, match="shuffle_hands must be a finite number"):
        train(mini, TrainingSection(**TINY), run_dir=tmp_path / "runs", module_kwargs={"shuffle_hands": float("nan")},
              **FAST)
    assert not (tmp_path / "runs").exists()


def test_cli_non_finite_lr_is_one_line_and_exit_2(mini, tmp_path, capsys):
    proc = subprocess.run([sys.executable, "-m", "forge.cli.train", "--data", str(mini), "--lr", "inf",
                           "--no-wandb", "--run-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "finite" in proc.stderr, proc.stderr
    cases = [(["--lr", "nan"], "finite"), (["--accelerator", "cpu", "--precision", "16-mixed"], "16-mixed needs a GPU")]
    for argv, message in cases:
        assert run_cli(train_cli.main, ["--data", str(mini), "--no-wandb", "--run-dir", str(tmp_path / "runs"),
                                        "--model", "tiny", *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_a_diverging_run_raises_and_leaves_no_checkpoint(mini, tmp_path, capsys):
    with pytest.raises(TrainingDiverged, match=r"loss nan at epoch 0, batch \d+ \(step \d+, lr "):
        train(mini, TrainingSection(**TINY, epochs=2, lr=1e10), run_dir=tmp_path / "runs", **FAST)
    assert (tmp_path / "runs" / "domino" / "version_0" / "hparams.yaml").is_file()  # the run's record stays
    assert _checkpoints(tmp_path) == []
    # The command says so in one line, and exits 2.
    argv = ["--data", str(mini), "--lr", "1e10", "--model", "tiny", "--batch-size", "64", "--no-wandb",
            "--no-progress", "--run-dir", str(tmp_path / "cli")]
    assert run_cli(train_cli.main, argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "training diverged" in err, err
    assert _checkpoints(tmp_path) == []


class _CorruptQHead(L.Callback):
    """Flips the (unused: q_weight 0) Q head to NaN once epoch 0 is checkpointed: the loss stays
    finite, only the weights show it."""

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1:
            with torch.no_grad():
                module.model.q_head.weight[0, 0] = float("nan")


def test_non_finite_weights_behind_a_finite_loss_void_the_earlier_checkpoints(mini, tmp_path):
    seen = []

    class Saved(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen.append(len(_checkpoints(tmp_path)))

    with pytest.raises(TrainingDiverged, match=r"weight tensor\(s\) non-finite at epoch 1 \(model\.q_head\.weight"):
        train(mini, TrainingSection(**TINY, epochs=3), run_dir=tmp_path / "runs",
              trainer_kwargs={"callbacks": [Saved(), _CorruptQHead()]}, **FAST)
    assert seen == [0, 2]  # last.ckpt and best.ckpt existed after epoch 0 ...
    assert _checkpoints(tmp_path) == []  # ... and are gone: the run is void


def _copy_dataset(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["short-array", "string-count", "no-train-split", "missing-val-array"])
def test_a_bad_dataset_leaves_no_run_folder(mini, tmp_path, damage):
    data = _copy_dataset(mini, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    if damage == "short-array":
        np.save(data / "train" / "targets.npy", np.load(data / "train" / "targets.npy")[:-1])
    elif damage == "string-count":
        manifest["splits"]["train"]["count"] = "360"
    elif damage == "no-train-split":
        del manifest["splits"]["train"]
    else:
        (data / "val" / "legal.npy").unlink()
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises((ForgeError, OSError)):
        train(data, TrainingSection(**TINY, epochs=1), run_dir=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()
    assert run_cli(train_cli.main, ["--data", str(data), "--no-wandb", "--run-dir", str(tmp_path / "runs")]) == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, Terminated])
def test_an_interruption_reaches_the_caller_with_sigint_restored(mini, tmp_path, interrupt):
    """Lightning turns Ctrl+C into sys.exit(1) and leaves SIGINT ignored for the rest of the
    process; train() gives the caller the interruption itself (so run_cli exits 130 or 143)."""

    class Interrupt(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == 1:
                raise interrupt()

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(interrupt):
        train(mini, TrainingSection(**TINY, epochs=1), run_dir=tmp_path / "runs",
              trainer_kwargs={"callbacks": [Interrupt()]}, **FAST)
    assert signal.getsignal(signal.SIGINT) is before



def test_ddp_from_an_interactive_process_says_what_to_do_instead(mini, tmp_path, monkeypatch):
    """A notebook kernel cannot re-run itself per device: a clear error, not Lightning's own
    naming a strategy the user never asked for (nor a second kernel started from its argv)."""
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    with pytest.raises(InputError, match=r"strategy 'ddp' .* python -m forge\.cli\.train .* 'ddp_notebook'"):
        train(mini, TrainingSection(**TINY, epochs=1),
              hardware=HardwareSection(accelerator="cpu", devices=2, strategy="ddp"), run_dir=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()
