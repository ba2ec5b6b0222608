"""Flywheel benchmark: per-stage wall time, the loop's own overhead, and whether it grows.

1. quick preset: iteration 1 (which also makes the golden sets on first use), then iteration 2
   is timed as its own ``--once`` command: the wall time of each stage, and the loop's overhead =
   wall time minus the work each stage reports doing inside its notebook (its own libraries'
   import included), i.e. the kernel start, papermill, the status panel, HTML export and state
   writes, plus the command's own start, as a share of the iteration (bar: <= 10%). Then
   iterations 3 and 4 run in one ``flywheel run`` loop, as it runs headless, and iteration 4's
   overhead is printed the same way (the process's start and imports are paid once per loop).
2. tiny preset, 5 iterations: the non-training time of each (everything but the train stage;
   bar: iteration 5 is not slower than iteration 1).

    python benchmarks/flywheel.py [--skip-quick] [--skip-tiny] [--workdir DIR]

Workspaces live under ``--workdir`` (default data/bench-flywheel, git-ignored) and are kept, so
a second run of the quick part reuses its golden sets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

STAGES = ("generate", "tokenize", "train", "evaluate")


def cli(ws: Path, *args: str) -> float:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=ws, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"flywheel {' '.join(args)} failed in {ws}:\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - start


def fresh(ws: Path, preset: str) -> None:
    """A new flywheel in ``ws`` that keeps earlier golden sets but trains on seeds never seen there.

    Shards and tokens are deterministic and cached, so reused seeds would make a stage's work
    vanish from the measurement.
    """
    shutil.rmtree(ws / "archive", ignore_errors=True)
    shutil.rmtree(ws / "runs", ignore_errors=True)
    ws.mkdir(parents=True, exist_ok=True)
    start = 10_000 + 20 * int(time.time() % 100_000)
    cli(ws, "init", "--preset", preset, "--wandb-group", f"bench-{preset}", "--start-seed", str(start), "--force")


def entry(ws: Path, iteration: int) -> dict:
    hist = yaml.safe_load((ws / "state.yaml").read_text())["history"]
    return next(h for h in hist if h["iteration"] == iteration)


def work_seconds(ws: Path, iteration: int, stage: str) -> float:
    path = ws / "runs" / f"iter-{iteration:04d}" / "results" / f"{stage}.json"
    return float(json.loads(path.read_text()).get("seconds", 0.0))


def quick(root: Path) -> None:
    ws = root / "quick"
    fresh(ws, "quick")
    t1 = cli(ws, "--once", "--no-wandb")
    print(f"quick iteration 1 (makes the golden sets): {t1:.1f}s")
    wall = cli(ws, "--once", "--no-wandb")
    h = entry(ws, 2)
    print(f"\nquick iteration 2: {wall:.1f}s for the whole command")
    print(f"{'stage':10s} {'wall s':>8s} {'work s':>8s} {'overhead s':>11s}")
    overhead = 0.0
    for stage in STAGES:
        w, k = h["timings"][stage], work_seconds(ws, 2, stage)
        overhead += w - k
        print(f"{stage:10s} {w:8.1f} {k:8.1f} {w - k:11.1f}")
    overhead += wall - sum(h["timings"][s] for s in STAGES)  # process start, lock, state, index
    print(f"loop overhead: {overhead:.1f}s = {100 * overhead / wall:.1f}% of the iteration (bar: <= 10%)")

    from dataclasses import replace

    from forge.flywheel.state import StateStore

    with StateStore(ws).edit() as st:
        st.config = replace(st.config, stop_iterations=4)
    cli(ws, "--no-wandb")  # no --once: the loop runs until stop_iterations
    h = entry(ws, 4)
    work = {stage: work_seconds(ws, 4, stage) for stage in STAGES}
    total = h["timings"]["total"]
    overhead = total - sum(work.values())
    print(f"\nrunning loop, iteration 4: {total:.1f}s; stage work "
          + ", ".join(f"{k} {v:.1f}s" for k, v in work.items()))
    print(f"loop overhead: {overhead:.1f}s = {100 * overhead / total:.1f}% of the iteration (bar: <= 10%)")


def tiny(root: Path, iterations: int = 5) -> None:
    ws = root / "tiny"
    shutil.rmtree(ws, ignore_errors=True)
    fresh(ws, "tiny")
    print(f"\ntiny: {iterations} iterations")
    print(f"{'iter':>4s} {'total s':>8s} {'train s':>8s} {'non-train s':>12s} {'tokenize s':>11s}")
    rows = []
    for i in range(1, iterations + 1):
        wall = cli(ws, "--once", "--no-wandb")
        h = entry(ws, i)
        non_train = wall - h["timings"]["train"]
        rows.append(non_train)
        print(f"{i:4d} {wall:8.1f} {h['timings']['train']:8.1f} {non_train:12.1f} {h['timings']['tokenize']:11.1f}")
    steady = rows[1:]
    print(f"non-training time, iteration 1 -> {iterations}: {rows[0]:.1f}s -> {rows[-1]:.1f}s "
          f"(iterations 2..{iterations}: min {min(steady):.1f}s, max {max(steady):.1f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("data/bench-flywheel"))
    parser.add_argument("--skip-quick", action="store_true")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    root = args.workdir.resolve()
    if not args.skip_quick:
        quick(root)
    if not args.skip_tiny:
        tiny(root, args.iterations)


if __name__ == "__main__":
    main()
