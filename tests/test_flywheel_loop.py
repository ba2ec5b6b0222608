"""The flywheel end to end on the tiny preset: real papermill kernels, real shards, real training.

One workspace per test run runs two iterations (conftest's ``tiny_runs``); the scenarios start from
copies of it taken after iteration 1 and compare with its iteration 2. Those whose point is not how
generate and tokenize ran (the kill and signal scenarios, DDP, an edited config, the panel of a stage
run by hand) start from iteration 2 stepped through by hand in the stage notebooks (conftest's
``stage_notebooks_by_hand``, made once per test run), so that the loop's own work there is train on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.by_hand_notebooks import STAGE_FILES
from helpers.inprocess import by_hand_here, run_in_process
from helpers.loop import (
    FAKE_KEY,
    copy_after_one,
    edit_state,
    flywheel,
    result,
    start_loop_until,
    state,
    training_steps,
)
from helpers.numerics import assert_same_metrics
from helpers.processes import alive, descendants, wait_for

from forge.flywheel.stages import REGISTRY
from forge.flywheel.status import snapshot
from forge.ui.panel import render

pytestmark = pytest.mark.loop

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs(tiny_runs) -> dict:
    return tiny_runs


def test_two_iterations_end_to_end(runs) -> None:
    ws = runs["ws"]
    st = state(ws)
    assert st["version"] == 3 and st["status"] == "ready" and st["current"] is None
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
        assert h["config"] == st["config"]  # the configuration each iteration ran with
        assert set(h["fingerprints"]) == {"generate", "tokenize", "train", "evaluate"}
        for split in ("val", "test"):
            assert 0 <= h[split]["accuracy"] <= 1 and h[split]["q_gap"] >= 0 and "q_gap/notrump" in h[split]
            # the reference catalog's five, the value and Q heads' errors in points among them
            assert 0 <= h[split]["zero_regret"] <= 1 and 0 <= h[split]["blunder_rate"] <= 1
            assert 0 < h[split]["value_mae"] <= 2 * 42 and 0 < h[split]["q_mae"] <= 2 * 42
            assert 0 < h[split]["game_value_mae"] <= 2 * 42  # V read off the Q head, beside the value head's
        assert h["playout"]["playout_deals"] == 10
        assert set(h["timings"]) == {"generate", "tokenize", "train", "evaluate", "total", "span"}
        # the span is stamped to the second
        assert sum(h["timings"][s] for s in REGISTRY) <= h["timings"]["total"] <= h["timings"]["span"] + 1
        # CPU seconds and peak memory of each stage, the kernel's included: it imported torch (over 100 MB)
        # and trained (CPU time); a stage's CPU time is at most its seconds on every core of the machine
        assert set(h["usage"]) == set(REGISTRY)
        for stage, used in h["usage"].items():
            assert 0 < used["cpu_s"] <= h["timings"][stage] * os.cpu_count() + 1, (stage, used)
            assert used["peak_rss_mb"] > 100, (stage, used)
        for stage, name in zip(("generate", "tokenize", "train", "evaluate"), STAGE_FILES):
            nb = ws / h["notebooks"][stage]
            assert nb.name == f"{name}.ipynb" and nb.is_file() and nb.with_suffix(".html").is_file()
            assert h["provenance"][stage]["source"] == f"notebooks/{name}.ipynb"
    assert h2["delta_prev"]["q_gap"] == pytest.approx(h2["val"]["q_gap"] - h1["val"]["q_gap"], abs=1e-4)
    assert "iteration 1 done" in runs["log"] and "iteration 2 done" in runs["log"]
    assert result(ws, 2, "train")["kept_epoch"] in (1, 2) and "val Q-gap" in result(ws, 2, "train")["kept_reason"]


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
    for h in state(ws)["history"]:  # durations in minutes, from the same seconds the history records
        assert f"<td>{h['timings']['total'] / 60:.1f}</td>" in index
    for nb in (ws / "archive").glob("iter-*/*.ipynb"):
        text = nb.read_text()
        assert len(text) < 2_000_000, nb
        assert "it/s]" not in text and "Epoch 1:" not in text  # no per-step progress bars
        params = json.loads(text)["metadata"]["papermill"]["parameters"]
        assert params["iteration"] == int(nb.parent.name.split("-")[1])
        counts = [c.get("execution_count") for c in json.loads(text)["cells"] if c["cell_type"] == "code"
                  and c.get("execution_count")]
        assert counts and counts[0] == 1  # each notebook starts from a fresh kernel namespace
    assert not list((ws / "archive").rglob(".*.running.ipynb"))
    res = flywheel(ws, "archive")
    assert res.returncode == 0 and "iter-0002/ (4 stages)" in res.stdout


def test_no_secret_reaches_any_file(runs) -> None:
    ws = runs["ws"]
    leaks = [p for p in ws.rglob("*") if p.is_file() and p.suffix in {".ipynb", ".html", ".yaml", ".json", ".bak",
                                                                      ".log"}
             and FAKE_KEY in p.read_text(errors="ignore")]
    assert leaks == []


def _cell_number(notebook: str, marker: str) -> int:
    """The position (1-based, every cell counted) of the cell holding ``marker`` in a source notebook."""
    cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    return next(i for i, c in enumerate(cells, 1) if c["cell_type"] == "code" and marker in "".join(c["source"]))


def test_failing_stage_keeps_every_attempt_and_retry_resumes(runs, tmp_path) -> None:
    """The first attempt fails in the loop's real kernel: its executed notebook is kept with the traceback
    and the failing cell numbered as the user sees it. The second attempt and the run that resumes after
    the cause is gone run in this process (tests/helpers/inprocess.py): what counts there is the record
    (each attempt kept and numbered, the finished stages not redone), not the notebook; with the flywheel
    command's hooks (each archived notebook's HTML, the archive index)."""
    from forge.ui.loop_hooks import HOOKS

    ws = copy_after_one(runs, tmp_path / "ws")
    blocker = ws / "runs" / "iter-0002" / "train"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the training run folder must go")
    cell = _cell_number("03_train", "stages.train.run(")
    for attempt in (1, 2):
        if attempt == 1:
            assert flywheel(ws, "--once").returncode == 1
        else:
            code, said, _ = run_in_process(ws, **HOOKS)
            assert code == 1, said
        st = state(ws)
        assert st["status"] == "failed" and st["current"]["stages_completed"] == ["generate", "tokenize"]
        tried = st["current"]["attempts"][-1]
        assert (tried["number"], tried["stage"]) == (attempt, "train") and "Error" in st["last_error"]
        assert tried["notebook"] == f"archive/iter-{2:04d}/attempt-{attempt}/03_train.ipynb"
        if attempt == 1:
            assert st["last_error"].startswith(f"train: cell {cell}: ") and tried["cell"] == cell
            status = flywheel(ws, "status")
            assert "status: failed" in status.stdout and "retry" in status.stdout
            assert "attempt 1 failed in train" in status.stdout and f"cell {cell}" in status.stdout
            assert flywheel(ws, "--once").returncode == 2  # refuses to run over a failure
        assert flywheel(ws, "retry").returncode == 0
    # the real kernel's failed attempt is kept with its traceback (and its HTML), not overwritten by the next
    partial = json.loads((ws / "archive/iter-0002/attempt-1/03_train.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in partial["cells"] for o in c.get("outputs", []))
    assert (ws / "archive/iter-0002/attempt-1/03_train.html").is_file()
    assert (ws / "archive/iter-0002/attempt-2/03_train.ipynb").is_file()
    generated = (ws / "archive" / "iter-0002" / "01_generate.ipynb").stat().st_mtime_ns
    blocker.unlink()
    code, said, runner = run_in_process(ws, **HOOKS)
    assert code == 0, said
    out = "\n".join(said)
    assert "generate  already done" in out and "tokenize  already done" in out
    assert runner.ran == ["train", "evaluate"]
    assert (ws / "archive" / "iter-0002" / "01_generate.ipynb").stat().st_mtime_ns == generated
    entry = state(ws)["history"][-1]
    assert_same_metrics(entry["val"], state(runs["ws"])["history"][-1]["val"])
    assert [a["number"] for a in entry["attempts"]] == [1, 2]
    index = (ws / "archive" / "index.html").read_text()
    assert "iter-0002/attempt-1/03_train.html#papermill-error-cell" in index
    assert "iter-0002/attempt-2/03_train.html#papermill-error-cell" in index


def _generated_and_tokenized_by_hand(by_hand: dict, tmp_path: Path) -> Path:
    """Iteration 2 with its generate and tokenize stages stepped through by hand (conftest's
    ``stage_notebooks_by_hand``, a copy): the loop archives them and goes straight to train."""
    ws = tmp_path / "ws"
    shutil.copytree(by_hand["after_tokenize"], ws, symlinks=True)
    return ws


def test_killed_loop_leaves_no_process_and_recovers_to_the_same_result(runs, stage_notebooks_by_hand,
                                                                      tmp_path) -> None:
    ws = _generated_and_tokenized_by_hand(stage_notebooks_by_hand, tmp_path)
    edit_state(ws, lambda d: d["config"].update(epochs=500))  # the stage cannot end before the kill lands
    proc = start_loop_until(ws, training_steps(ws), "a training step", stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    children = descendants(proc.pid)
    assert children  # the loop's kernel at least
    proc.send_signal(signal.SIGKILL)  # the loop alone, mid-stage: its children must not outlive it
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in children), 60, f"the loop's processes {sorted(children)} to die with it")
    snap = json.loads(flywheel(ws, "status", "--json").stdout)
    assert snap["status"] == "crashed" and "retry" in snap["next_action"]
    assert snap["current"]["stage"] == "train"
    assert flywheel(ws, "retry").returncode == 0
    edit_state(ws, lambda d: d["config"].update(epochs=2))
    code, said, _ = run_in_process(ws)  # the recovery, in this process: what counts is the record
    assert code == 0, said
    mine, reference = state(ws)["history"][-1], state(runs["ws"])["history"][-1]
    assert_same_metrics(mine["val"], reference["val"])
    assert_same_metrics(mine["test"], reference["test"])
    assert mine["playout"] == reference["playout"]


@pytest.mark.parametrize("sig, code, how", [(signal.SIGINT, 130, "Ctrl+C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_and_sigterm_leave_a_consistent_state_and_resume(runs, stage_notebooks_by_hand, tmp_path, sig, code,
                                                               how) -> None:
    ws = _generated_and_tokenized_by_hand(stage_notebooks_by_hand, tmp_path)
    edit_state(ws, lambda d: d["config"].update(epochs=500))  # the stage cannot end before the signal lands
    proc = start_loop_until(ws, training_steps(ws), "a training step", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = snapshot(ws).running  # what the panel shows meanwhile: the stage's own progress
    assert run.active and (run.stage, run.by) == ("train", "loop")
    assert run.phase in ("training", "validating") and run.total > run.done >= 1 and run.detail
    assert "forge-progress" in render(ws) and "by the loop" in render(ws)
    proc.send_signal(sig)  # what Ctrl+C in a terminal, or systemd/Kubernetes, sends the loop
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, err
    st = state(ws)
    assert st["status"] == "ready" and st["current"]["stage"] is None
    assert st["current"]["stages_completed"] == ["generate", "tokenize"]
    assert f"interrupted ({how})" in st["last_error"] and "resumes iteration 2 at train" in st["next_action"]
    assert not list((ws / "archive").rglob(".*.running.ipynb"))
    if sig == signal.SIGINT:
        return  # the record is the same for both signals: resuming from it is shown once, for SIGTERM
    edit_state(ws, lambda d: d["config"].update(epochs=2))
    code, said, _ = run_in_process(ws)  # no `retry` needed (in this process: what counts is the record)
    assert code == 0, said
    assert_same_metrics(state(ws)["history"][-1]["val"], state(runs["ws"])["history"][-1]["val"])


def test_notebooks_by_hand_then_loop_records_without_redoing(runs, stage_notebooks_by_hand, tmp_path) -> None:
    """Stepped through by hand, then recorded by the loop: nothing is redone, and the iteration has its
    archive, marked by hand, with the stages' real durations. Where the kernel named its notebook (as
    JupyterLab does, in JPY_SESSION_NAME) that executed notebook is archived as it was saved; where it
    did not (plain papermill: the evaluate stage here), the loop shows the recorded result in a run of
    its own and says so. The notebooks ran once for the test run (tests/helpers/by_hand_notebooks.py,
    shared with tests/test_notebooks_headless.py); the loop records a copy of their workspace."""
    import nbformat

    by_hand_ws = Path(stage_notebooks_by_hand["ws"])
    executed = {name: Path(path) for name, path in stage_notebooks_by_hand["executed"].items()}
    # the panel's last word on generate: its own group's deals, counted on their own (its own 4 deals
    # only: replayed deals come from the token cache, not from generate)
    p = stage_notebooks_by_hand["after_generate"]
    assert (p["stage"], p["phase"], p["done"], p["total"]) == ("generate", "training deals", 4, 4)
    assert state(by_hand_ws)["history"][-1]["iteration"] == 1  # stepping through by hand records nothing
    assert not (by_hand_ws / "archive" / "iter-0002").exists()
    ws = tmp_path / "ws"
    shutil.copytree(by_hand_ws, ws, symlinks=True)  # mtimes kept: the checkpoint's says it is not retrained
    ckpt = ws / "runs" / "iter-0002" / "model.ckpt"
    trained_at = ckpt.stat().st_mtime_ns
    res = flywheel(ws, "--once")
    assert res.returncode == 0, res.stdout + res.stderr
    for stage in ("generate", "tokenize", "train", "evaluate"):
        assert f"{stage:9s} already done (by hand" in res.stdout
    assert ckpt.stat().st_mtime_ns == trained_at  # not trained again
    entry = state(ws)["history"][-1]
    assert entry["iteration"] == 2
    assert_same_metrics(entry["val"], state(runs["ws"])["history"][-1]["val"])

    # every stage archived, marked by hand, with the seconds its work took by hand
    assert entry["by_hand"] == ["generate", "tokenize", "train", "evaluate"]
    took = {stage: result(ws, 2, stage)["seconds"] for stage in entry["by_hand"]}
    assert {s: entry["timings"][s] for s in took} == took and all(v > 0 for v in took.values())
    assert entry["timings"]["total"] > sum(took.values())  # the by-hand work plus the loop's own time
    for stage, name in zip(("generate", "tokenize", "train", "evaluate"), STAGE_FILES):
        archived = ws / entry["notebooks"][stage]
        assert archived == ws / "archive" / "iter-0002" / f"{name}.ipynb" and archived.with_suffix(".html").is_file()
        nb = nbformat.read(archived, as_version=4)
        note = nb.cells[0].source
        assert "run by hand" in note and f"the stage's work took {took[stage]:.1f} s" in note
        assert "(../index.html)" in note
        if name == "04_evaluate":  # the kernel never named its notebook: the loop showed the result itself
            assert "executed by the loop, which showed the recorded result" in note
            assert any("already done" in o.get("text", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
        else:  # the person's own executed notebook, outputs and all
            assert f"run by hand in {executed[name]}" in note
            own = nbformat.read(executed[name], as_version=4)
            assert [(c.source, c.get("outputs")) for c in nb.cells[1:]] == [(c.source, c.get("outputs"))
                                                                           for c in own.cells]
    index = (ws / "archive" / "index.html").read_text()
    row = re.search(r"<tr[^>]*><td>2</td>.*?</tr>", index, re.S).group(0)
    assert row.count('class="forge-by-hand"') == 4 and f"<td>{entry['timings']['total'] / 60:.1f}</td>" in row
    archive = flywheel(ws, "archive")
    assert "generate, tokenize, train, evaluate" in archive.stdout


def test_an_edited_config_retrains_and_reevaluates(stage_notebooks_by_hand, tmp_path) -> None:
    """From an iteration stepped through by hand (a copy of conftest's ``stage_notebooks_by_hand``), in this
    process (tests/helpers/inprocess.py): what counts is which stages the loop runs again."""
    from forge.ui.text import format_text

    ws = tmp_path / "ws"
    shutil.copytree(stage_notebooks_by_hand["ws"], ws, symlinks=True)
    first_train, first_eval = result(ws, 2, "train"), result(ws, 2, "evaluate")
    edit_state(ws, lambda d: d["config"].update(train_seed=7))  # retrain with another seed
    status = format_text(snapshot(ws))  # what `flywheel status` prints
    assert "stale: train will run again (config.training.train_seed 0 -> 7)" in status
    assert "stale: evaluate will run again (train runs again first)" in status
    by_hand_here(ws, "train", "evaluate")
    again_train, again_eval = result(ws, 2, "train"), result(ws, 2, "evaluate")
    assert again_train["outputs"]["sha256"] != first_train["outputs"]["sha256"]
    assert again_eval["inputs"]["checkpoint"] == again_train["outputs"]["sha256"]
    assert again_eval["val"] != first_eval["val"]  # the evaluation follows the retrained model
    edit_state(ws, lambda d: d["config"].update(epochs=3))  # edited after training by hand
    code, said, runner = run_in_process(ws)
    assert code == 0, said
    out = "\n".join(said)
    assert "train     runs again: config.training.epochs 2 -> 3" in out
    assert "evaluate  runs again" in out and "generate  already done" in out
    assert runner.ran == ["train", "evaluate"]
    entry = state(ws)["history"][-1]
    assert entry["config"]["epochs"] == 3 and entry["config"]["train_seed"] == 7
    assert entry["fingerprints"]["train"] != again_train["fingerprint"]
    assert entry["val"] == result(ws, 2, "evaluate")["val"]


def test_diverged_training_never_enters_history(runs, tmp_path) -> None:
    ws = copy_after_one(runs, tmp_path / "ws")
    edit_state(ws, lambda d: d["config"].update(lr=1e12))  # finite, and far past stable
    code, said, _ = run_in_process(ws)  # in this process: what counts is the record, not the notebook
    assert code == 1, said
    st = state(ws)
    assert st["status"] == "failed" and st["last_error"].startswith("train: cell ")
    assert "TrainingDiverged" in st["last_error"] and len(st["history"]) == 1
    assert not (ws / "runs" / "iter-0002" / "model.ckpt").exists()


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


def test_training_shards_are_released_and_the_window_replays_their_cached_states(runs) -> None:
    ws = runs["ws"]
    assert state(ws)["config"]["keep_shards"] == "golden"
    assert not list((ws / "data" / "shards-h3").glob("*.parquet"))  # tokenized, recorded, deleted
    assert len(list((ws / "data" / "golden-h3").glob("*.parquet"))) == 40  # golden shards stay
    first = {k: v for k, v in result(ws, 1, "generate")["outputs"]["shards"].items() if "shards-h3" in k}
    second = {k: v for k, v in result(ws, 2, "generate")["outputs"]["shards"].items() if "shards-h3" in k}
    assert len(first) == len(second) == 4 and not set(first) & set(second)  # the window's deals are not solved again
    tok = result(ws, 2, "tokenize")
    assert tok["inputs"]["window"] == first  # read by the digests iteration 1 recorded
    assert tok["tokenized_shards"] == 4  # only its own deals; the window's states came from the cache
    manifest = json.loads((ws / "data" / "tokens" / "dataset" / "manifest.json").read_text())
    sources = {s["path"]: s["sha256"] for s in manifest["splits"]["train"]["sources"]}
    assert {str(ws / k): v for k, v in (first | second).items()} == sources
    snap = json.loads(flywheel(ws, "status", "--json").stdout)
    assert snap["disk"]["training shards"] < 10_000 < snap["disk"]["golden shards"]  # a verified-shard memo at most
    assert "deleted 4 training shard(s)" in runs["log"]


def test_a_window_deal_not_cached_at_a_new_sampling_is_solved_again(runs, tmp_path) -> None:
    ws = copy_after_one(runs, tmp_path / "ws")
    edit_state(ws, lambda d: d["config"].update(samples_per_shard=48))
    code, said, _ = run_in_process(ws)  # in this process: the stage's log is what it printed
    assert code == 0, said
    assert result(ws, 2, "tokenize")["tokenized_shards"] == 8  # its own 4, and the window's 4 at 48 samples
    log = (ws / "runs" / "iter-0002" / "logs" / "tokenize.log").read_text()
    assert "window: 4 deal(s) not in the token cache at this sampling; solving them again" in log
    manifest = json.loads((ws / "data" / "tokens" / "dataset" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["samples_per_shard"] == 48 and len(manifest["splits"]["train"]["sources"]) == 8


def test_prefetch_solves_the_next_iterations_deals_while_training(runs, tmp_path) -> None:
    from forge.oracle.verify import verify_shard

    ws = copy_after_one(runs, tmp_path / "ws")
    edit_state(ws, lambda d: d["config"].update(prefetch_next=True))
    code, said, _ = run_in_process(ws)  # in this process: the prefetch is a thread of the loop's process
    assert code == 0, said
    assert "  prefetch  solving the next iteration's deals 8..11 in the background" in said
    assert_same_metrics(state(ws)["history"][-1]["val"], state(runs["ws"])["history"][-1]["val"])  # same iteration 2
    for seed in range(8, 12):  # iteration 3's deals are ready, verified, where its generate stage looks
        shard = ws / "data" / "shards-h3" / f"seed_{seed:08d}_decl_{seed % 10}.parquet"
        assert shard.is_file() and verify_shard(shard) == []
    # and already tokenized: iteration 3's tokenize stage finds all its states in the cache
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    assert result(ws, 3, "generate")["train_written"] == 0 and result(ws, 3, "tokenize")["tokenized_shards"] == 0


def test_pretraining_streams_a_baseline_then_the_flywheel_fine_tunes_from_it(tmp_path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    res = flywheel(ws, "init", "--preset", "tiny", "--wandb-group", "pre", "--pretrain-seeds", "100:112",
                   "--pretrain-chunk", "4")
    assert res.returncode == 0 and "first seed 112" in res.stdout, res.stderr
    assert flywheel(ws, "status").stdout.startswith("status: ready   preset tiny   iteration 0")
    code, said, _ = run_in_process(ws)  # in this process: what counts is the stage's pretraining, not its notebook
    assert code == 0, said
    base = state(ws)["history"][0]
    assert base["iteration"] == 0 and base["started_from"] == "scratch" and base["seed_range"] == [100, 112]
    trained = result(ws, 0, "train")
    assert trained["lr"] == state(ws)["config"]["scratch_lr"]
    assert (trained["pretrain"]["chunks"], trained["pretrain"]["seeds"]) == (3, 12)
    # bounded disk: each chunk's shards, tokens and checkpoints were deleted before the next one
    assert not list((ws / "data" / "shards-h3").glob("*.parquet"))
    leftovers = {p.name for p in (ws / "runs" / "iter-0000" / "pretrain").iterdir()}
    assert leftovers == {"chunk-001", "chunk-002", "chunk-003"}
    assert not list((ws / "runs" / "iter-0000" / "pretrain").rglob("*.ckpt"))
    assert not list((ws / "runs" / "iter-0000" / "pretrain").rglob("*.npy"))
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    first = state(ws)["history"][1]
    assert first["iteration"] == 1 and first["started_from"] == "iteration 0" and first["seeds"][0] == 112
    assert result(ws, 1, "train")["lr"] == state(ws)["config"]["lr"]  # fine-tuning, as the runbook intends


def test_a_stage_run_by_hand_shows_in_the_panel(stage_notebooks_by_hand, tmp_path) -> None:
    ws = tmp_path / "ws"  # generate and tokenize done by hand (a copy of conftest's stage_notebooks_by_hand)
    shutil.copytree(stage_notebooks_by_hand["ws"], ws, symlinks=True)
    edit_state(ws, lambda d: d["config"].update(epochs=500))  # train runs again, long enough to be seen
    (ws / "train.py").write_text("from forge.flywheel import stages\nif __name__ == '__main__':\n"
                                 "    stages.train.run(stages.context('.', progress=False))\n")
    proc = subprocess.Popen([sys.executable, "train.py"], cwd=ws, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not training_steps(ws)():
            assert proc.poll() is None and time.time() < deadline, "training by hand never started"
            time.sleep(0.05)
        run = snapshot(ws).running
        assert run.active and run.by == "hand" and run.pid == proc.pid and run.stage == "train"
        assert "by hand" in render(ws)
    finally:
        proc.kill()
        proc.wait()
    assert snapshot(ws).running.active is False  # a dead process is not shown as running


REFERENCE = REPO.parent / "shared" / "fixtures" / "reference-checkpoint" / "reference-large.ckpt"


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"fixture {REFERENCE} not present")
def test_a_reference_trainer_checkpoint_is_a_baseline_the_flywheel_fine_tunes(tmp_path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    res = flywheel(ws, "init", "--preset", "tiny", "--model", "large", "--wandb-group", "ref", "--baseline",
                   str(REFERENCE))
    assert res.returncode == 0, res.stderr
    edit_state(ws, lambda d: d["config"].update(epochs=1, golden_val_seeds=[900], playout_deals=1))
    code, said, _ = run_in_process(ws)  # in this process: what counts is the baseline's weights, not the notebook
    assert code == 0, said
    entry = state(ws)["history"][-1]
    assert entry["started_from"] == "baseline"
    trained = result(ws, 1, "train")
    assert trained["resume"] == str(REFERENCE) and trained["lr"] == state(ws)["config"]["lr"]
    # its imported Q head is zeros; the fine-tune trains it (the preset's q_weight), so its error is reported
    assert 0 <= entry["val"]["accuracy"] <= 1 and entry["val"]["q_mae"] > 0


def test_a_flywheel_iteration_trains_with_ddp_on_two_processes(stage_notebooks_by_hand, tmp_path) -> None:
    """The train stage starts its training as child processes (a notebook kernel cannot be one process per
    device; tests/test_ddp.py covers those ranks on their own): here the loop runs in this process with
    its stages in-process (tests/helpers/inprocess.py), the DDP ranks real, and what the stage printed of
    them is what its archived notebook shows. It records an iteration stepped through by hand (a copy of
    conftest's ``stage_notebooks_by_hand``) whose hardware is then set to DDP: train and evaluate run again."""
    ws = tmp_path / "ws"
    shutil.copytree(stage_notebooks_by_hand["ws"], ws, symlinks=True)
    runs_before = set((ws / "runs" / "iter-0002" / "train" / "domino").glob("version_*"))
    edit_state(ws, lambda d: d["config"].update(devices=2, strategy="ddp", accelerator="cpu"))
    code, said, runner = run_in_process(ws)
    assert code == 0, said
    assert runner.ran == ["train", "evaluate"]
    trained = result(ws, 2, "train")
    assert trained["kept_epoch"] in (1, 2) and (ws / trained["checkpoint"]).is_file()
    versions = set((ws / "runs" / "iter-0002" / "train" / "domino").glob("version_*")) - runs_before
    assert len(versions) == 1  # rank 0 alone wrote the run
    executed = (ws / "archive" / "iter-0002" / "03_train.ipynb").read_text()
    assert "GLOBAL_RANK: 1" in executed or "world_size=2" in executed or "Initializing distributed" in executed
    entry = state(ws)["history"][-1]
    assert entry["iteration"] == 2 and 0 <= entry["val"]["accuracy"] <= 1
