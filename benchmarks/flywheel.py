"""Flywheel benchmark: the loop's own overhead per iteration, whether it grows, and the prefetch gain.

Overhead is an iteration's wall time minus the work its four stages report (each result's
``seconds``: the stage function's own run, its libraries' import included). It is split into
where it goes: *notebook* (the stage notebooks' other cells: imports, panel, views; papermill's
per-cell durations minus the work), *engine* (kernel start or reset, papermill, HTML export:
each stage's wall time minus its cells) and *outside* (everything between stages: the process
start and imports for ``--once``, the lock, state writes, fingerprint checks).

Sections (``--sections``, default all):

overhead  For each preset in ``--presets`` a fresh workspace: iteration 1 warms it up (it checks
          the golden sets and tokenizes them), iteration 2 runs as its own ``--once`` command (wall
          time = the whole command), iterations 3 and 4 inside one running ``flywheel`` loop (wall
          time = the iteration as the loop records it; the loop's start is printed apart). The
          standard preset runs cut down to finish in minutes (STANDARD_CUT: less data, same
          notebooks, model and golden sets); the overhead does not depend on the amount of data.
tiny      The tiny preset, ``--iterations`` ``--once`` commands: non-training time per iteration
          (bar: the last is not slower than the first).
state     The bookkeeping against the history's length (benchmarks/bookkeeping.py): histories of
          ``--state-sizes`` entries grown from the recorded fixture; a heartbeat, an iteration's own
          bookkeeping, and the first render of status, the panel, the archive index and 06_compare.
prefetch  The quick preset in two fresh workspaces, ``prefetch_next`` false and true: a warm-up
          iteration each, then ``--prefetch-iters`` ``--once`` iterations each, interleaved
          (off, on, off, on, ...) so that the machine's load falls on both alike. Prints each
          iteration's wall time and generate stage time, the gain of the medians, and an estimate
          for a cluster, where Ray workers solve the next deals without slowing training.

Every workspace trains on seeds no other has used (nothing comes from a cache by accident); all
share the golden shards and the content-keyed token cache through hard links to ``SHARED``
under ``--workdir`` (default data/bench-flywheel, git-ignored), filled by the first workspace
that makes them. The load average is printed with every figure: the machine may be shared.

    python benchmarks/flywheel.py [--sections overhead,tiny,state,prefetch] [--presets quick,standard]
        [--iterations 5] [--state-sizes 10,10000] [--prefetch-iters 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.flywheel.paths import Workspace
from forge.flywheel.records import HistoryEntry
from forge.flywheel.stages import REGISTRY
from forge.flywheel.state import StateStore

#: The standard preset cut down to minutes per iteration on 2 cores (an iteration takes an hour
#: otherwise). Kept as the preset has them: model (large), notebooks, golden seeds and declarations,
#: batch size, play-out deals.
STANDARD_CUT = {"seeds_per_iter": 1, "samples_per_shard": 2000, "golden_samples_per_shard": 200, "epochs": 1,
                "val_samples": 1000}
SHARED = "shared"  # under --workdir: golden shards and token cache entries, hard-linked into every workspace


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------------------------- workspaces


def cli(ws: Path, *args: str) -> float:
    """Run ``python -m forge.cli.flywheel ARGS`` in ``ws``; its wall time."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=ws, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"flywheel {' '.join(args)} failed in {ws}:\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - start


def _shared_dirs(ws: Workspace, hand_size: int) -> list[Path]:
    return [ws.golden(hand_size), ws.token_cache]


def link_tree(src: Path, dst: Path) -> int:
    """Hard-link every file under ``src`` missing from ``dst`` (copy across file systems). Shards and
    cache entries are replaced by rename, never written in place, so a link cannot be corrupted."""
    linked = 0
    for path in src.rglob("*") if src.is_dir() else []:
        target = dst / path.relative_to(src)
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".json" or target.exists():
            continue  # the identities/verify memos are keyed by path: each workspace keeps its own
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        linked += 1
    return linked


def fresh(root: Path, name: str, preset: str, index: int, **config: Any) -> Path:
    """A new flywheel in ``root/name`` on seeds of its own, with the shared golden sets and token cache."""
    ws = root / name
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    # Seeds never trained on before here: shards and tokens are deterministic and cached, so reused
    # seeds would make a stage's work vanish from the measurement.
    start = 10_000 + 10_000 * (int(time.time() // 60) % 9_000) + 1_000 * index
    cli(ws, "init", "--preset", preset, "--wandb-group", f"bench-{name}", "--start-seed", str(start), "--force")
    store = StateStore(ws)
    if config:
        with store.edit() as st:
            st.config = st.config.updated(config)
    shared, here = Workspace.at(root / SHARED), Workspace.at(ws)
    hand = store.state.config.data.hand_size
    for src, dst in zip(_shared_dirs(shared, hand), _shared_dirs(here, hand), strict=True):
        link_tree(src, dst)
    return ws


def collect(root: Path, ws: Path) -> None:
    """Share what a workspace made (golden shards, token cache entries) with those made after it."""
    shared, here = Workspace.at(root / SHARED), Workspace.at(ws)
    hand = StateStore(ws).state.config.data.hand_size
    for src, dst in zip(_shared_dirs(here, hand), _shared_dirs(shared, hand), strict=True):
        link_tree(src, dst)


def entry(ws: Path, iteration: int) -> HistoryEntry:
    found = StateStore(ws).state.entry(iteration)
    if found is None:
        raise SystemExit(f"{ws}: iteration {iteration} is not in the history")
    return found


# ---------------------------------------------------------------------------------------------- one iteration


@dataclass(frozen=True)
class Iteration:
    """Where one iteration's wall time went (seconds)."""

    wall: float  # the --once command, or the iteration as a running loop records it
    work: float  # the stages' reported work
    stages: float  # the stages' wall times, as the loop measured them
    cells: float  # time in the stage notebooks' cells (papermill's per-cell durations)
    by_stage: dict[str, tuple[float, float]]  # stage -> (wall, work)
    load: str

    @property
    def overhead(self) -> float:
        return self.wall - self.work

    @property
    def share(self) -> float:
        return self.overhead / self.wall

    @property
    def notebook(self) -> float:
        return self.cells - self.work

    @property
    def engine(self) -> float:
        return self.stages - self.cells

    @property
    def outside(self) -> float:
        return self.wall - self.stages


def cell_seconds(notebook: Path) -> float:
    nb = json.loads(notebook.read_text())
    return sum(float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
               for c in nb["cells"] if c.get("cell_type") == "code")


def measure(ws: Path, iteration: int, wall: float | None = None) -> Iteration:
    """An iteration's figures from its history entry, stage results and archived notebooks."""
    h, here = entry(ws, iteration), Workspace.at(ws)
    by_stage, cells = {}, 0.0
    for stage in REGISTRY:
        if stage not in h.timings:  # reused, not run in this iteration: no work, no notebook
            continue
        result = REGISTRY[stage].read(here, iteration)
        by_stage[stage] = (h.timings[stage], float(result.seconds or 0.0) if result is not None else 0.0)
        cells += cell_seconds(ws / h.notebooks[stage])
    return Iteration(wall=h.timings["total"] if wall is None else wall, work=sum(w for _, w in by_stage.values()),
                     stages=sum(s for s, _ in by_stage.values()), cells=cells, by_stage=by_stage, load=load())


def print_overhead_table(rows: list[tuple[str, str, Iteration]]) -> None:
    print(f"\n{'preset':9s} {'mode':16s} {'wall s':>7s} {'work s':>7s} {'overhead s':>10s} {'share':>6s}   "
          f"{'notebook':>8s} {'engine':>7s} {'outside':>7s} {'loop own':>8s}   load (1, 5, 15 min)")
    for preset, mode, it in rows:
        own = (it.engine + it.outside) / it.wall
        print(f"{preset:9s} {mode:16s} {it.wall:7.1f} {it.work:7.1f} {it.overhead:10.1f} {100 * it.share:5.1f}%   "
              f"{it.notebook:8.1f} {it.engine:7.1f} {it.outside:7.1f} {100 * own:7.1f}%   {it.load[5:]}")
    print("notebook: stage notebooks' cells beyond the work (imports, panel, views); engine: kernel start/reset,\n"
          "papermill, HTML export; outside: between stages (process start for --once, lock, state, fingerprints);\n"
          "loop own: engine + outside, as a share of the iteration")


def slowest_cells(ws: Path, iteration: int, top: int = 3) -> str:
    """The slowest cells of an iteration's stage notebooks other than the stage call itself."""
    h, cells = entry(ws, iteration), []
    for stage, rel in h.notebooks.items():
        nb = json.loads((ws / rel).read_text())
        for cell in nb["cells"]:
            source = "".join(cell.get("source", ""))
            if cell.get("cell_type") == "code" and f"stages.{stage}(" not in source:
                first = source.strip().splitlines()[0] if source.strip() else ""
                cells.append((float(cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0),
                              f"{Path(rel).stem}: {first[:50]}"))
    return "; ".join(f"{what} {sec:.1f}s" for sec, what in sorted(cells, reverse=True)[:top])


def print_stages(label: str, it: Iteration) -> None:
    print(f"  {label}: " + ", ".join(f"{s} {wall:.1f}s (work {work:.1f}s)" for s, (wall, work) in it.by_stage.items()))


# ---------------------------------------------------------------------------------------------- sections


def overhead(root: Path, presets: list[str]) -> list[tuple[str, str, Iteration]]:
    rows = []
    for index, preset in enumerate(presets):
        cut = STANDARD_CUT if preset == "standard" else {}
        ws = fresh(root, preset, preset, index, **cut)
        if cut:
            print(f"\n{preset}: cut down to " + ", ".join(f"{k} {v}" for k, v in cut.items()))
        t1 = cli(ws, "--once", "--no-wandb")
        collect(root, ws)
        print(f"{preset} iteration 1 (warm-up: golden sets checked and tokenized): {t1:.1f}s  [{load()}]")
        wall = cli(ws, "--once", "--no-wandb")
        once = measure(ws, 2, wall)
        print_stages(f"{preset} iteration 2 (--once)", once)
        rows.append((preset, "--once (iter 2)", once))
        with StateStore(ws).edit() as st:
            st.config = st.config.updated({"stop_iterations": 4})
        loop_wall = cli(ws, "--no-wandb")  # no --once: one loop runs iterations 3 and 4
        its = [measure(ws, i) for i in (3, 4)]
        for i, it in zip((3, 4), its, strict=True):
            print_stages(f"{preset} iteration {i} (running loop)", it)
            rows.append((preset, f"loop (iter {i})", it))
        print(f"  {preset} iteration 4, slowest cells besides the stage calls: {slowest_cells(ws, 4)}")
        print(f"  {preset} loop command: {loop_wall:.1f}s, of which {loop_wall - sum(i.wall for i in its):.1f}s "
              "outside its iterations (process start, kernel launch, imports, shutdown; once per loop)")
    print_overhead_table(rows)
    return rows


def tiny(root: Path, iterations: int) -> None:
    ws = fresh(root, "tiny", "tiny", 9)
    print(f"\ntiny: {iterations} iterations, each a --once command")
    print(f"{'iter':>4s} {'wall s':>7s} {'train s':>8s} {'non-train s':>12s} {'overhead s':>11s}   load")
    non_train = []
    for i in range(1, iterations + 1):
        it = measure(ws, i, cli(ws, "--once", "--no-wandb"))
        non_train.append(it.wall - it.by_stage["train"][0])
        print(f"{i:4d} {it.wall:7.1f} {it.by_stage['train'][0]:8.1f} {non_train[-1]:12.1f} {it.overhead:11.1f}   "
              f"{it.load[5:]}")
    steady = non_train[1:] or non_train
    print(f"non-training time, iteration 1 -> {iterations}: {non_train[0]:.1f}s -> {non_train[-1]:.1f}s "
          f"(iterations 2..{iterations}: min {min(steady):.1f}s, max {max(steady):.1f}s; bar: last <= first)")


def state_io(root: Path, sizes: list[int]) -> None:
    """The bookkeeping against the history's length: benchmarks/bookkeeping.py."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bookkeeping

    bookkeeping.run(root, sizes, load)


def prefetch(root: Path, iterations: int, preset: str) -> None:
    modes = {False: "prefetch-off", True: "prefetch-on"}
    # The same seeds in both (each workspace solves and tokenizes its own): the same deals, of very
    # different sizes from one seed to the next, are solved with and without prefetch.
    spaces = {on: fresh(root, name, preset, 5, prefetch_next=on) for on, name in modes.items()}
    print(f"\nprefetch: {preset} preset, a warm-up iteration then {iterations} measured, interleaved")
    for on, ws in spaces.items():
        t = cli(ws, "--once", "--no-wandb")
        collect(root, ws)
        print(f"  {modes[on]} iteration 1 (warm-up): {t:.1f}s  [{load()}]")
    runs: dict[bool, list[Iteration]] = {False: [], True: []}
    print(f"{'mode':13s} {'iter':>4s} {'wall s':>7s} {'generate s':>10s} {'(work)':>7s} {'train s':>8s} "
          f"{'evaluate s':>10s}   load")
    for i in range(2, iterations + 2):
        for on in (False, True) if i % 2 else (True, False):  # alternate which goes first
            it = measure(spaces[on], i, cli(spaces[on], "--once", "--no-wandb"))
            runs[on].append(it)
            gen, work = it.by_stage["generate"]
            print(f"{modes[on]:13s} {i:4d} {it.wall:7.1f} {gen:10.1f} {work:7.1f} {it.by_stage['train'][0]:8.1f} "
                  f"{it.by_stage['evaluate'][0]:10.1f}   {it.load[5:]}")

    def med(on: bool, pick: Any) -> float:
        return statistics.median(pick(it) for it in runs[on])

    wall_off, wall_on = med(False, lambda it: it.wall), med(True, lambda it: it.wall)
    gen_off, gen_on = (med(on, lambda it: it.by_stage["generate"][0]) for on in (False, True))
    train_off, train_on = (med(on, lambda it: it.by_stage["train"][0] + it.by_stage["evaluate"][0])
                           for on in (False, True))
    print(f"medians: wall {wall_off:.1f}s off, {wall_on:.1f}s on: gain {wall_off - wall_on:+.1f}s "
          f"({100 * (wall_off - wall_on) / wall_off:+.1f}%); generate stage {gen_off:.1f}s off, {gen_on:.1f}s on; "
          f"train + evaluate {train_off:.1f}s off, {train_on:.1f}s on (the background solve shares the cores)")
    # On a cluster the next deals are solved on Ray workers, which neither slow training nor wait for
    # cores: the next generate stage only checks solved shards (gen_on), provided the workers finish
    # within this iteration's train + evaluate time.
    hidden = gen_off - gen_on
    fits = "fits" if gen_off <= train_off else "does NOT fit (only part would be hidden)"
    print(f"cluster estimate: {hidden:.1f}s of the generate stage hidden per iteration = "
          f"{100 * hidden / wall_off:.1f}% of this machine's iteration (solving the next deals, {gen_off:.1f}s here, "
          f"{fits} within train + evaluate, {train_off:.1f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("data/bench-flywheel"))
    parser.add_argument("--sections", default="overhead,tiny,state,prefetch", help="comma-separated, in this order")
    parser.add_argument("--presets", default="quick,standard", help="presets of the overhead section")
    parser.add_argument("--iterations", type=int, default=5, help="tiny iterations")
    parser.add_argument("--state-sizes", default="10,10000", help="history lengths of the state section")
    parser.add_argument("--prefetch-iters", type=int, default=3, help="measured iterations per prefetch setting")
    parser.add_argument("--prefetch-preset", default="quick", help="preset of the prefetch section")
    args = parser.parse_args()
    root = args.workdir.resolve()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"overhead", "tiny", "state", "prefetch"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    print(f"{load()}; cpu: {_cpu()}")
    if "overhead" in sections:
        overhead(root, [p.strip() for p in args.presets.split(",") if p.strip()])
    if "tiny" in sections:
        tiny(root, args.iterations)
    if "state" in sections:
        state_io(root, [int(n) for n in args.state_sizes.split(",") if n.strip()])
    if "prefetch" in sections:
        prefetch(root, args.prefetch_iters, args.prefetch_preset)
    print(f"\nend: {load()}")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    return f"{name}, {os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    main()
