"""The flywheel as a learner, on the tiny preset with real kernels: each iteration trains a budget of
samples, on decision states only, over a window of this and the previous iteration's deals, and the
model follows one LR schedule across iterations, which a Ctrl+C in the middle does not disturb."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.inprocess import run_in_process
from helpers.loop import edit_state, flywheel, result, start_loop_until, state, training_steps
from helpers.numerics import assert_same_metrics

from forge.ml.schedule import lr_factor
from forge.ml.store import load_split
from forge.ml.tokenize import q_spread

BUDGET, HORIZON, BATCH = 1500, 6000, 64

# one xdist worker runs them all: the learner's two iterations are run once, not once per worker
pytestmark = [pytest.mark.loop, pytest.mark.xdist_group("flywheel-learning")]

LEARNING = {"train_states": "decisions", "train_samples": BUDGET, "lr_horizon": HORIZON, "replay_iters": 1}


@pytest.fixture(scope="module")
def learner(tmp_path_factory) -> dict[str, Path]:
    ws = tmp_path_factory.mktemp("learner") / "ws"
    ws.mkdir()
    assert flywheel(ws, "init", "--preset", "tiny", "--wandb-group", "ci", "--wandb-mode", "disabled").returncode == 0
    edit_state(ws, lambda d: d["config"].update(LEARNING))
    # the loop in this process, its stages in-process (tests/helpers/inprocess.py): what counts is the schedule
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    after_one = ws.parent / "after-one"
    shutil.copytree(ws, after_one, symlinks=True)
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    return {"ws": ws, "after_one": after_one}


def lrs(ws: Path, iteration: int) -> list[tuple[int, float]]:
    """(step, LR) of every logged step of an iteration's training run."""
    rows = csv.DictReader((ws / result(ws, iteration, "train")["metrics_csv"]).open())
    return [(int(r["step"]), float(r["lr-AdamW/pg1"])) for r in rows if r.get("lr-AdamW/pg1")]


def test_each_iteration_trains_its_budget_and_goes_on_with_one_schedule(learner) -> None:
    ws = learner["ws"]
    t1, t2 = result(ws, 1, "train"), result(ws, 2, "train")
    for t in (t1, t2):
        assert BUDGET <= t["samples"] < BUDGET + BATCH and t["kept_epoch"] is None
        assert "training budget (1,500 samples)" in t["kept_reason"]
    assert (t1["continuing"], t2["continuing"]) == (False, True)
    assert t2["samples_seen"] == t1["samples_seen"] + t2["samples"]
    # one schedule: iteration 2 starts where iteration 1 stopped, at the same peak (scratch_lr: from scratch)
    peak = state(ws)["config"]["scratch_lr"]
    assert t1["lr"] == t2["lr"] == peak
    # no second warm-up: every LR iteration 2 logs lies on the schedule between the samples seen at its
    # start and at its end, below where iteration 1 stopped (the cosine, after a warm-up of 120 samples)
    def at(samples: int) -> float:
        return peak * lr_factor(samples / HORIZON, 0.02, 0.05)

    first, second = [lr for _, lr in lrs(ws, 1)], [lr for _, lr in lrs(ws, 2)]
    assert len(first) >= 2 and len(second) >= 2
    assert all(at(t2["samples_seen"]) <= lr <= at(t1["samples_seen"]) for lr in second), (second, t1, t2)
    assert second == sorted(second, reverse=True) and second[0] <= first[-1]
    # training samples decisions only; the golden sets keep every state and are the same as iteration 1's
    train = load_split(ws / "data" / "tokens" / "dataset", "train")
    assert (q_spread(train["qvals"]) > 0).all()
    assert (q_spread(load_split(ws / "data" / "tokens" / "dataset", "val")["qvals"]) == 0).any()
    tok1, tok2 = result(ws, 1, "tokenize"), result(ws, 2, "tokenize")
    assert tok1["outputs"]["splits"]["val"] == tok2["outputs"]["splits"]["val"]
    assert tok2["train_samples"] > tok1["train_samples"]  # the window: iteration 1's deals too


def test_ctrl_c_in_a_continuing_iteration_resumes_the_same_schedule(learner, tmp_path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(learner["after_one"], ws, symlinks=True)
    edit_state(ws, lambda d: d["config"].update(train_samples=10**8))  # cannot end before the signal lands
    proc = start_loop_until(ws, training_steps(ws), "a training step", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "resumes iteration 2 at train" in state(ws)["next_action"]
    edit_state(ws, lambda d: d["config"].update(train_samples=BUDGET))
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    # the interrupted run left nothing in the schedule: the resumed iteration is the uninterrupted one
    assert result(ws, 2, "train")["samples_seen"] == result(learner["ws"], 2, "train")["samples_seen"]
    np.testing.assert_array_equal(lrs(ws, 2), lrs(learner["ws"], 2))
    assert_same_metrics(state(ws)["history"][-1]["val"], state(learner["ws"])["history"][-1]["val"])
