"""The retention policy (forge.flywheel.retention): what each recorded iteration keeps, the views'
"pruned" labels, log rotation, disk growth in ``status``, and W&B's files inside the workspace."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.processes import wait_for
from helpers.retention_workspace import add_iteration, cache_entry_count, golden_entry, new_workspace

from forge.flywheel import retention
from forge.flywheel.config import ConfigError, load_preset
from forge.flywheel.context import context
from forge.flywheel.state import save_state
from forge.flywheel.status import snapshot
from forge.ui.render import history_table
from forge.ui.text import format_text

# iteration -> val Q-gap: iteration 2 is the best
GAPS = {1: 0.9, 2: 0.3, 3: 0.8, 4: 0.7, 5: 0.6, 6: 0.5, 7: 0.45, 8: 0.4}


def _workspace(tmp_path: Path, **config: object):
    ws, state = new_workspace(tmp_path / "ws", retain_last=3, replay_iters=2, retain_images=4, **config)
    for it, gap in GAPS.items():
        add_iteration(ws, state, it, gap, synced=it == 3)
    return ws, state


def test_prune_keeps_best_last_and_resume_checkpoint(tmp_path: Path) -> None:
    ws, state = _workspace(tmp_path)
    golden = golden_entry(ws, state)
    stray = ws.token_cache / "v9" / "ab" / "unknown-k1-g0.npz"  # an entry no iteration accounts for
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"?")
    done = retention.prune(ws.root, state)
    assert done.iterations == [1, 3, 4, 5]  # 2 is the best; 6, 7, 8 the newest three
    assert done.released == [1, 2, 3, 4, 5, 6]  # 7 and 8: the next iteration's replay window
    for it in GAPS:
        run, archive = ws.run_dir(it), ws.archive(it)
        whole = it in (2, 6, 7, 8)
        assert (run / "model.ckpt").is_file() == whole
        assert (run / "train/domino/version_0/checkpoints/last.ckpt").is_file() == whole
        assert (run / "train/domino/version_0/metrics.csv").is_file()  # the curve stays
        assert (run / "results/generate.json").is_file()  # results stay
        assert (archive / "03_train.html").is_file() == whole
        assert (archive / "03_train.ipynb").is_file() == whole
        assert (archive / "03_train.ipynb.gz").is_file() == (not whole)
        assert (run / "logs/train.log.gz").is_file() == (not whole)
        assert (run / retention.PRUNED).is_file() == (not whole)
        entries = sum(1 for s in state.entry(it).seeds if _cached(ws, state, s))
        assert entries == (4 if it in (7, 8) else 0), it
    # the next iteration starts from iteration 8's weights, which are there
    start, label = context(ws.root, state=state).starting_point()
    assert label == "iteration 8" and start is not None and start.is_file()
    # plots: kept by every 4th pruned iteration (retain_images), replaced by a line in the others
    nb1 = json.loads(gzip.decompress((ws.archive(1) / "01_generate.ipynb.gz").read_bytes()))
    nb4 = json.loads(gzip.decompress((ws.archive(4) / "01_generate.ipynb.gz").read_bytes()))
    outs1 = [o["data"] for c in nb1["cells"] for o in c["outputs"]]
    assert not any("image/png" in d for d in outs1)
    assert any(d.get("text/plain") == retention.IMAGE_PRUNED for d in outs1)
    assert any("image/png" in o["data"] for c in nb4["cells"] for o in c["outputs"])
    assert "text/html" in outs1[0]  # text outputs stay
    # W&B: a synced run's files go; an unsynced one keeps what `wandb sync` reads, less its debug logs
    assert not (ws.run_dir(3) / "wandb").exists()
    kept = list((ws.run_dir(4) / "wandb").glob("*/run-*.wandb"))
    assert kept and not list((ws.run_dir(4) / "wandb").glob("*/logs"))
    assert golden.is_file() and stray.is_file()
    # the size noted for the rate (pruned iterations counted from their markers) is the size walked
    assert abs(retention.disk_total(ws) - retention.tree_size(ws.root)) < 100 * len(GAPS)  # markers themselves
    # idempotent: nothing left to do (its summary lost too: the markers say what was done)
    assert not retention.prune(ws.root, state)
    summary = ws.retention_summary
    summary.unlink()
    assert not retention.prune(ws.root, state) and retention.read_summary(ws).pruned.keys() == {1, 3, 4, 5}
    # a run synced after its iteration was pruned: its files go at the next prune, which `sync` has visit
    # every iteration once by removing the summary (forge.flywheel.wandb_sync._record); a pass that does
    # not revisit them leaves the files
    state.history[3].wandb = {**state.history[3].wandb, "url": "https://wandb.ai/x/y/runs/4", "mode": "synced"}
    retention.prune(ws.root, state)
    assert (ws.run_dir(4) / "wandb").is_dir()
    ws.retention_summary.unlink()
    retention.prune(ws.root, state)
    assert not (ws.run_dir(4) / "wandb").exists()
    assert abs(retention.disk_total(ws) - retention.tree_size(ws.root)) < 100 * len(GAPS)
    # a new best replaces the old one, which is pruned in its turn
    add_iteration(ws, state, 9, 0.1)
    again = retention.prune(ws.root, state)
    assert again.iterations == [2, 6] and again.released == [7]
    assert not (ws.run_dir(2) / "model.ckpt").exists() and (ws.run_dir(9) / "model.ckpt").is_file()


def _cached(ws, state, seed: int) -> bool:
    from helpers.retention_workspace import shard_sha

    return bool(retention.cache_entries(ws, shard_sha(seed)))


def test_retention_keep_prunes_nothing(tmp_path: Path) -> None:
    ws, state = _workspace(tmp_path, retention="keep")
    assert not retention.prune(ws.root, state)
    assert all((ws.run_dir(it) / "model.ckpt").is_file() for it in GAPS)
    assert cache_entry_count(ws) == 4 * len(GAPS)


def test_retention_fields_are_checked() -> None:
    with pytest.raises(ConfigError, match="config.loop.retention must be one of prune, keep"):
        load_preset("quick", retention="some")
    with pytest.raises(ConfigError, match="config.loop.retain_last must be at least 1"):
        load_preset("quick", retain_last=0)
    cfg = load_preset("quick")
    loop = cfg.loop
    assert (loop.retention, loop.retain_last, loop.retain_best, loop.retain_images, loop.retain_logs) == (
        "prune", 3, True, 10, 10)


def test_views_say_pruned_instead_of_dead_links(tmp_path: Path) -> None:
    ws, state = _workspace(tmp_path)
    retention.prune(ws.root, state)
    page = history_table([h.to_dict() for h in state.history], ws.root, ws.root / "archive", 2)
    hrefs = [h for h in re.findall(r'href="([^"]+)"', page) if not h.startswith("https://")]
    for href in hrefs:
        assert (ws.root / "archive" / href).exists(), href  # every link resolves
    assert page.count("(pruned)") == 4 * 4  # four notebooks of each pruned iteration
    assert any("iter-0002/03_train.html" in h for h in hrefs)


def test_loop_logs_rotated(tmp_path: Path) -> None:
    ws, state = new_workspace(tmp_path / "ws", retain_logs=3)
    runs = ws.root / "runs"
    runs.mkdir(parents=True)
    ws.loop_logs.mkdir(parents=True)
    for k in range(6):
        (runs / f"loop-20260101-00000{k}.log").write_text(f"log {k}\n")
        (ws.loop_logs / f"kernel-20260101-00000{k}-1.log").write_text(f"kernel {k}\n")
    big = runs / "loop-20260101-000005.log"
    big.write_bytes(b"old line\n" * 200_000)  # 1.8 MB
    done = retention.rotate_logs(ws, 3, max_bytes=2**20)
    assert sorted(p.name for p in runs.glob("loop-*.log"))[0] == "loop-20260101-000003.log"
    assert len(list(runs.glob("loop-*.log"))) == 3 and len(list(ws.loop_logs.glob("kernel-*.log"))) == 3
    assert big.stat().st_size <= 2**19 + 100 and big.read_text().endswith("old line\n")
    assert any("cut" in d for d in done)


def test_status_shows_disk_and_rate(tmp_path: Path) -> None:
    ws, state = _workspace(tmp_path)
    save_state(ws.root, state)
    retention.record_disk(ws, 7, total=100 * 2**20, at=1_000_000.0)
    retention.record_disk(ws, 8, total=101 * 2**20, at=1_000_000.0 + 3600)  # 1 MB an hour, one iteration
    snap = snapshot(ws.root, disk=True)
    rate = snap.disk_growth.rate
    assert rate.bytes_per_day == pytest.approx(24 * 2**20)
    assert rate.bytes_per_iteration == pytest.approx(2**20)
    text = format_text(snap)
    assert "disk growth: 24.0 MB/day at the current rate (1.00 MB per iteration" in text
    assert "disk: " in text and "runs " in text


def test_status_without_disk_log_says_not_known(tmp_path: Path) -> None:
    ws, state = _workspace(tmp_path)
    save_state(ws.root, state)
    assert "disk growth: not known yet" in format_text(snapshot(ws.root, disk=True))


def test_wandb_offline_run_refers_only_to_files_inside_the_workspace(tmp_path: Path, monkeypatch) -> None:
    """Every file an offline run refers to lies inside the workspace, and W&B writes nothing under the
    home folder (a copied workspace can be synced; nothing outside the workspace grows)."""
    from forge.flywheel.tracking import log_iteration

    home = tmp_path / "home"
    home.mkdir()
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR", "WANDB_DIR", "XDG_DATA_HOME",
                "XDG_CACHE_HOME", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))  # W&B's settings: the user's own
    ws, state = _workspace(tmp_path)
    run = ws.run_dir(9)
    run.mkdir(parents=True)
    (run / "model.ckpt").write_bytes(os.urandom(5000))
    (run / "metrics.csv").write_text("epoch,step,train/loss\n0,1,0.5\n")
    ctx = SimpleNamespace(ws=ws, state=state, iteration=9, seeds=[32, 33], previous=lambda: state.history[-1])
    trained = SimpleNamespace(started_from="iteration 8", metrics_csv="runs/iter-0009/metrics.csv",
                              checkpoint="runs/iter-0009/model.ckpt")
    summary = SimpleNamespace(total_seeds=36, val={"q_gap": 0.2}, test={}, playout={})
    for k, v in list(os.environ.items()):
        if k.startswith("WANDB_") and k not in ("WANDB_CONFIG_DIR",):
            monkeypatch.setenv(k, v)  # restored after the test (log_iteration sets the workspace's dirs)
    info = log_iteration(ctx, trained, summary)
    assert info and "error" not in info, info
    offline = ws.root / info["dir"]
    # W&B's service may still be writing the run's log when finish() returns: wait for the artifact's record
    wait_for(lambda: any(b"model.ckpt" in f.read_bytes() for f in offline.glob("run-*.wandb")), 60,
             "the offline run's record of its model artifact")
    referred: set[str] = set()
    for f in offline.rglob("*"):
        if f.is_file():
            referred |= {m.decode() for m in re.findall(rb"/[\w.+\-/]+", f.read_bytes())
                         if m.startswith(str(tmp_path).encode())}
    assert any("/ws/runs/iter-0009/model.ckpt" in r for r in referred), referred
    outside = sorted(r for r in referred if not r.startswith(str(ws.root) + "/"))
    assert not outside, f"the offline run refers to files outside the workspace: {outside}"
    grown = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and "wandb" in str(p)
                   and ".config" not in str(p))
    assert not grown, f"W&B wrote under the home folder: {grown}"


def test_the_loop_applies_the_policy_after_each_recorded_iteration(tiny_runs) -> None:
    """Two real ``tiny`` iterations (replay_iters 1): after the second is recorded the first's deals
    leave the window and their tokens go; the loop noted the workspace's size after each; W&B wrote
    under the workspace."""
    from forge.flywheel.paths import Workspace
    from forge.flywheel.state import load_state

    ws = Workspace.at(tiny_runs["ws"])
    state = load_state(ws.root)
    assert [h.iteration for h in state.history] == [1, 2] and state.config.data.replay_iters == 1
    assert "retention: released the tokens of 1" in tiny_runs["log"]
    assert [s[1] for s in retention.read_disk_log(ws)] == [1, 2]
    assert (ws.run_dir(1) / retention.TOKENS_RELEASED).is_file()
    assert not (ws.run_dir(2) / retention.TOKENS_RELEASED).exists()
    first, second = retention._train_shas(ws, 1), retention._train_shas(ws, 2)
    assert len(first) == len(second) == 4
    assert not any(retention.cache_entries(ws, sha) for sha in first)
    assert all(retention.cache_entries(ws, sha) for sha in second)  # the next iteration's window
    assert (ws.run_dir(1) / "model.ckpt").is_file()  # retain_last 3: both kept whole
    assert (ws.root / "runs" / "wandb" / "data").is_dir()  # W&B's staging, inside the workspace
    assert "disk growth: " in format_text(snapshot(ws.root, disk=True))


def test_a_state_recorded_before_retention_loads_with_the_defaults(tmp_path: Path) -> None:
    import shutil

    from forge.flywheel.state import load_state

    shutil.copy(Path(__file__).parent / "fixtures" / "results-ae99f51" / "state.yaml", tmp_path / "state.yaml")
    assert "retain" not in (tmp_path / "state.yaml").read_text()
    cfg = load_state(tmp_path).config
    loop = cfg.loop
    assert (loop.retention, loop.retain_last, loop.retain_best, loop.retain_images, loop.retain_logs) == (
        "prune", 3, True, 10, 10)


def test_a_pass_visits_only_the_new_iterations_and_those_it_held(tmp_path: Path) -> None:
    """The policy's pass costs the same however long the history: after one pass, the next reads the
    iterations recorded since and the ones it held (kept whole, in the window), not the whole history."""
    ws, state = _workspace(tmp_path)
    retention.prune(ws.root, state)
    summary = retention.read_summary(ws)
    assert summary.settled == 8 and summary.held == {2, 6, 7, 8}  # the best, the newest three (and the window)
    add_iteration(ws, state, 9, 0.35)
    assert [e.iteration for e in retention._to_visit(state, summary)] == [2, 6, 7, 8, 9]
    done = retention.prune(ws.root, state)
    assert done.iterations == [6]  # 9 joins the newest three: 6 goes
    assert retention.read_summary(ws).held == {2, 7, 8, 9}
    lost = retention.Summary()  # a lost summary: every iteration is visited once again, nothing pruned twice
    assert [e.iteration for e in retention._to_visit(state, lost)] == list(range(1, 10))
