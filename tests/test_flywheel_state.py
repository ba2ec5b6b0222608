"""state.yaml, presets and the loop lock: validation, atomic writes, crash detection."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from forge.flywheel.config import ConfigError, load_preset
from forge.flywheel.lock import FlywheelLock, Heartbeat, LockHeld, liveness
from forge.flywheel.state import (
    BACKUP_FILE,
    StateError,
    StateStore,
    begin_iteration,
    load_state,
    new_state,
    plan_seeds,
    save_state,
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    save_state(tmp_path, new_state(load_preset("tiny"), "test-group"))
    return tmp_path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_presets_load_and_validate() -> None:
    tiny, quick, standard = (load_preset(n) for n in ("tiny", "quick", "standard"))
    assert tiny.data.hand_size < 7 and tiny.training.model == "tiny"
    assert quick.data.hand_size == standard.data.hand_size == 7 and standard.training.model == "large"
    for cfg in (tiny, quick, standard):
        # fine-tuning never outpaces training from scratch
        assert cfg.training.lr <= cfg.training.scratch_lr, cfg.preset
    # standard validates during training on a subset of its golden val set; evaluate scores all of it
    golden = standard.evaluation
    golden_val = golden.golden_samples_per_shard * len(golden.golden_val_seeds) * len(golden.golden_decls)
    assert standard.training.val_samples is not None and standard.training.val_samples < golden_val
    with pytest.raises(ConfigError, match="config.training.batch_size"):
        load_preset("tiny", batch_size=0)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_preset("huge")


def test_round_trip_and_backup(ws: Path) -> None:
    state = load_state(ws)
    assert state.status == "ready" and state.iteration == 1 and state.wandb["group"] == "test-group"
    begin_iteration(state)
    save_state(ws, state)
    again = load_state(ws)
    assert again.status == "running" and again.current.seeds == state.current.seeds
    backup = yaml.safe_load((ws / BACKUP_FILE).read_text())
    assert backup["status"] == "ready" and backup["current"] is None


def test_seed_plan_skips_golden_seeds() -> None:
    cfg = load_preset("tiny", seeds_per_iter=5)
    assert plan_seeds(cfg, 898) == [898, 899, 903, 904, 905]
    assert plan_seeds(cfg, 949) == [949, 951, 952, 953, 954]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["config"].update(epochs="two"), "config.training.epochs"),
        (lambda d: d.update(status="sleeping"), "status must be one of"),
        (lambda d: d["wandb"].update(mode="cloud"), "wandb.mode"),
        (lambda d: d.update(next_seed=-3.5), "next_seed"),
        (lambda d: d.update(current={"iteration": 1, "seeds": [1], "seed_range": [1, 2],
                                     "stages_completed": ["bake"]}), "current.stages_completed"),
        (lambda d: d["config"]["training"].pop("model"), "config.training.model is missing"),
    ],
)
def test_invalid_fields_are_named(ws: Path, edit, message: str) -> None:
    data = yaml.safe_load((ws / "state.yaml").read_text())
    edit(data)
    (ws / "state.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(StateError, match=message):
        load_state(ws)


def test_corrupt_yaml_is_reported_not_reinitialised(ws: Path) -> None:
    (ws / "state.yaml").write_text("status: [ready\nconfig: {")
    before = (ws / "state.yaml").read_text()
    res = cli("status", cwd=ws)
    assert res.returncode == 2 and "not valid YAML" in res.stderr and "Traceback" not in res.stderr
    res = cli("--once", cwd=ws)
    assert res.returncode == 2 and "not valid YAML" in res.stderr
    assert (ws / "state.yaml").read_text() == before


def test_crash_during_save_keeps_previous_state(ws: Path, monkeypatch) -> None:
    state = load_state(ws)
    state.next_seed = 77
    real = os.replace

    def dying_replace(src, dst):
        if str(dst).endswith("state.yaml"):
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(OSError):
        save_state(ws, state)
    monkeypatch.setattr(os, "replace", real)
    assert load_state(ws).next_seed == 0
    assert not [p for p in ws.iterdir() if p.name.startswith(".state.")]


def test_second_loop_is_refused_with_holder(ws: Path) -> None:
    with FlywheelLock(ws):
        res = cli("--once", cwd=ws)
        assert res.returncode == 2
        assert "another flywheel loop is running" in res.stderr and f"pid {os.getpid()}" in res.stderr
        with pytest.raises(LockHeld):
            FlywheelLock(ws).__enter__()


def test_dead_loop_is_reported_as_crashed(ws: Path) -> None:
    code = ("from forge.flywheel.lock import FlywheelLock\nfrom forge.flywheel.state import *\n"
            "import os\nwith FlywheelLock('.'):\n    s = load_state('.')\n    begin_iteration(s)\n"
            "    save_state('.', s)\n    os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code], cwd=ws).returncode == 9
    state = load_state(ws)
    assert state.status == "running"
    assert liveness(ws, state) == "crashed"
    res = cli("status", cwd=ws)
    assert res.returncode == 0 and "status: crashed" in res.stdout and "retry" in res.stdout
    res = cli("--once", cwd=ws)
    assert res.returncode == 2 and "crashed" in res.stderr and "retry" in res.stderr
    res = cli("retry", cwd=ws)
    assert res.returncode == 0, res.stderr
    assert load_state(ws).status == "ready"


def test_live_loop_is_running_and_heartbeat_moves(ws: Path) -> None:
    with FlywheelLock(ws):
        store = StateStore(ws)
        with store.edit() as st:
            begin_iteration(st)
        first = load_state(ws).current.heartbeat
        assert liveness(ws, load_state(ws)) == "running"
        with Heartbeat(store, interval=0.3):
            time.sleep(2.1)  # heartbeats are stamped to the second: at least one tick must show
        assert load_state(ws).current.heartbeat > first
        assert load_state(ws).status == "running"


def test_init_refuses_to_clobber(ws: Path) -> None:
    res = cli("init", "--preset", "quick", "--wandb-group", "g", cwd=ws)
    assert res.returncode == 2 and "--force" in res.stderr
    res = cli("init", "--preset", "quick", "--wandb-group", "g2", "--start-seed", "5", "--force", cwd=ws)
    assert res.returncode == 0, res.stderr
    state = load_state(ws)
    assert (state.config.preset, state.wandb["group"], state.next_seed) == ("quick", "g2", 5)
    assert yaml.safe_load((ws / BACKUP_FILE).read_text())["config"]["preset"] == "tiny"
    res = cli("init", "--preset", "nope", "--wandb-group", "g", "--force", cwd=ws)
    assert res.returncode == 2 and "unknown preset" in res.stderr


V1_STATE = """\
# forge flywheel state: written by `python -m forge.cli.flywheel`; validated on load.
version: 1
status: ready
next_action: run `python -m forge.cli.flywheel` runs iteration 3 (seeds 8..11)
last_error: null
wandb: {project: forge-texas42, group: old-run, mode: offline}
config:
  preset: tiny
  hand_size: 3
  seeds_per_iter: 4
  samples_per_shard: 64
  golden_val_seeds: [900, 901, 902]
  golden_test_seeds: [950]
  golden_decls: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
  golden_samples_per_shard: 64
  playout_deals: 10
  model: tiny
  epochs: 2
  lr: 0.0003
  scratch_lr: 0.003
  batch_size: 64
  replay_iters: 1
  global_seed: 0
  stop_iterations: null
  stop_total_seeds: null
  stop_target_qgap: null
baseline_checkpoint: null
next_seed: 8
current: null
history:
- iteration: 1
  seeds: [0, 1, 2, 3]
  seed_range: [0, 4]
  total_seeds: 4
  checkpoint: runs/iter-0001/model.ckpt
  started_from: scratch
  val: {n: 636, accuracy: 0.8407, zero_regret: 0.9, q_gap: 0.5881, blunder_rate: 0.0273, q_gap/notrump: 0.41}
  test: {n: 212, accuracy: 0.83, q_gap: 0.61}
  playout: {playout_deals: 10, playout_points_lost: 12.5}
  delta_prev: {}
  delta_best: {}
  is_best: true
  wandb: {mode: offline, id: abc123, name: iter-0001, dir: runs/iter-0001/wandb/offline-run-x, sync: wandb sync x}
  notebooks: {generate: archive/iter-0001/01_generate.ipynb, train: archive/iter-0001/03_train.ipynb}
  timings: {generate: 9.1, tokenize: 1.2, train: 6.3, evaluate: 4.4, total: 22.5}
  started_at: '2026-11-01T10:00:00+00:00'
  finished_at: '2026-11-01T10:00:23+00:00'
  best_before: null
- iteration: 2
  seeds: [4, 5, 6, 7]
  seed_range: [4, 8]
  total_seeds: 8
  checkpoint: runs/iter-0002/model.ckpt
  started_from: iteration 1
  val: {n: 636, accuracy: 0.85, q_gap: 0.55, blunder_rate: 0.02}
  test: {n: 212, accuracy: 0.84, q_gap: 0.6}
  playout: {playout_deals: 10, playout_points_lost: 11.0}
  delta_prev: {accuracy: 0.0093, q_gap: -0.0381}
  delta_best: {accuracy: 0.0093, q_gap: -0.0381}
  is_best: true
  wandb: null
  notebooks: {}
  timings: {total: 20.0}
  started_at: '2026-11-01T10:01:00+00:00'
  finished_at: '2026-11-01T10:01:20+00:00'
"""


def test_a_version_1_state_with_history_migrates_and_keeps_every_value(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(V1_STATE)
    original = yaml.safe_load(V1_STATE)
    state = load_state(tmp_path)
    assert state.version == 3 and [h.iteration for h in state.history] == [1, 2]
    for entry, old in zip(state.history, original["history"]):
        for key, value in old.items():
            kept = entry.extra[key] if key in entry.extra else getattr(entry, key)
            assert kept == value, key  # every value, metrics included, as it was
        assert entry.config is None  # version 1 did not record it: unknown, not today's config
    assert state.history[0].extra == {"best_before": None}
    save_state(tmp_path, state)  # the first save writes version 3 (and history.jsonl) and keeps the original
    assert (tmp_path / "state.yaml.v1.bak").read_text() == V1_STATE
    again = yaml.safe_load((tmp_path / "state.yaml").read_text())
    assert again["version"] == 3 and again["history"]["entries"] == 2
    assert load_state(tmp_path).history[0].val == original["history"][0]["val"]
    res = cli("status", cwd=tmp_path)
    assert res.returncode == 0 and "0.5881" in res.stdout and "0.5500" in res.stdout


def test_libyaml_reads_and_writes_what_pure_python_yaml_does(tmp_path: Path) -> None:
    """The loop reads and writes state.yaml with libyaml for speed; what it means must not change."""
    import dataclasses

    from forge.flywheel import state as state_module

    (tmp_path / "state.yaml").write_text(V1_STATE)
    state = load_state(tmp_path)
    first = state.history[0]
    state.history = [dataclasses.replace(first, iteration=i, seeds=list(range(4 * i, 4 * i + 4)))
                     for i in range(1, 61)]

    def pure(state: object) -> str:
        return state_module.HEADER + yaml.dump(state.to_dict(), Dumper=state_module.styled(yaml.SafeDumper),
                                               sort_keys=False, default_flow_style=None, width=100)

    assert state_module.render(state) == pure(state)  # a typical state: byte for byte, so diffs stay small
    # Long text folds at other places (both valid YAML); every emitter/parser pair reads the same values.
    state.status = "failed"
    state.last_error = ("train: loss is nan at step 12 \u2014 'quotes', \"double\", a colon: and a # hash; "
                        + "long text " * 20 + "\nsecond line\tand a tab")
    for text in (state_module.render(state), pure(state)):
        for loader in (yaml.SafeLoader, state_module._StrictLoader):
            assert state_module.state_from_dict(yaml.load(text, Loader=loader)).to_dict() == state.to_dict()  # noqa: S506
    save_state(tmp_path, state)
    assert load_state(tmp_path).to_dict() == state.to_dict()
    text = (tmp_path / "state.yaml").read_text()
    (tmp_path / "state.yaml").write_text(text.replace("status: failed", "status: failed\nstatus: ready", 1))
    with pytest.raises(StateError, match="duplicate key 'status'"):
        load_state(tmp_path)


def test_a_nested_edit_that_breaks_the_state_never_becomes_the_backup(ws: Path) -> None:
    """Saves skip re-reading a file they wrote themselves, but only when what they wrote was valid."""
    good = (ws / "state.yaml").read_text()
    state = load_state(ws)
    state.wandb["mode"] = "cloud"  # inside a dict: not validated on assignment
    save_state(ws, state)
    save_state(ws, state)  # the file it replaces is not a valid state: it must not become the backup
    assert (ws / BACKUP_FILE).read_text() == good
    with pytest.raises(StateError, match="wandb.mode"):
        load_state(ws)
    state.wandb["mode"] = "offline"
    save_state(ws, state)
    save_state(ws, state)
    assert load_state(ws).wandb["mode"] == "offline"
    assert yaml.safe_load((ws / BACKUP_FILE).read_text())["wandb"]["mode"] == "offline"


def test_init_takes_the_gpu_recipe_when_asked_and_says_so(ws: Path) -> None:
    res = cli("init", "--preset", "standard", "--wandb-group", "g", "--recipe", "gpu", "--force", cwd=ws)
    assert res.returncode == 0, res.stderr
    config = load_state(ws).config  # the record holds what will run, not the CPU settings
    assert (config.training.model, config.hardware.precision) == ("xl", "bf16-mixed") and "GPU recipe" in res.stdout
    res = cli("init", "--preset", "standard", "--wandb-group", "g", "--recipe", "cpu", "--force", cwd=ws)
    assert res.returncode == 0 and load_state(ws).config.training.model == "large" and "GPU" not in res.stdout
    res = cli("init", "--preset", "quick", "--wandb-group", "g", "--recipe", "gpu", "--force", cwd=ws)
    assert res.returncode == 2 and "has no GPU recipe" in res.stderr and len(res.stderr.strip().splitlines()) == 1
