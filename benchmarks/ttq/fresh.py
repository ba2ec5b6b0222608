"""Fresh deals (``--fresh``): training that keeps drawing new deals for as long as it runs.

A producer process beside training solves one new deal after another (in its own process, on one
numba thread, at a lower priority: it takes the CPU training leaves), tokenizes it with the preset's
sampling into its own dataset under ``<out>/fresh/`` and announces it in ``ready.jsonl``; training
asks for its window at each epoch's start (:class:`forge.ml.datamodule.DominoDataModule` with a
function for ``train_dirs``) and takes the most recent ``--window`` deals: an epoch is one pass over
the window as it stood, so new deals join after a pass over the ones before them. Nothing is cached
between runs: every fresh deal is solved during this run, so the producer's CPU time, measured in
the producer itself, is what solving costs, reported as its share of the CPU the run used
(training's and solving's together).

Disk stays bounded: the producer deletes each deal's shard and token cache once its dataset is
written, and the datasets that left the window (training holds its window in RAM); the folder is
removed at the end unless ``--keep-shards``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ttq.common import children_cpu

#: Datasets kept on disk behind the newest, in windows: training may still be gathering the last one.
KEEP_WINDOWS = 2
#: The producer's niceness: it solves with what training leaves of the CPU, as the flywheel's
#: prefetch does beside its train stage, so the training clock runs at training's own rate.
NICE = 10


@dataclass(frozen=True)
class Made:
    seed: int
    path: Path
    cpu_s: float  # the producer's CPU seconds for this deal: solving and tokenizing
    wall_s: float
    states: int  # the deal's reachable states


def make_deal(preset: str, folder: Path, seed: int, k: int, selection: str, global_seed: int) -> Made:
    """Solve ``seed``'s training deal in this process, tokenize ``k`` of its ``selection`` states
    into ``folder/seed_<seed>``, and delete the shard and the token cache."""
    from forge.flywheel.config import load_preset
    from forge.ml.store import build_dataset
    from forge.oracle.deal import train_decl
    from forge.oracle.generate import generate

    hand = load_preset(preset).data.hand_size
    wall, cpu = time.perf_counter(), time.process_time()
    work = folder / "work"
    out = folder / f"seed_{seed:06d}"
    (res,) = list(generate([(seed, train_decl(seed))], work / "shards", hand_size=hand, workers=1, progress=False))
    build_dataset({"train": [res.path]}, out, k, global_seed, cache_dir=work / "cache", progress=False,
                  selection={"train": selection})
    shutil.rmtree(work, ignore_errors=True)
    return Made(seed, out, time.process_time() - cpu, time.perf_counter() - wall, res.rows)


def produce(preset: str, folder: str, seeds: list[int], k: int, selection: str, global_seed: int,
            window: int, stop: mp.synchronize.Event) -> None:
    """The producer process: make ``seeds`` in order until told to stop, announcing each in
    ``ready.jsonl`` (one line per deal, written whole) and deleting the datasets far behind."""
    import numba
    import torch

    os.nice(NICE)  # solving takes the cores training leaves idle, not training's share
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    root = Path(folder)
    ready = root / "ready.jsonl"
    made: list[Path] = []
    for seed in seeds:
        if stop.is_set():
            return
        m = make_deal(preset, root, seed, k, selection, global_seed)
        line = json.dumps({"seed": m.seed, "path": str(m.path), "cpu_s": round(m.cpu_s, 3),
                           "wall_s": round(m.wall_s, 3), "states": m.states, "at": time.time()})
        with ready.open("a") as f:  # one short line per write: appends are whole on POSIX
            f.write(line + "\n")
        made.append(m.path)
        if len(made) > KEEP_WINDOWS * window:
            shutil.rmtree(made.pop(0), ignore_errors=True)


def read_ready(folder: Path) -> list[dict]:
    """The deals the producer finished, in order (a line being written is left for the next look)."""
    path = folder / "ready.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class Fresh:
    """The producer process and the growing window training reads (its ``window`` method)."""

    def __init__(self, preset: str, folder: Path, start: list[Path], seeds: list[int], k: int, selection: str,
                 global_seed: int, window: int, keep: bool = False):
        self.folder, self.start, self.size, self.keep = folder, list(start), window, keep
        shutil.rmtree(folder, ignore_errors=True)  # nothing cached: every fresh deal is made in this run
        folder.mkdir(parents=True)
        ctx = mp.get_context("spawn")  # no fork of a process holding torch and numba threads
        self.stop = ctx.Event()
        self.process = ctx.Process(target=produce, name="fresh-deals", daemon=True,
                                   args=(preset, str(folder), seeds, k, selection, global_seed, window, self.stop))
        self.used: list[int] = []  # deals in the window at each epoch's start
        self.children_before = 0.0
        self.cpu_s: float | None = None  # the producer's whole CPU time, once it has ended
        self.final: dict | None = None  # what it made, once it has ended

    def __enter__(self) -> Fresh:
        self.children_before = children_cpu()
        self.process.start()
        print(f"fresh deals: a producer (pid {self.process.pid}) solves new deals into {self.folder} while "
              f"training runs; window: the latest {self.size}", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(timeout=120)  # it stops after the deal in hand
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.cpu_s = children_cpu() - self.children_before
        self.final = self.made()  # before the folder goes
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def window(self) -> list[Path]:
        dirs = (self.start + [Path(r["path"]) for r in read_ready(self.folder)])[-self.size:]
        self.used.append(len(dirs))
        return dirs

    def made(self) -> dict:
        """What the producer made so far: deals, its CPU and wall seconds, states solved."""
        rows = read_ready(self.folder)
        return {"deals": len(rows), "cpu_s": round(sum(r["cpu_s"] for r in rows), 1),
                "wall_s": round(sum(r["wall_s"] for r in rows), 1), "states": sum(r["states"] for r in rows),
                "last_seed": rows[-1]["seed"] if rows else None}
