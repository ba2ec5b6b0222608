"""The flywheel end to end on the tiny preset: real papermill kernels, real shards, real training.

One module-scoped workspace runs two iterations; the failure, crash and by-hand scenarios start
from copies of it taken after iteration 1, and compare with its iteration 2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

FAKE_KEY = "forge-test-secret-0123456789abcdef0123456789abcdef01234567"
STAGE_FILES = ("01_generate", "02_tokenize", "03_train", "04_evaluate")
REPO = Path(__file__).resolve().parents[1]


def flywheel(ws: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY}
    return subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=timeout)


def state(ws: Path) -> dict:
    return yaml.safe_load((ws / "state.yaml").read_text())


def result(ws: Path, iteration: int, stage: str) -> dict:
    return json.loads((ws / "runs" / f"iter-{iteration:04d}" / "results" / f"{stage}.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny workspace after one iteration (snapshot) and after two (the reference run)."""
    ws = tmp_path_factory.mktemp("flywheel") / "ws"
    ws.mkdir()
    init = flywheel(ws, "init", "--preset", "tiny", "--wandb-group", "ci")
    assert init.returncode == 0, init.stderr
    first = flywheel(ws, "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    after_one = ws.parent / "after-one"
    shutil.copytree(ws, after_one, symlinks=True)
    second = flywheel(ws, "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    return {"ws": ws, "after_one": after_one, "log": first.stdout + second.stdout}


def start_loop_until(ws: Path, stage: str, **popen) -> subprocess.Popen:
    """A background ``--once`` loop, returned once state.yaml shows it running ``stage``."""
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli.flywheel", "--once"], cwd=ws, env=env, **popen)
    deadline = time.time() + 300
    while ((state(ws) or {}).get("current") or {}).get("stage") != stage:
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"the loop never reached the {stage} stage")
        time.sleep(0.1)
    return proc


def copy_after_one(runs: dict[str, Path], dest: Path) -> Path:
    """A fresh workspace identical to the reference after iteration 1 (paths inside are relative)."""
    shutil.copytree(runs["after_one"], dest, symlinks=True)
    return dest


def test_two_iterations_end_to_end(runs) -> None:
    ws = runs["ws"]
    st = state(ws)
    assert st["status"] == "ready" and st["current"] is None
    h1, h2 = st["history"]
    assert (h1["iteration"], h2["iteration"]) == (1, 2)
    assert (h1["seeds"], h2["seeds"]) == ([0, 1, 2, 3], [4, 5, 6, 7])
    assert (h1["total_seeds"], h2["total_seeds"]) == (4, 8) and st["next_seed"] == 8
    # fine-tune chaining: iteration 2 starts from iteration 1's checkpoint, at the fine-tuning LR
    assert h1["started_from"] == "scratch" and h2["started_from"] == "iteration 1"
    assert result(ws, 2, "train")["resume"] == h1["checkpoint"]
    assert result(ws, 2, "train")["lr"] == st["config"]["lr"]
    for h in (h1, h2):
        assert (ws / h["checkpoint"]).is_file()
        for split in ("val", "test"):
            assert 0 <= h[split]["accuracy"] <= 1 and h[split]["q_gap"] >= 0 and "q_gap/notrump" in h[split]
        assert h["playout"]["playout_deals"] == 10
        assert set(h["timings"]) == {"generate", "tokenize", "train", "evaluate", "total"}
        for stage, name in zip(("generate", "tokenize", "train", "evaluate"), STAGE_FILES):
            nb = ws / h["notebooks"][stage]
            assert nb.name == f"{name}.ipynb" and nb.is_file() and nb.with_suffix(".html").is_file()
    assert h2["delta_prev"]["q_gap"] == pytest.approx(h2["val"]["q_gap"] - h1["val"]["q_gap"], abs=1e-4)
    assert "iteration 1 done" in runs["log"] and "iteration 2 done" in runs["log"]


def test_golden_sets_made_once_and_reused(runs) -> None:
    ws = runs["ws"]
    g1, g2 = result(ws, 1, "generate"), result(ws, 2, "generate")
    assert g1["golden_written"] == 40 and g1["golden_kept"] == 0  # 4 golden seeds x 10 declarations
    assert g2["golden_written"] == 0 and g2["golden_kept"] == 40
    t2 = result(ws, 2, "tokenize")
    # only the 4 new training shards are tokenized; the golden splits are left untouched
    assert t2["tokenized_shards"] == 4 and t2["splits_rewritten"] == ["train"]
    # replay window of one iteration: iteration 2 trains on its own and iteration 1's shards
    assert t2["replay_seeds"] == [0, 1, 2, 3]


def test_archive_is_small_quiet_and_indexed(runs) -> None:
    ws = runs["ws"]
    index = (ws / "archive" / "index.html").read_text()
    for i in (1, 2):
        assert f"iter-{i:04d}/03_train.html" in index
    for nb in (ws / "archive").glob("iter-*/*.ipynb"):
        text = nb.read_text()
        assert len(text) < 300_000, nb
        assert "it/s]" not in text and "Epoch 1:" not in text  # no per-step progress bars
        params = json.loads(text)["metadata"]["papermill"]["parameters"]
        assert params["iteration"] == int(nb.parent.name.split("-")[1])
    res = flywheel(ws, "archive")
    assert res.returncode == 0 and "iter-0002/ (4 stages)" in res.stdout


def test_no_secret_reaches_any_file(runs) -> None:
    ws = runs["ws"]
    leaks = [p for p in ws.rglob("*") if p.is_file() and p.suffix in {".ipynb", ".html", ".yaml", ".json", ".bak"}
             and FAKE_KEY in p.read_text(errors="ignore")]
    assert leaks == []


def test_failing_stage_then_retry_keeps_finished_stages(runs, tmp_path) -> None:
    ws = copy_after_one(runs, tmp_path / "ws")
    blocker = ws / "runs" / "iter-0002" / "train"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the training run folder must go")
    res = flywheel(ws, "--once")
    assert res.returncode == 1
    st = state(ws)
    assert st["status"] == "failed"
    assert st["current"]["stages_completed"] == ["generate", "tokenize"]
    assert st["last_error"].startswith("train: cell ") and "Error" in st["last_error"]
    partial = json.loads((ws / st["current"]["notebooks"]["train"]).read_text())
    assert any(o.get("output_type") == "error" for c in partial["cells"] for o in c.get("outputs", []))
    assert (ws / "archive" / "iter-0002" / "03_train.html").is_file()
    status = flywheel(ws, "status")
    assert "status: failed" in status.stdout and "retry" in status.stdout
    assert flywheel(ws, "--once").returncode == 2  # refuses to run over a failure

    generated = (ws / "archive" / "iter-0002" / "01_generate.ipynb").stat().st_mtime_ns
    blocker.unlink()
    assert flywheel(ws, "retry").returncode == 0
    res = flywheel(ws, "--once")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "generate  already done" in res.stdout and "tokenize  already done" in res.stdout
    assert (ws / "archive" / "iter-0002" / "01_generate.ipynb").stat().st_mtime_ns == generated
    assert state(ws)["history"][-1]["val"] == state(runs["ws"])["history"][-1]["val"]


def test_killed_loop_is_reported_and_recovers_to_the_same_result(runs, tmp_path) -> None:
    ws = copy_after_one(runs, tmp_path / "ws")
    proc = start_loop_until(ws, "train", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the loop and its kernel, mid-stage
    proc.wait()
    status = flywheel(ws, "status", "--json")
    snap = json.loads(status.stdout)
    assert snap["status"] == "crashed" and "retry" in snap["next_action"]
    assert snap["current"]["stage"] == "train"
    assert flywheel(ws, "retry").returncode == 0
    res = flywheel(ws, "--once")
    assert res.returncode == 0, res.stdout + res.stderr
    mine, reference = state(ws)["history"][-1], state(runs["ws"])["history"][-1]
    assert mine["val"] == reference["val"] and mine["test"] == reference["test"]
    assert mine["playout"] == reference["playout"]


def test_notebooks_by_hand_then_loop_records_without_redoing(runs, tmp_path) -> None:
    import papermill as pm

    from forge.flywheel.runner import ensure_kernel

    ws = copy_after_one(runs, tmp_path / "ws")
    for name in STAGE_FILES:  # as a person would: default parameters, resolved from state.yaml
        pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                            parameters={"root": str(ws), "progress": False}, kernel_name=ensure_kernel(),
                            progress_bar=False, cwd=str(ws))
    ckpt = ws / "runs" / "iter-0002" / "model.ckpt"
    trained_at = ckpt.stat().st_mtime_ns
    assert state(ws)["history"][-1]["iteration"] == 1  # stepping through by hand records nothing
    res = flywheel(ws, "--once")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ckpt.stat().st_mtime_ns == trained_at  # not trained again
    entry = state(ws)["history"][-1]
    assert entry["iteration"] == 2 and entry["val"] == state(runs["ws"])["history"][-1]["val"]


def test_offline_wandb_runs_are_recorded_and_sync_needs_a_key(runs, tmp_path) -> None:
    from forge.ui.panel import render

    ws = runs["ws"]
    for h in state(ws)["history"]:
        wb = h["wandb"]
        assert wb["mode"] == "offline" and wb["name"] == f"iter-{h['iteration']:04d}" and wb["group"] == "ci"
        assert (ws / wb["dir"]).is_dir() and list((ws / wb["dir"]).glob("*.wandb"))
        assert wb["sync"] == f"wandb sync {wb['dir']}"
        assert wb["sync"] in render(ws)  # the panel tells how to upload it
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {"HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", "sync"], cwd=ws, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "needs an API key" in res.stderr and "Traceback" not in res.stderr


def test_ctrl_c_leaves_a_consistent_state_and_resumes(runs, tmp_path) -> None:
    ws = copy_after_one(runs, tmp_path / "ws")
    proc = start_loop_until(ws, "train", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGINT)  # what Ctrl+C in the terminal sends the loop
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    st = state(ws)
    assert st["status"] == "ready" and st["current"]["stage"] is None
    assert st["current"]["stages_completed"] == ["generate", "tokenize"]
    assert "interrupted" in st["last_error"] and "resumes iteration 2 at train" in st["next_action"]
    res = flywheel(ws, "--once")
    assert res.returncode == 0, res.stdout + res.stderr
    assert state(ws)["history"][-1]["val"] == state(runs["ws"])["history"][-1]["val"]
