"""benchmarks/learning.py (time to quality) runs end to end on the tiny preset and reports its curve.

Not a timed test: a budget of a few seconds only has to yield a table, a JSON of the points and a
plot; what the figures are is the benchmark's business.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from forge.ml.module import DominoModule
from forge.ml.schedule import TrainClock

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "learning.py"


sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark's modes live in benchmarks/ttq
import learning  # noqa: E402
from ttq import common, compare, curve, fresh  # noqa: E402


def _run(*args: str) -> subprocess.CompletedProcess:
    """The benchmark as a real command (its exit status, its output)."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def in_process(capsys):
    """The benchmark's ``main`` in this process (no second start of torch and Lightning): its exit
    status and what it printed; torch's thread count and Lightning's log level, which a mode sets,
    are restored afterwards."""
    threads, lightning_log = torch.get_num_threads(), logging.getLogger("lightning.pytorch")
    level = lightning_log.level

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = learning.main(list(args))
        shown = capsys.readouterr()
        return code, shown.out, shown.err

    yield call
    torch.set_num_threads(threads)
    lightning_log.setLevel(level)


def test_budget_parsing_and_evaluation_times():
    assert [common.parse_budget(t) for t in ("90s", "10m", "1.5h", "2")] == [90, 600, 5400, 120]
    for bad in ("0", "-3m", "10 minutes", ""):
        with pytest.raises(Exception, match="budget"):
            common.parse_budget(bad)
    # 20 minutes: the fixed 5 and 15 minutes, and quarters of the budget, ending at the budget
    assert curve.eval_marks(1200, 4) == [300, 600, 900, 1200]
    assert curve.eval_marks(7200, 2) == [300, 900, 1800, 3600, 7200]
    assert curve.eval_marks(10, 3)[-1] == 10
    assert curve.eval_marks(100_000, 4, in_seconds=False) == [25_000, 50_000, 75_000, 100_000]


def test_clock_leaves_out_pauses_and_counts_the_budget_in_its_unit():
    clock = TrainClock(1000, "samples")
    clock.start()
    clock.samples = 250
    assert clock.fraction() == 0.25
    wall = TrainClock(3600, "wall")
    wall.start()
    wall.pause()
    paused = wall.seconds()
    sum(i * i for i in range(200_000))  # CPU and wall time pass while paused
    assert wall.seconds() == paused
    wall.resume()
    assert wall.seconds()[0] >= paused[0] and wall.seconds()[0] < 1
    with pytest.raises(ValueError, match="clock"):
        TrainClock(1, "steps")


def test_unknown_setting_is_refused_with_the_valid_keys():
    assert common.parse_settings(["dropout=0", "shuffle_hands=true", "q_weight=0.5"]) == (
        {"dropout": 0}, {"shuffle_hands": True, "q_weight": 0.5})
    with pytest.raises(ValueError, match="dropout"):
        common.parse_settings(["dropuot=0"])


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no training here
def test_a_schedule_laid_over_a_fraction_warms_up_then_anneals_to_the_floor():
    module = DominoModule.from_preset("tiny", lr=1e-3, warmup_frac=0.1, min_lr_ratio=0.05)
    progress = {"now": 0.0}
    module.lr_progress = lambda: progress["now"]  # a budget's fraction, or samples seen over a horizon
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = {}
    for frac in (0.01, 0.1, 0.5, 1.0, 1.5):
        progress["now"] = frac
        sched.step()
        lrs[frac] = opt.param_groups[0]["lr"]
    assert lrs[0.01] < 0.2e-3  # warming up
    assert lrs[0.1] == pytest.approx(1e-3, rel=1e-3)  # peak at the end of warm-up
    assert lrs[0.1] > lrs[0.5] > lrs[1.0] == pytest.approx(0.05e-3)  # cosine down to the floor at the budget
    assert lrs[1.5] == lrs[1.0]  # and flat beyond it


@pytest.mark.slow
def test_tiny_budget_prints_the_curve_and_saves_json_and_plot(tmp_path, in_process):
    out = tmp_path / "out"
    # 100 golden val states per shard (~3,000) scored at each point, not the default ~20,000
    run = _run("--preset", "tiny", "--budget", "3s", "--clock", "wall", "--deals", "2", "--points", "2",
               "--workers", "1", "--val-per-shard", "100", "--data", str(tmp_path / "data"), "--out", str(out),
               "--label", "ci", "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Q-gap" in run.stdout and "samples/s" in run.stdout and "load average" in run.stdout

    curve = json.loads((out / "curve.json").read_text())
    points = curve["points"]
    assert len(points) >= 1
    assert points[-1]["minutes"] * 60 >= 3  # the last point is at (or just past) the budget
    assert all(b["samples"] > a["samples"] for a, b in zip(points, points[1:]))
    for p in points:
        assert 0 <= p["q_gap"] <= 84 and 0 <= p["accuracy"] <= 1 and math.isfinite(p["train_loss"])
        # the reference catalog's five, the heads' errors in points (the tiny preset trains the Q head)
        assert 0 <= p["zero_regret"] <= 1 and 0 <= p["blunder_rate"] <= 1
        assert 0 < p["value_mae"] <= 84 and 0 < p["q_mae"] <= 84
    assert curve["setup"]["module"]["q_weight"] == 1.0  # the preset's head weights
    assert "reference Q-Val Shuffle (3.3M)" in run.stdout and "this run, last" in run.stdout
    assert curve["data"]["deals"] == 2 and curve["data"]["deals_made_now"] == 2
    assert curve["setup"]["parameters"] > 0 and 0 < curve["random_q_gap"] < 84
    table_rows = [line for line in run.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(table_rows) == len(points)  # one printed row per scored point
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "curve-metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved curve can be put side by side with another (here itself)
    code, shown, err = in_process("--compare", str(out / "curve.json"), str(out / "curve.json"),
                                  "--out", str(tmp_path / "cmp"))
    assert code == 0, err[-2000:]
    assert shown.count("ci") >= 2 and (tmp_path / "cmp" / "compare.png").exists()


def test_bad_request_is_one_line_not_a_traceback(tmp_path, in_process):
    threads = torch.get_num_threads()
    code, _, err = in_process("--preset", "tiny", "--budget", "2s", "--set", "nonsense=1", "--data", str(tmp_path))
    assert code == 2  # what the command exits with (sys.exit(main()))
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "nonsense" in err, err
    assert torch.get_num_threads() == threads and not any(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU recipe where there is no GPU")
def test_a_gpu_recipe_without_a_gpu_is_refused_before_anything_runs(tmp_path, in_process):
    with pytest.raises(SystemExit) as exit_:
        in_process("--preset", "standard", "--recipe", "gpu", "--data", str(tmp_path))
    assert exit_.value.code == 2 and not any(tmp_path.iterdir())
    assert learning.use_gpu("auto", "standard") is False and learning.use_gpu("cpu", "standard") is False


@pytest.mark.slow
def test_speed_mode_measures_each_variant_through_the_projects_training(tmp_path, in_process):
    out = tmp_path / "speed"
    code, shown, err = in_process("--preset", "tiny", "--speed", "base", "batch_size=32", "--speed-rounds", "2",
                                  "--speed-steps", "3", "--deals", "2", "--workers", "1",
                                  "--data", str(tmp_path / "data"), "--out", str(out))
    assert code == 0, err[-2000:]
    rows = json.loads((out / "curve.json").read_text())["variants"]
    assert [r["variant"] for r in rows] == ["base", "batch_size=32"]
    assert [r["batch_size"] for r in rows] == [64, 32] and rows[0]["vs_first"] == 1.0
    assert all(r["wall_samples_per_s"] > 0 and r["cpu_samples_per_s"] > 0 for r in rows)
    assert "CPU samples/s" in shown


@pytest.mark.slow
def test_fresh_deals_are_made_beside_training_and_the_window_keeps_the_latest(tmp_path):
    start = tmp_path / "first"  # stands for the deals made before the run
    made = fresh.Fresh("tiny", tmp_path / "fresh", [start], list(range(5, 400)), 64, "all", 0, window=1)
    with made:
        deadline = time.monotonic() + 300  # a marker, not a sleep: four deals announced
        while len(fresh.read_ready(made.folder)) < 4:
            assert made.process.is_alive() and time.monotonic() < deadline, "the producer made no deals"
            time.sleep(0.2)
        # it solves at a lower priority than training (which runs in this process)
        assert os.getpriority(os.PRIO_PROCESS, made.process.pid) >= os.getpriority(os.PRIO_PROCESS, 0) + fresh.NICE
        window = made.window()
        rows = fresh.read_ready(made.folder)  # read after: the producer goes on meanwhile
        on_disk = sorted(p.name for p in made.folder.glob("seed_*"))
    assert [r["seed"] for r in rows[:4]] == [5, 6, 7, 8]  # in the order given
    # one deal (the window's size), a recent one: the first deals left the window
    assert len(window) == 1 and window[0] in [Path(r["path"]) for r in rows[3:]]
    # disk stays bounded: the first deal was deleted once three were made (two windows kept)
    assert "seed_000005" not in on_disk and len(on_disk) <= fresh.KEEP_WINDOWS * 1 + 1
    assert all(r["cpu_s"] > 0 and r["states"] > 0 for r in rows)
    assert made.cpu_s is not None and made.cpu_s >= sum(r["cpu_s"] for r in rows)  # all it made, and more
    assert not made.folder.exists()  # removed at the end (no --keep-shards), what it made counted before
    assert made.final["deals"] >= len(rows) and made.final["states"] >= sum(r["states"] for r in rows)


@pytest.mark.slow
def test_fresh_mode_reports_the_share_of_cpu_spent_solving(tmp_path, in_process):
    out = tmp_path / "out"
    code, shown, err = in_process("--preset", "tiny", "--fresh", "--window", "4", "--samples", "8000", "--deals",
                                  "1", "--points", "2", "--workers", "1", "--val-per-shard", "50",
                                  "--data", str(tmp_path / "data"), "--out", str(out), "--quiet")
    assert code == 0, err[-2000:]
    result = json.loads((out / "curve.json").read_text())
    f = result["setup"]["fresh"]
    assert f["window"] == 4 and f["producer_cpu_s"] > 0 and 0 < f["solve_cpu_share"] < 1
    assert f["deals"] >= result["points"][-1]["deals"] - 1  # counted before its folder went
    assert f["windows"] and set(f["windows"]) <= {1, 2, 3, 4}  # never more than the window
    assert all(p["deals"] >= 1 and 0 <= p["solve_cpu_share"] < 1 for p in result["points"])
    assert "of the CPU the run used" in shown and not (out / "fresh").exists()


@pytest.mark.loop
def test_flywheel_mode_runs_a_real_loop_until_the_budget(tmp_path, in_process):
    out, ws = tmp_path / "fly", tmp_path / "ws"
    # the loop ends itself after one iteration, well within the budget (no timing in the test)
    run = _run("--flywheel", "tiny", "--budget", "10m", "--set", "stop_iterations=1", "--workers", "1",
               "--data", str(tmp_path / "data"), "--workspace", str(ws), "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((out / "curve.json").read_text())
    rows = result["iterations"]
    assert [r["iteration"] for r in rows] == [1] and result["loop_exit"] == 0
    assert all(0 < r["train_share"] < 1 and 0 <= r["q_gap"] <= 84 for r in rows)
    assert all(0 < r["value_mae"] <= 84 and 0 < r["q_mae"] <= 84 and 0 <= r["zero_regret"] <= 1 for r in rows)
    assert 0 < rows[0]["minutes"] * 60 <= result["loop_s"]
    assert rows[0]["samples"] > 0 and rows[0]["samples_per_s"] > 0  # what the train stage trained
    cpu = result["cpu"]  # the stages' kernels ran as children, the loop itself in this process
    assert cpu["stages_s"] > 0 and cpu["loop_process_s"] > 0 and 0 < cpu["loop_process_share"] < 1
    assert "train share" in run.stdout and not (ws / ".flywheel.stop").exists()
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the figure the README shows
    assert (out / "curve-metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, shown, err = in_process("--compare", str(out / "curve.json"), str(out / "curve.json"),
                                  "--out", str(tmp_path / "cmp"))
    assert code == 0, err[-2000:]
    assert (tmp_path / "cmp" / "compare.png").exists() and "last 3 mean" in shown


DOCS_TTQ = REPO / "docs" / "time-to-quality"


def test_flywheel_beside_the_trainer_compares_at_wall_clock_minutes(tmp_path, in_process):
    """Two committed runs of real benchmarks: the 2-hour trainer (points at 5, 15, 30 ... 120 minutes,
    no Q head) and the 16-deal flywheel's 30 minutes (iterations at 3.5, 5.8, ... 30.0 minutes)."""
    trainer, fly = DOCS_TTQ / "trainer-2h.json", DOCS_TTQ / "flywheel-quick-16deals-30m" / "curve.json"
    rows = compare.wall_rows(json.loads(fly.read_text()))
    # read by hand from the file: iteration 1 at 3.46 min, iteration 7 at 17.88, iteration 12 at 29.98
    assert compare.at_minutes(rows, 5, "q_gap") == pytest.approx(0.8273333)
    assert compare.at_minutes(rows, 20, "q_gap") == pytest.approx(0.2813333)  # iteration 8 (20.33) is later
    assert compare.at_minutes(rows, 30, "value_mae") == pytest.approx(6.374008)
    assert compare.at_minutes(rows, 3, "q_gap") is None  # nothing scored yet
    assert compare.at_minutes(rows, 45, "q_gap") is None  # the run ended at 30 minutes
    two_hours = json.loads((DOCS_TTQ / "flywheel-quick-16deals-2h" / "curve.json").read_text())
    last = two_hours["iterations"][-1]  # 118.7 minutes: the next iteration would not fit the budget
    end = compare.run_end(two_hours, compare.wall_rows(two_hours))
    assert end == 120 and compare.at_minutes(compare.wall_rows(two_hours), 120, "q_gap", end) == last["q_gap"]

    out = tmp_path / "cmp" / "wall.png"
    code, shown, err = in_process("--compare", str(trainer), str(fly), "--out", str(out.parent))
    assert code == 0, err[-2000:]
    table = compare.compare_wall_clock([json.loads(trainer.read_text()), json.loads(fly.read_text())])
    by_label = {label.rsplit(" (", 1)[0]: metrics for label, metrics in table.items()}
    marks = [m for m in compare.WALL_MARKS if m <= 120]
    assert by_label["trainer, 2 threads (2 h wall)"]["q_gap"][marks.index(60)] == pytest.approx(0.1940667)
    assert by_label["trainer, 2 threads (2 h wall)"]["q_mae"] == [None] * len(marks)  # no Q head then
    assert by_label["quick, 16 deals per iteration"]["q_gap"][marks.index(30)] == pytest.approx(0.2258667)
    assert by_label["quick, 16 deals per iteration"]["q_gap"][marks.index(45)] is None  # it ended at 30 minutes
    assert "AMD EPYC" in shown and "Intel(R) Xeon(R) Processor" in shown  # each run names its CPU
    assert "reference Q-Val Shuffle (3.3M)" in shown
    for png in (tmp_path / "cmp" / "compare.png", tmp_path / "cmp" / "compare-metrics.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_runs_of_one_label_on_one_cpu_are_two_rows_at_wall_clock():
    """The same command run twice (a repeat to measure noise) must not collapse into one row."""
    fly = json.loads((DOCS_TTQ / "flywheel-quick-16deals-30m" / "curve.json").read_text())
    later = json.loads(json.dumps(fly))
    for row in later["iterations"]:
        row["q_gap"] = row["q_gap"] / 2  # another run of it, told apart by its figures
    table = compare.compare_wall_clock([fly, later])
    assert len(table) == 2
    first, second = table.values()
    assert first["q_gap"][0] == pytest.approx(2 * second["q_gap"][0])
    assert list(table)[1] == list(table)[0] + " #2"


def test_a_cpu_clock_trainer_run_is_refused_beside_the_flywheel(in_process):
    cpu_run = DOCS_TTQ / "heads-2min" / "d4-q1-v0.5.json"  # scored on CPU minutes
    code, _, err = in_process("--compare", str(cpu_run), str(DOCS_TTQ / "flywheel-quick-16deals-30m" / "curve.json"))
    assert code == 2 and "CPU clock" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_plot_of_curves_from_different_cpus_names_each_cpu_in_the_legends_order():
    intel, amd = ({"machine": {"cpu": name}} for name in ("Intel(R) Xeon(R) Processor", "AMD EPYC"))
    assert common.cpu_note([amd, amd]) == "AMD EPYC"  # side by side on one machine: the CPU once
    assert common.cpu_note([intel, amd]) == ("different CPUs, in the legend's order: "
                                             "Intel(R) Xeon(R) Processor; AMD EPYC")
    assert common.cpu_note([{}]) == "CPU not recorded"
