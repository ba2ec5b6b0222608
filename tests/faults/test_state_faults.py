"""Faults that used to corrupt or confuse the flywheel's record (issue 10), each reproduced here.

state.yaml edits, CLI mistakes and concurrency cases: every one ends in a one-line message (exit 2),
never a traceback, and never in a record that a later command cannot read.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers.loop import cli, edit_state, one_line_error
from helpers.workspaces import tiny_workspace

from forge.flywheel.config import load_preset
from forge.flywheel.lock import FlywheelLock, Heartbeat
from forge.flywheel.state import BACKUP_FILE, StateStore, begin_iteration, load_state, new_state, save_state


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tiny_workspace(tmp_path, "faults")


HISTORY_ENTRY = {"iteration": 1, "seeds": [0, 1, 2, 3], "seed_range": [0, 4], "total_seeds": 4,
                 "val": {"q_gap": 0.5, "accuracy": 0.8}}


@pytest.mark.parametrize("change, field", [
    (lambda d: d["config"].update(lr=float("inf")), "config.training.lr"),
    (lambda d: d["config"].update(lr=float("nan")), "config.training.lr"),
    (lambda d: d["config"].update(scratch_lr=0), "config.training.scratch_lr"),
    (lambda d: d.update(next_seed=-5), "next_seed"),
    (lambda d: d.update(current={"iteration": 1, "seeds": [1]}), "current.seed_range"),
    (lambda d: d.update(current={"iteration": 1, "seeds": [1], "seed_range": [1, 2], "pid": "abc"}), "current.pid"),
    (lambda d: d.update(current={"iteration": 1, "seeds": [1], "seed_range": [1, 2], "timings": "x"}),
     "current.timings"),
    (lambda d: d.update(history=[{**HISTORY_ENTRY, "val": {"q_gap": "low"}}]), "history[0].val.q_gap"),
    (lambda d: d.update(history=[{**HISTORY_ENTRY, "val": {"q_gap": float("nan")}}]), "history[0].val.q_gap"),
    (lambda d: d.update(history=[{**HISTORY_ENTRY, "total_seeds": "4"}]), "history[0].total_seeds"),
    (lambda d: d.update(history=[HISTORY_ENTRY, HISTORY_ENTRY]), "history iterations must increase"),
    (lambda d: d.update(history=[HISTORY_ENTRY], current={"iteration": 1, "seeds": [4], "seed_range": [4, 5]}),
     "current.iteration 1 is already in history"),
])
def test_bad_state_fields_are_named_in_one_line(ws: Path, change, field: str) -> None:
    edit_state(ws, change)
    before = (ws / "state.yaml").read_bytes()
    for args in (("status",), ("--once",)):
        one_line_error(cli(*args, cwd=ws), field, "state.yaml")
    assert (ws / "state.yaml").read_bytes() == before  # nothing rewrote or "repaired" it


def test_duplicate_yaml_keys_are_refused(ws: Path) -> None:
    text = (ws / "state.yaml").read_text().replace("next_seed: 0", "next_seed: 0\nnext_seed: 12")
    (ws / "state.yaml").write_text(text)
    one_line_error(cli("status", cwd=ws), "duplicate key 'next_seed'", "line")


def test_non_utf8_state_names_the_file(ws: Path) -> None:
    raw = (ws / "state.yaml").read_bytes().replace(b"preset: tiny", b"preset: t\xffny")
    (ws / "state.yaml").write_bytes(raw)
    one_line_error(cli("status", cwd=ws), f"{ws / 'state.yaml'} is not UTF-8", "line")


def test_advice_matches_the_backups_there_are(ws: Path) -> None:
    (ws / "state.yaml").write_text("status: [")
    res = cli("status", cwd=ws)
    one_line_error(res, "restore the last good version", BACKUP_FILE)
    (ws / BACKUP_FILE).unlink()
    res = cli("status", cwd=ws)
    one_line_error(res, "there is no usable backup")
    assert BACKUP_FILE not in res.stderr
    save_state(ws, new_state(load_preset("tiny"), "again"))
    save_state(ws, load_state(ws))
    (ws / "state.yaml").unlink()
    one_line_error(cli("status", cwd=ws), "a backup exists", f"cp {ws / BACKUP_FILE}")


def test_a_corrupt_state_never_replaces_the_good_backup(ws: Path) -> None:
    good = (ws / BACKUP_FILE).read_text()
    (ws / "state.yaml").write_text("version: 2\nstatus: [")
    state = new_state(load_preset("tiny"), "fresh")
    save_state(ws, state)  # what init --force or a repair would do
    assert (ws / BACKUP_FILE).read_text() == good


def test_root_before_or_after_the_command(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    res = cli("--root", str(there), "init", "--preset", "tiny", "--wandb-group", "g", cwd=here)
    assert res.returncode == 0, res.stderr
    assert (there / "state.yaml").is_file() and not (here / "state.yaml").exists()
    for args in (("--root", str(there), "status"), ("status", "--root", str(there))):
        res = cli(*args, cwd=here)
        assert res.returncode == 0 and str(there) in res.stdout, res.stderr
    one_line_error(cli("--root", str(here), "status", cwd=here), "state.yaml not found")


def test_init_force_takes_the_lock_and_keeps_every_previous_state(ws: Path) -> None:
    state = load_state(ws)
    state.history = []
    state.next_seed = 40
    save_state(ws, state)
    with FlywheelLock(ws):  # a loop runs
        one_line_error(cli("init", "--force", "--preset", "tiny", "--wandb-group", "new", cwd=ws),
                       "while a loop runs")
    assert load_state(ws).next_seed == 40
    for group in ("second", "third"):
        res = cli("init", "--force", "--preset", "tiny", "--wandb-group", group, cwd=ws)
        assert res.returncode == 0, res.stderr
    kept = sorted(ws.glob("state.yaml.*.bak"))
    assert len(kept) == 2
    groups = [yaml.safe_load(p.read_text())["wandb"]["group"] for p in kept]
    assert groups == ["faults", "second"] and yaml.safe_load(kept[0].read_text())["next_seed"] == 40


def test_init_refuses_a_baseline_that_is_not_a_checkpoint(ws: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    one_line_error(cli("init", "--force", "--preset", "tiny", "--wandb-group", "g", "--baseline", str(text),
                       cwd=ws), "notes.ckpt")
    assert load_state(ws).wandb["group"] == "faults"  # the old state is untouched


def test_heartbeat_survives_a_failed_write(ws: Path) -> None:
    store = StateStore(ws)
    with store.edit() as st:
        begin_iteration(st)
    path = ws / ".flywheel.heartbeat"  # the heartbeat's own file (state.yaml is not rewritten by it)
    hb = Heartbeat(store, interval=0.05)
    with hb:
        aside = ws / "heartbeat.aside"
        os.replace(path, aside)
        path.mkdir()  # every write fails while a folder stands where state.yaml goes
        deadline = time.monotonic() + 30
        while hb.failures < 2:  # observed: the heartbeat has failed, twice
            assert time.monotonic() < deadline, "heartbeat never tried to write"
            time.sleep(0.02)
        path.rmdir()
        os.replace(aside, path)
        stamp = load_state(ws).current.heartbeat
        while load_state(ws).current.heartbeat == stamp or hb.failures:
            assert time.monotonic() < deadline + 30, "heartbeat stopped after a failed write"
            time.sleep(0.05)
    assert hb._thread.is_alive() is False


def test_sync_without_a_network_gives_up_at_once_outside_the_lock(ws: Path) -> None:
    state = load_state(ws)
    (ws / "runs" / "w").mkdir(parents=True)
    from forge.flywheel.records import HistoryEntry

    state.history = [HistoryEntry(**{**HISTORY_ENTRY, "wandb": {"mode": "offline", "dir": "runs/w"}})]
    save_state(ws, state)
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{port}"}
    holder = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with FlywheelLock(ws):
            holder.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    holder.wait(10)
    try:
        started = time.monotonic()
        res = cli("sync", cwd=ws, env=env, timeout=60)
        took = time.monotonic() - started
    finally:
        release.set()
        t.join()
    one_line_error(res, "cannot reach 127.0.0.1")
    assert took < 30  # gave up, rather than waiting 300 s per run


@pytest.mark.slow
def test_init_refuses_a_baseline_of_another_architecture(ws: Path, tmp_path: Path) -> None:
    import torch

    from forge.ml.module import DominoModule

    module = DominoModule.from_preset("tiny")
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    one_line_error(cli("init", "--force", "--preset", "quick", "--wandb-group", "g", "--baseline", str(ckpt),
                       cwd=ws), "tiny.ckpt", "trains 'small'", "pass --model tiny")
    res = cli("init", "--force", "--preset", "quick", "--model", "tiny", "--wandb-group", "g", "--baseline",
              str(ckpt), cwd=ws)
    assert res.returncode == 0, res.stderr
    assert load_state(ws).baseline_checkpoint == str(ckpt.resolve())
