"""Real Lightning training on a small reduced-game dataset: it learns, checkpoints round-trip,
resume checks the architecture, the CLIs fail in one line, and W&B never stops a run."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.numerics import near_ties
from pydantic import ValidationError

from forge.cli import eval as eval_cli
from forge.cli import train as train_cli
from forge.commandline import run_cli
from forge.ml.checkpoints import CheckpointError, read_checkpoint
from forge.ml.data import ArrayBatches, load_tensors, spread_indices, subset
from forge.ml.evaluate import evaluate, evaluate_model
from forge.ml.loading import load_module
from forge.ml.metrics import MAX_GAP, mover_q, team_sign
from forge.ml.model import preset
from forge.ml.settings import HardwareSection, TrainingSection
from forge.ml.store import build_dataset
from forge.ml.training import train
from forge.oracle.shard import write_shard
from forge.oracle.solve import solve
from forge.validation import first_problem

HAND = 4  # reduced game: ~5K states per deal, solved in milliseconds
DECL = 6  # one declaration, so a few hundred deals teach a tiny model something real
# fp32: logged and evaluated metrics agree
FAST = dict(wandb=False, progress=False, hardware=HardwareSection(precision="32"))
SOFT = {"temperature": 1.0, "soft_weight": 0.8}


# one xdist worker runs them all: the module-scoped data and trained model are made once, not once per worker
pytestmark = pytest.mark.xdist_group("training")

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread (the solver is on one numba thread in every test process: tests/conftest.py): on a
    2-core machine shared with other jobs, two spinning OpenMP threads can make these runs ten times slower;
    one thread costs ~30% when the machine is idle."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _solved(out: Path, train: int, val: int, test: int) -> dict[str, list[Path]]:
    """Shards of the first ``train`` training deals, ``val`` validation and ``test`` test deals."""
    return {
        "train": [write_shard(solve(s, DECL, HAND), out) for s in range(train)],
        "val": [write_shard(solve(s, DECL, HAND), out) for s in range(1000, 1000 + val)],
        "test": [write_shard(solve(s, DECL, HAND), out) for s in range(2000, 2000 + test)],
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, list[Path]]:
    return _solved(tmp_path_factory.mktemp("shards"), 300, 40, 4)


@pytest.fixture(scope="module")
def data(shards, tmp_path_factory) -> Path:
    """~30K training samples from 300 deals; validation on 40 held-out deals."""
    out = tmp_path_factory.mktemp("ds") / "data"
    build_dataset(shards, out, 100, 0, progress=False)
    return out


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """A few hundred samples, for runs whose learning does not matter (the quick tier solves only these deals)."""
    root = tmp_path_factory.mktemp("mini")
    build_dataset(_solved(root / "shards", 6, 2, 2), root / "data", 60, 0, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train(data, TrainingSection(epochs=6, model="tiny", batch_size=128, lr=3e-3, train_seed=0), run_dir=runs,
                 module_kwargs=SOFT, trainer_kwargs={"log_every_n_steps": 1}, **FAST)


def _epoch_rows(path: Path, key: str) -> list[float]:
    rows = list(csv.DictReader(path.open()))
    return [float(r[key]) for r in rows if r.get(key)]


def _random_policy(data: Path) -> tuple[float, float]:
    """Expected Q-gap and zero-regret rate of a uniformly random legal move on the val split."""
    v = load_tensors(data, "val")
    legal = v["legal"].bool()
    q = mover_q(v["qvals"], v["teams"], v["legal"]).double()
    gap = q.max(-1, keepdim=True).values - q
    n_legal = legal.sum(-1)
    return (float(((gap * legal).sum(-1) / n_legal).mean()),
            float((((gap == 0) & legal).sum(-1) / n_legal).mean()))


def _policy_loss_floor(data: Path, soft_weight: float, temperature: float) -> float:
    """Mean entropy of the blended policy targets on the train split (the loss at a perfect fit)."""
    v = load_tensors(data, "train")
    q = mover_q(v["qvals"], v["teams"], v["legal"]).double().masked_fill(v["legal"] == 0, float("-inf"))
    target = soft_weight * torch.softmax(q / temperature, -1)
    target[torch.arange(len(q)), v["targets"].long()] += 1 - soft_weight
    return float(-(target * target.clamp_min(1e-30).log()).sum(-1).mean())


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_tiny_model_learns_the_oracle(trained, data):
    # The policy loss cannot go below the entropy of its (soft, tie-sharing) targets: compare
    # what is above that floor at the start and at the end.
    steps = _epoch_rows(trained.metrics_csv, "train/policy_loss")
    assert len(steps) > 1000
    floor = _policy_loss_floor(data, **SOFT)
    first, last = sum(steps[:10]) / 10 - floor, sum(steps[-100:]) / 100 - floor
    assert 0 < last < 0.75 * first, (floor, first, last)
    val_losses = _epoch_rows(trained.metrics_csv, "val/loss")
    assert val_losses[-1] < val_losses[0], val_losses
    random_gap, random_zero_regret = _random_policy(data)
    assert random_gap > 0.9  # the task leaves room to learn
    m = trained.metrics
    # Random play gives ~1.1 points here, and a model that learned only move priors ~0.85.
    assert m["val/q_gap"] < 0.7 * random_gap, (m["val/q_gap"], random_gap)
    assert m["val/zero_regret"] > random_zero_regret + 0.02, (m["val/zero_regret"], random_zero_regret)
    assert trained.best_q_gap <= m["val/q_gap"]


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_checkpoints_round_trip(trained, data):
    assert trained.last_checkpoint.is_file() and trained.best_checkpoint.is_file()
    assert trained.best_checkpoint.parent == trained.run_dir / "checkpoints"
    assert trained.metrics_csv == trained.run_dir / "metrics.csv"
    assert trained.run_dir.parent.name == "domino" and trained.run_dir.name.startswith("version_")
    module = load_module(trained.best_checkpoint)
    assert module.config == preset("tiny")
    saved = read_checkpoint(trained.best_checkpoint)["state_dict"]
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    # Evaluating the checkpoint reproduces what validation logged when it was saved.
    # (exactly, up to the logged float, except where a near-tie may pick another move: see near_ties)
    val = load_tensors(data, "val")
    n = len(val["targets"])
    metrics = evaluate(trained.best_checkpoint, data, "val", batch_size=1000)
    ties = near_ties(module.model, val)
    assert metrics["q_gap"] == pytest.approx(trained.best_q_gap, abs=1e-6 + ties * MAX_GAP / n)
    last = evaluate(trained.last_checkpoint, data, "val")
    ties = near_ties(load_module(trained.last_checkpoint).model, val)
    assert last["q_gap"] == pytest.approx(trained.metrics["val/q_gap"], abs=1e-6 + ties * MAX_GAP / n)
    assert last["accuracy"] == pytest.approx(trained.metrics["val/accuracy"], abs=1e-6 + ties / n)
    assert last["n"] == len(load_tensors(data, "val")["targets"])


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_fast_evaluation_gives_the_module_forwards_metrics(trained, data):
    """Evaluation runs the InferenceNet; on real data every metric must equal the module's own."""
    model = load_module(trained.best_checkpoint).model
    tensors = load_tensors(data, "val")
    fast = evaluate_model(model, tensors, 300, with_q=True)
    slow = evaluate_model(model, tensors, 300, with_q=True, fast=False)
    assert fast.keys() == slow.keys() and {"q_mae", "value_mae", "game_value_mae", "tie_rate"} <= fast.keys()
    # with the Q head scored, the V read off it (its best legal Q) is scored beside the value head's
    game_err, head_err = 0.0, 0.0
    with torch.no_grad():
        for b in ArrayBatches(tensors, 1000):
            out = model.eval()(b["tokens"], b["masks"], b["players"])
            truth = b["values"].double() * team_sign(b["teams"])
            best_q = out.q.double().masked_fill(b["legal"] == 0, float("-inf")).max(-1).values * 42
            game_err += float((best_q - truth).abs().sum())
            head_err += float((out.value.double() * 42 - truth).abs().sum())
    n = len(tensors["targets"])
    assert fast["game_value_mae"] == pytest.approx(game_err / n, rel=1e-4)
    assert fast["value_mae"] == pytest.approx(head_err / n, rel=1e-4)
    argmax_based = ("accuracy", "zero_regret", "q_gap", "blunder_rate", "p99_gap")
    for key in fast.keys() - set(argmax_based):
        assert fast[key] == pytest.approx(slow[key], abs=1e-5), key
    ties, n = near_ties(model, tensors), len(tensors["targets"])
    if ties == 0:  # the usual case: every move is the same
        for key in argmax_based:
            assert fast[key] == slow[key], key
    else:  # rows within fp32 rounding of a tie may pick another move on another CPU
        for key in ("accuracy", "zero_regret", "blunder_rate"):
            assert fast[key] == pytest.approx(slow[key], abs=ties / n), key
        assert fast["q_gap"] == pytest.approx(slow["q_gap"], abs=ties * MAX_GAP / n)


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_a_model_can_play_by_its_q_head(data, tmp_path):
    """The reference trainer's best recipe: Q-value MSE on legal moves (plus value 0.5), no policy
    loss, moves chosen by the highest predicted Q; validation, evaluation and play-outs all play
    by that head."""
    q_only = {"policy_weight": 0.0, "move_head": "q"}
    # 4 epochs at 5e-3 reach val Q-gap ~0.61 (6 at 3e-3: 0.56; 3 at 6e-3: 0.68) against the bound's 0.77
    res = train(data, TrainingSection(epochs=4, model="tiny", batch_size=128, lr=5e-3, q_weight=1.0),
                run_dir=tmp_path, module_kwargs=q_only, **FAST)
    module = load_module(res.best_checkpoint)
    assert module.move_head == "q" and module.trained_heads == ("value", "q")
    assert "train/policy_loss" not in res.metrics and "val/q_mae" in res.metrics
    random_gap, _ = _random_policy(data)
    assert res.metrics["val/q_gap"] < 0.7 * random_gap, (res.metrics["val/q_gap"], random_gap)
    val = load_tensors(data, "val")
    n, ties = len(val["targets"]), near_ties(module.model, val, "q")
    metrics = evaluate(res.best_checkpoint, data, "val", batch_size=1000)
    assert metrics["q_gap"] == pytest.approx(res.best_q_gap, abs=1e-6 + ties * MAX_GAP / n)
    # its untrained policy logits play far worse: evaluation did not read them
    by_logits = evaluate_model(module.model, val, 1000, move_head="policy")
    assert by_logits["q_gap"] > metrics["q_gap"] + 0.1, (by_logits["q_gap"], metrics["q_gap"])


@pytest.mark.parametrize("kwargs, message", [
    ({"move_head": "q"}, "move_head 'q' plays by a head this run does not train"),
    ({"policy_weight": 0.0}, "move_head 'policy' plays by a head this run does not train"),
    ({"move_head": "value"}, "move_head must be one of policy, q"),
])
def test_a_recipe_that_would_play_by_an_untrained_head_is_refused(mini, tmp_path, kwargs, message):
    from forge.errors import InputError

    with pytest.raises(InputError, match=message):
        train(mini, TrainingSection(epochs=1, model="tiny"), run_dir=tmp_path, module_kwargs=kwargs, **FAST)
    assert not (tmp_path / "domino").exists()


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_resume_with_another_architecture_is_a_clear_error(trained, mini, tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"'tiny' .* but this run builds a 'small'"):
        train(mini, TrainingSection(model="small"), resume=trained.best_checkpoint, run_dir=tmp_path, **FAST)
    argv = ["--data", str(mini), "--resume", str(trained.best_checkpoint), "--model", "small",
            "--no-wandb", "--run-dir", str(tmp_path)]
    assert run_cli(train_cli.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'tiny'" in err and "Traceback" not in err


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_resume_starts_from_the_checkpoint_weights(trained, mini, tmp_path):
    saved = read_checkpoint(trained.last_checkpoint)["state_dict"]
    seen = {}

    class Probe(L.Callback):
        def on_fit_start(self, trainer, module):
            seen["same"] = all(torch.equal(v, saved[k]) for k, v in module.state_dict().items())

    result = train(mini, TrainingSection(epochs=1, batch_size=64), resume=trained.last_checkpoint, run_dir=tmp_path,
                   trainer_kwargs={"callbacks": [Probe()]}, **FAST)  # model=None: the checkpoint's
    assert seen == {"same": True}
    assert load_module(result.last_checkpoint).config == preset("tiny")


def test_train_cli_writes_csv_logs_and_checkpoints(mini, tmp_path, capsys):
    argv = ["--data", str(mini), "--epochs", "2", "--model", "tiny", "--batch-size", "64",
            "--no-wandb", "--no-progress", "--run-dir", str(tmp_path / "runs")]
    assert run_cli(train_cli.main, argv) == 0
    run = tmp_path / "runs" / "domino" / "version_0"
    assert {"last.ckpt", "best.ckpt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/q_gap", "val/accuracy", "val/blunder_rate", "train/loss", "epoch"} <= set(header)
    assert str(run / "checkpoints" / "best.ckpt") in capsys.readouterr().out
    # A second run gets its own version; this one with the augmentation and the Q loss.
    assert run_cli(train_cli.main, [*argv, "--shuffle-hands", "--q-weight", "0.5"]) == 0
    second = tmp_path / "runs" / "domino" / "version_1"
    assert "train/q_loss" in (second / "metrics.csv").read_text().splitlines()[0]
    module = load_module(second / "checkpoints" / "last.ckpt")
    assert module.hparams.shuffle_hands and module.hparams.q_weight == 0.5
    assert "q_mae" in evaluate(second / "checkpoints" / "last.ckpt", mini, "val")


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_eval_cli_writes_metrics_and_playout(trained, data, tmp_path, capsys):
    out = tmp_path / "m.json"
    argv = ["--checkpoint", str(trained.best_checkpoint), "--data", str(data), "--split", "test",
            "--out", str(out), "--playout", "2"]
    assert run_cli(eval_cli.main, argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics == json.loads(capsys.readouterr().out)
    assert {"accuracy", "zero_regret", "q_gap", "blunder_rate", "p99_gap", "value_mae", "tie_rate",
            "q_gap/sixes", "playout_points_lost"} <= set(metrics)
    assert "q_mae" not in metrics  # trained without the Q loss
    assert metrics["playout_deals"] == 2 and metrics["playout_points_lost"] >= 0


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_user_mistakes_are_one_line_errors(trained, mini, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        evaluate(bad, mini, "val")
    in_process = [
        (eval_cli.main, ["--checkpoint", str(trained.best_checkpoint), "--data", str(mini), "--split", "nope"],
         "no split 'nope'"),
        (train_cli.main, ["--data", str(mini), "--resume", str(bad), "--no-wandb"], "not a readable checkpoint"),
        (train_cli.main, ["--data", str(mini), "--epochs", "0"], "must be at least 1"),
    ]
    for main, args, message in in_process:
        assert run_cli(main, args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    # As real commands: exit status 2, one line on stderr, no traceback.
    for module, args, message in [
        ("forge.cli.train", ["--data", str(tmp_path / "nowhere"), "--no-wandb"], "no such folder"),
        ("forge.cli.eval", ["--checkpoint", str(bad), "--data", str(mini)], "not a readable checkpoint"),
    ]:
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_wandb_runs_offline_under_the_run_dir(mini, tmp_path):
    result = train(mini, TrainingSection(epochs=1, model="tiny", batch_size=64), run_dir=tmp_path, progress=False,
                   wandb=True, wandb_group="test")
    assert result.wandb_dir is not None and result.wandb_dir.parent == result.run_dir
    runs = [p for p in result.wandb_dir.iterdir() if p.name.startswith("offline-run-")]
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_unreachable_wandb_never_fails_training(mini, tmp_path, monkeypatch):
    import wandb

    def refuse(*args, **kwargs):
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(wandb, "init", refuse)
    with pytest.warns(UserWarning, match="W&B disabled"):
        result = train(mini, TrainingSection(epochs=1, model="tiny", batch_size=64), run_dir=tmp_path, progress=False,
                       wandb=True, wandb_mode="online")
    assert result.wandb_dir is None and result.last_checkpoint.is_file()


def test_batches_cover_the_split_once_per_epoch_without_copies():
    n = 1050
    tensors = {"tokens": torch.zeros(n, 32, 12, dtype=torch.int8), "id": torch.arange(n)}
    shuffled = ArrayBatches(tensors, 100, shuffle=True, seed=1)
    assert len(shuffled) == 11
    first, second = (torch.cat([b["id"] for b in shuffled]) for _ in range(2))
    assert torch.equal(first.sort().values, torch.arange(n)) and torch.equal(second.sort().values, torch.arange(n))
    assert not torch.equal(first, second) and not torch.equal(first, torch.arange(n))
    again = torch.cat([b["id"] for b in ArrayBatches(tensors, 100, shuffle=True, seed=1)])
    assert torch.equal(again, first)  # runs repeat
    sequential = list(ArrayBatches(tensors, 100))
    assert torch.equal(torch.cat([b["id"] for b in sequential]), torch.arange(n))
    assert sequential[1]["tokens"].data_ptr() == tensors["tokens"][100:].data_ptr()  # a view, not a copy
    dropped = ArrayBatches(tensors, 100, drop_last=True)
    assert len(dropped) == 10 and all(len(b["id"]) == 100 for b in dropped)


def test_ranks_split_each_pass_evenly_and_together_cover_it():
    n, world = 1051, 3  # not a multiple of the world: the last shares are padded by wrapping
    tensors = {"id": torch.arange(n)}
    for epoch_pass in range(2):
        shares = [ArrayBatches(tensors, 64, shuffle=True, seed=5, rank=r, world_size=world) for r in range(world)]
        for s in shares:
            s.epoch = epoch_pass
        ids = [torch.cat([b["id"] for b in s]) for s in shares]
        assert {len(s) for s in shares} == {6} and {len(i) for i in ids} == {351}  # equal steps and samples
        everything = torch.cat(ids)
        assert torch.equal(everything.unique(), torch.arange(n))  # every sample, and ...
        assert len(everything) - n == 2  # ... only the two padding ones twice
    # One process is the plain shuffled order.
    single = torch.cat([b["id"] for b in ArrayBatches(tensors, 64, shuffle=True, seed=5)])
    gen = torch.Generator().manual_seed(5 * 1_000_003)
    assert torch.equal(single, torch.randperm(n, generator=gen))
    with pytest.raises(ValueError, match="outside a world"):
        ArrayBatches(tensors, 64, rank=2, world_size=2)


def test_validation_subset_is_spread_over_every_shard():
    n_shards, per_shard = 30, 1000
    for k in (30, 100, 4567):
        idx = spread_indices(n_shards * per_shard, k)
        assert len(idx) == k and bool((idx[1:] > idx[:-1]).all())  # distinct, in order
        per = torch.bincount(idx // per_shard, minlength=n_shards)
        assert int(per.min()) >= k // n_shards and int(per.max()) <= -(-k // n_shards)  # every shard, evenly
    assert torch.equal(spread_indices(50, 80), torch.arange(50))


def test_training_validates_on_the_fixed_subset(mini, tmp_path):
    result = train(mini, TrainingSection(epochs=1, model="tiny", batch_size=64, val_samples=50), run_dir=tmp_path,
                   **FAST)
    val = load_tensors(mini, "val")
    chosen = subset(val, spread_indices(len(val["targets"]), 50))
    model = load_module(result.last_checkpoint).model
    same = evaluate_model(model, chosen, 64, fast=False)  # the module's forward, as validation ran it
    assert same["n"] == 50
    for key in ("q_gap", "accuracy", "value_mae"):
        assert result.metrics[f"val/{key}"] == pytest.approx(same[key], rel=2**-23, abs=1e-12), key
    whole = evaluate_model(model, val, 64, fast=False)
    assert whole["n"] == len(val["targets"]) > 50


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def test_fp32_training_is_bit_reproducible(mini, tmp_path):
    runs = [train(mini, TrainingSection(epochs=2, model="small", batch_size=64, train_seed=seed), run_dir=tmp_path,
                  module_kwargs={"shuffle_hands": True}, **FAST) for seed in (7, 7, 8)]  # FAST: precision 32
    first, again, other = (_weights(r.last_checkpoint) for r in runs)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)  # the seed does matter


def test_bf16_mixed_trains_and_evaluates_on_cpu(mini, tmp_path):
    result = train(mini, TrainingSection(epochs=4, model="tiny", batch_size=32, lr=3e-3), run_dir=tmp_path,
                   module_kwargs=SOFT, trainer_kwargs={"log_every_n_steps": 1},
                   **{**FAST, "hardware": HardwareSection(precision="bf16-mixed")})
    saved = _weights(result.last_checkpoint)
    assert all(v.dtype == torch.float32 for v in saved.values() if v.is_floating_point())  # fp32 master weights
    value_loss = _epoch_rows(result.metrics_csv, "train/value_loss")
    assert len(value_loss) == 48  # it learns: on these few deals, mostly the value head (fp32 does alike)
    assert sum(value_loss[-12:]) / 12 < 0.5 * sum(value_loss[:6]) / 6, value_loss
    # Validation ran the module under bf16 autocast: the same forward on the same batches repeats it.
    model = load_module(result.last_checkpoint).model
    val = load_tensors(mini, "val")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = evaluate_model(model, val, 32, fast=False)
    for key in ("q_gap", "accuracy", "value_mae"):
        assert result.metrics[f"val/{key}"] == pytest.approx(again[key], rel=2**-23, abs=1e-12), key
    # The fp32 evaluation (InferenceNet) takes the bf16-trained weights as they are.
    metrics = evaluate(result.last_checkpoint, mini, "val")
    assert metrics["n"] == again["n"] == len(val["targets"])
    assert all(math.isfinite(v) for v in metrics.values())


def _lr_rows(metrics_csv: Path) -> list[float]:
    return [float(r["lr-AdamW/pg1"]) for r in csv.DictReader(metrics_csv.open()) if r.get("lr-AdamW/pg1")]


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_a_sample_budget_stops_mid_epoch_scores_the_last_weights_and_keeps_them(data, tmp_path):
    from forge.ml.schedule import lr_factor

    budget, batch = 1000, 64
    res = train(data, TrainingSection(train_samples=budget, model="tiny", batch_size=batch, lr=1e-3),
                run_dir=tmp_path, trainer_kwargs={"log_every_n_steps": 1}, **FAST)
    assert budget <= res.samples < budget + batch and res.samples_seen == res.samples
    assert res.best_checkpoint is None and res.last_checkpoint.is_file()
    assert read_checkpoint(res.last_checkpoint)["samples_seen"] == res.samples
    # validation ran once, on the weights kept, and evaluating them gives its figures
    assert "val/q_gap" in res.metrics
    val = load_tensors(data, "val")
    ties, n = near_ties(load_module(res.last_checkpoint).model, val), len(val["targets"])
    assert evaluate(res.last_checkpoint, data, "val")["q_gap"] == pytest.approx(
        res.metrics["val/q_gap"], abs=1e-6 + ties * MAX_GAP / n)
    # the schedule was laid over the budget: warm-up, then down to the floor at its end
    lrs = _lr_rows(res.metrics_csv)
    assert len(lrs) == -(-budget // batch)
    assert max(lrs) == pytest.approx(1e-3, rel=0.02) and lrs[-1] < 0.1e-3
    assert lrs[-1] == pytest.approx(1e-3 * lr_factor((res.samples - batch) / budget, 0.02, 0.05), rel=1e-3)


@pytest.mark.slow  # trains on the 300-deal fixture: a minute or more on 2 cores
def test_continuing_runs_follow_one_schedule_and_keep_the_optimiser(data, tmp_path):
    horizon, batch = 3000, 64
    section = TrainingSection(train_samples=640, model="tiny", batch_size=batch, lr=1e-3, lr_horizon=horizon)
    kw = dict(trainer_kwargs={"log_every_n_steps": 1}, **FAST)
    first = train(data, section, run_dir=tmp_path / "a", **kw)
    second = train(data, section, run_dir=tmp_path / "b", resume=first.last_checkpoint, continuing=True, **kw)
    assert first.samples_seen == 640 and second.samples == 640 and second.samples_seen == 1280
    lrs1, lrs2 = _lr_rows(first.metrics_csv), _lr_rows(second.metrics_csv)
    # no second warm-up: the second run starts where the first stopped, one step on
    assert lrs1[0] < lrs1[-1] and lrs2[0] == pytest.approx(lrs1[-1] + (lrs1[-1] - lrs1[-2]), rel=0.05)
    together = lrs1 + lrs2
    unbroken = train(data, section.model_copy(update={"train_samples": 1280}), run_dir=tmp_path / "c", **kw)
    assert together == pytest.approx(_lr_rows(unbroken.metrics_csv), rel=1e-6)
    # Adam's step count goes on across runs
    steps = [read_checkpoint(r.last_checkpoint)["optimizer_states"][0]["state"][0]["step"]
             for r in (first, second)]
    assert float(steps[1]) == 2 * float(steps[0]) == 20
    # a fine-tune (not continuing) starts a fresh warm-up
    fresh = train(data, section, run_dir=tmp_path / "d", resume=first.last_checkpoint, **kw)
    assert fresh.samples_seen == 640 and _lr_rows(fresh.metrics_csv)[0] == pytest.approx(lrs1[0])


def test_training_on_several_datasets_reads_each_train_split(mini, tmp_path):
    other = tmp_path / "other"  # other deals, another sample count: a sum that only both splits give
    solved = _solved(tmp_path / "shards", 12, 0, 0)
    build_dataset({"train": solved["train"][6:]}, other, 40, 0, progress=False)
    both = train(mini, TrainingSection(epochs=1, model="tiny", batch_size=256), train_dirs=[mini, other],
                 run_dir=tmp_path, **FAST)
    sizes = [len(load_tensors(d, "train")["targets"]) for d in (mini, other)]
    assert sizes[0] != sizes[1] and both.samples == sum(sizes)


def test_a_growing_window_takes_in_datasets_made_while_it_trains(mini, tmp_path):
    """``train_dirs`` as a function: each epoch trains on the window as it stands at its start."""
    other = tmp_path / "other"
    solved = _solved(tmp_path / "shards", 12, 0, 0)
    build_dataset({"train": solved["train"][6:]}, other, 40, 0, progress=False)
    window = [mini]

    class MadeAfterTheFirstEpoch(L.Callback):  # a deal that lands while the run trains
        def on_train_epoch_end(self, trainer, pl_module):
            if other not in window:
                window.append(other)

    res = train(mini, TrainingSection(epochs=3, model="tiny", batch_size=256), train_dirs=lambda: list(window),
                run_dir=tmp_path / "run", trainer_kwargs={"callbacks": [MadeAfterTheFirstEpoch()]}, **FAST)
    first, second = (len(load_tensors(d, "train")["targets"]) for d in (mini, other))
    assert first != second and res.samples == first + 2 * (first + second)  # epoch 1 alone, then both


def test_a_growing_window_must_start_with_a_dataset(mini, tmp_path):
    from forge.errors import InputError

    with pytest.raises(InputError, match="needs at least one dataset"):
        train(mini, TrainingSection(epochs=1, model="tiny"), train_dirs=lambda: [], run_dir=tmp_path, **FAST)
    assert not (tmp_path / "domino").exists()


@pytest.mark.parametrize("budget, message", [
    ({"epochs": None}, "epochs must be an integer"),
    ({"train_samples": 10, "train_seconds": 5.0}, "train_samples and train_seconds are both set"),
    ({"train_seconds": float("nan")}, "train_seconds must be a finite number"),
])
def test_bad_budgets_are_refused_where_they_are_declared(budget, message):
    with pytest.raises(ValidationError) as err:
        TrainingSection(**budget)
    assert message in first_problem(err.value)


def test_continuing_without_a_checkpoint_is_refused_before_any_run_folder(mini, tmp_path):
    from forge.errors import InputError

    with pytest.raises(InputError, match="continuing goes on from a checkpoint"):
        train(mini, TrainingSection(model="tiny", epochs=1), run_dir=tmp_path, continuing=True, **FAST)
    assert not (tmp_path / "domino").exists()


def test_a_budget_run_validates_once_per_check_and_its_bar_ends_full(mini, tmp_path, capsys):
    """A budget that ends mid-epoch: Lightning scores the weights at that epoch's end; the run must not
    score them a second time (one point logged as two epochs), and its bar counts the budget, full at the end."""
    res = train(mini, TrainingSection(train_samples=1000, model="tiny", batch_size=64, lr=1e-3), run_dir=tmp_path,
                **{**FAST, "progress": True})
    rows = [r for r in csv.DictReader(res.metrics_csv.open()) if r.get("val/q_gap")]
    epochs = {int(r["epoch"]) for r in csv.DictReader(res.metrics_csv.open()) if r.get("train/loss")}
    assert len(rows) == len({r["step"] for r in rows}) == len(epochs) >= 2  # one per epoch trained in, the last too
    shown = capsys.readouterr()
    bar = (shown.out + shown.err).replace("\r", "\n")
    assert "training done (budget 1,000 samples reached): 100%" in bar and "Epoch " not in bar
