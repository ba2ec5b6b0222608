"""Flywheel mode: a real loop of a preset, in a fresh workspace, run in this process through the
engine's own :func:`forge.flywheel.loop.run_loop` until the budget is spent (then it is asked to
stop after its current stage; iterations recorded by then count). Golden shards are made
beforehand (timed apart) and linked in. It reports val Q-gap per iteration against the loop's
wall-clock, the share of it the train stage took, the samples each iteration trained (and at what
rate: the prefetch solves the next deals beside it), and where the run's CPU went: the loop's own
process (mostly the prefetch, solving and tokenizing the next iteration's deals) against the stages'
kernels and workers (training above all)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from forge.flywheel.config import config_from_dict, load_preset
from forge.flywheel.loop import request_stop, run_loop
from forge.flywheel.state import load_state, new_state, save_state
from forge.oracle.generate import generate
from forge.ui.loop_hooks import HOOKS
from ttq.common import (
    FLYWHEEL_GOALS,
    METRICS,
    children_cpu,
    figure,
    five_metrics_figure,
    flywheel_settings,
    load_average,
    machine,
    metrics_path,
    reference_lines,
    save_figure,
    text_table,
)


def _stop_after(root: Path, seconds: float, done: threading.Event) -> None:
    """Ask the loop to stop once ``seconds`` have passed (it finishes the stage under way)."""
    if not done.wait(seconds):
        try:
            request_stop(root)
        except Exception as exc:  # noqa: BLE001 - the loop may have ended on its own meanwhile
            print(f"  could not ask the loop to stop: {exc}", file=sys.stderr)


def _minutes_since(start: datetime, stamp: str | None) -> float | None:
    return (datetime.fromisoformat(stamp) - start).total_seconds() / 60 if stamp else None


def run_flywheel(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_preset(args.flywheel)
    data = Path(args.data).resolve()
    golden = data / f"golden-h{cfg.data.hand_size}"
    start = time.perf_counter()
    golden_sets = cfg.evaluation
    for _ in generate([(s, d) for s in sorted(golden_sets.golden_seeds) for d in golden_sets.golden_decls], golden,
                      hand_size=cfg.data.hand_size, workers=args.workers, progress=False):
        pass
    golden_s = time.perf_counter() - start
    ws = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="forge-learning-"))
    (ws / "data").mkdir(parents=True, exist_ok=True)
    link = ws / "data" / golden.name
    if not link.exists():
        link.symlink_to(golden, target_is_directory=True)
    updates = flywheel_settings(args.flywheel, args.set)
    config = config_from_dict({**cfg.to_dict(), **updates})
    save_state(ws, new_state(config, "learning", wandb_mode="disabled"))
    load_before = load_average()
    started = datetime.now().astimezone()
    done = threading.Event()
    watcher = threading.Thread(target=_stop_after, args=(ws, args.budget, done), daemon=True)
    watcher.start()
    say = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    own_cpu, stages_cpu = time.process_time(), children_cpu()
    try:
        code = run_loop(ws, no_wandb=True, say=say, **HOOKS)  # as the flywheel command runs it: HTML archived
    finally:
        done.set()
    wall = time.perf_counter() - start - golden_s
    own_cpu, stages_cpu = time.process_time() - own_cpu, children_cpu() - stages_cpu
    rows = []
    for entry in load_state(ws).history:
        val = entry.val or {}
        total = entry.timings.get("total")
        rows.append({
            "iteration": entry.iteration, "seeds": entry.total_seeds, "seconds": total,
            "minutes": _minutes_since(started, entry.finished_at), **{m: val.get(m) for m in METRICS},
            "train_share": entry.timings.get("train", 0) / total if total else None,
            "timings": dict(entry.timings), **_trained(ws, entry.iteration),
        })
    if not args.workspace:
        shutil.rmtree(ws, ignore_errors=True)
    return {"label": args.label, "started": started.isoformat(timespec="seconds"), "command": " ".join(sys.argv),
            "mode": "flywheel", "preset": args.flywheel, "settings": updates, "machine": machine(),
            "load_before": load_before, "load_after": load_average(), "budget_s": args.budget,
            "golden_s": round(golden_s, 1), "loop_s": round(wall, 1), "loop_exit": code,
            "cpu": {"loop_process_s": round(own_cpu, 1), "stages_s": round(stages_cpu, 1),
                    "loop_process_share": round(own_cpu / (own_cpu + stages_cpu), 4)
                    if own_cpu + stages_cpu > 0 else None},
            "iterations": rows}


def _trained(ws: Path, iteration: int) -> dict[str, Any]:
    """The samples an iteration's train stage trained and their rate, from its stage result."""
    try:
        res = json.loads((ws / "runs" / f"iter-{iteration:04d}" / "results" / "train.json").read_text())
        samples, seconds = int(res["samples"]), float(res["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"samples": None, "samples_per_s": None}
    return {"samples": samples, "samples_per_s": samples / seconds if seconds > 0 else None}


def flywheel_table(rows: list[dict[str, Any]]) -> str:
    return text_table([("iter", "iteration", ">4"), ("seeds", "seeds", ">6"), ("iter s", "seconds", "7.0f"),
                       ("cum. min", "minutes", "9.2f"), ("Q-gap", "q_gap", "7.3f"),
                       ("decisions", "decision_q_gap", "10.3f"), ("accuracy", "accuracy", "9.4f"),
                       ("0-regret", "zero_regret", "9.4f"), ("blunders", "blunder_rate", "9.4f"),
                       ("value MAE", "value_mae", "10.2f"), ("Q-MAE", "q_mae", "6.2f"),
                       ("train share", "train_share", "12.0%"), ("samples", "samples", ">9,"),
                       ("samples/s", "samples_per_s", "10,.0f")], rows)


def goals(rows: list[dict[str, Any]], budget_s: float) -> list[str]:
    """Where the run stands against the flywheel goals within its budget: the Q-gap recorded last
    before each mark."""
    lines = []
    for minutes, target in FLYWHEEL_GOALS:
        if minutes * 60 > budget_s:
            continue
        before = [r for r in rows if r["minutes"] is not None and r["minutes"] <= minutes]
        if before:
            gap = before[-1]["q_gap"]
            verdict = "met" if gap <= target else "not met"
            lines.append(f"at {minutes} min: val Q-gap {gap:.3f} (goal <= {target}: {verdict})")
    shares = [r["train_share"] for r in rows[1:] if r["train_share"] is not None]
    if shares:
        lines.append(f"train stage share of an iteration: median {statistics.median(shares):.0%} (goal >= 70%)")
    return lines


def plot(curves: list[dict[str, Any]], path: Path) -> None:
    """Val Q-gap of each recorded iteration against the loop's wall-clock (left), with the goals
    as marks, and the share of each iteration the train stage took (right)."""
    fig, (gap, share) = figure(gridspec_kw={"width_ratios": [2, 1]})
    for c in curves:
        rows = [r for r in c["iterations"] if r["minutes"] is not None and r["q_gap"] is not None]
        label = c.get("label") or c.get("started", "")
        gap.plot([r["minutes"] for r in rows], [r["q_gap"] for r in rows], marker="o", ms=3, label=label)
        shares = [r for r in rows if r["train_share"] is not None]
        share.plot([r["iteration"] for r in shares], [100 * r["train_share"] for r in shares], marker="o", ms=3,
                   label=label)
    for minutes, target in FLYWHEEL_GOALS:
        gap.plot([minutes], [target], marker="v", color="green", ms=9, ls="none")
        gap.annotate(f"goal <= {target} at {minutes} min", (minutes, target), textcoords="offset points",
                     xytext=(4, 6), fontsize=8, color="green")
    share.axhline(70, color="green", ls="--", lw=1, label="goal >= 70%")
    gap.set_xlabel("loop wall-clock minutes (golden sets made beforehand)")
    gap.set_ylabel("golden val Q-gap (points lost per move)")
    share.set_xlabel("iteration")
    share.set_ylabel("train stage, % of the iteration")
    share.set_ylim(0, 100)
    save_figure(fig, (gap, share), curves, f"Flywheel from scratch, preset {curves[0].get('preset')}", path)
    five_metrics_figure(curves, "iterations", "minutes", "loop wall-clock minutes", metrics_path(path),
                        f"The reference catalog's metrics, flywheel preset {curves[0].get('preset')}")


def report(result: dict[str, Any]) -> None:
    print(f"flywheel preset {result['preset']}: golden sets ready in {result['golden_s']} s (not counted)")
    print(flywheel_table(result["iterations"]))
    print("\n".join(reference_lines(result["iterations"])))
    for line in goals(result["iterations"], result["budget_s"]):
        print(line)
    cpu = result.get("cpu")
    if cpu and cpu["loop_process_share"] is not None:
        print(f"CPU: the loop's own process {cpu['loop_process_s']} s (mostly the prefetch: solving and tokenizing "
              f"the next deals), the stages {cpu['stages_s']} s: {cpu['loop_process_share']:.0%} in the loop process")
