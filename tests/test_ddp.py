"""Data-parallel training on CPU through Lightning: two processes (gloo on 127.0.0.1) train on
their own shares of the train split, rank 0 alone writes one run and its checkpoints, and the
checkpoint evaluates on one device to what its own validation logged."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.numerics import near_ties

from forge.ml.checkpoints import read_checkpoint
from forge.ml.data import load_tensors
from forge.ml.evaluate import evaluate
from forge.ml.loading import load_module
from forge.ml.metrics import MAX_GAP
from forge.ml.store import build_dataset
from forge.oracle.shard import write_shard
from forge.oracle.solve import solve

TRAIN_DEALS, VAL_DEALS, SAMPLES, BATCH, EPOCHS = 8, 3, 60, 32, 2


pytestmark = pytest.mark.cluster

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    splits = {"train": [write_shard(solve(s, 6, 4), out / "shards") for s in range(TRAIN_DEALS)],
              "val": [write_shard(solve(s, 6, 4), out / "shards") for s in range(1000, 1000 + VAL_DEALS)]}
    build_dataset(splits, out / "data", SAMPLES, 0, progress=False)
    return out / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_on_two_cpu_processes_writes_one_run_that_evaluates_as_logged(data, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    cmd = [sys.executable, "-m", "forge.cli.train", "--data", str(data), "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", "--model", "tiny", "--epochs", str(EPOCHS),
           "--batch-size", str(BATCH), "--lr", "3e-3", "--precision", "32", "--no-wandb", "--no-progress",
           "--run-dir", str(runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr and "Starting with 2 processes" in proc.stderr

    # One run, reported once (by rank 0), with one set of checkpoints.
    assert [p.name for p in (runs / "domino").iterdir()] == ["version_0"]
    run = runs / "domino" / "version_0"
    assert proc.stdout.count("run: ") == 1 and str(run) in proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["best.ckpt", "last.ckpt"]

    # Each rank took half the data: half the optimiser steps one process would take.
    per_rank = -(-TRAIN_DEALS * SAMPLES // 2)
    steps_per_epoch = -(-per_rank // BATCH)
    last = run / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == EPOCHS * steps_per_epoch

    # On one device the checkpoint scores what its own (every-rank, full-split) validation logged.
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/q_gap")]
    assert len(rows) == EPOCHS
    logged = {k[len("val/"):]: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}
    metrics = evaluate(last, data, "val")
    n = metrics["n"]
    assert n == VAL_DEALS * SAMPLES
    ties = near_ties(load_module(last).model, load_tensors(data, "val"))
    assert ties <= n // 20, ties  # the bound below must stay meaningful
    stored = 2**-23  # the log keeps each metric as an fp32 number: one unit in its last place
    for key in ("accuracy", "zero_regret", "blunder_rate"):
        assert metrics[key] == pytest.approx(logged[key], abs=ties / n + stored), key
    assert metrics["q_gap"] == pytest.approx(logged["q_gap"], abs=ties * MAX_GAP / n + stored * logged["q_gap"])
    assert metrics["value_mae"] == pytest.approx(logged["value_mae"], rel=1e-4)
