"""Small generation jobs: what starting worker processes costs against solving in the calling process.

A tiny iteration solves a handful of 3-domino deals (about a millisecond each); a worker process costs
about a second of CPU to start (an interpreter, numba, the cached kernels). Each measurement is a fresh
process that generates ``--deals`` deals x 10 declarations of ``--hand-size`` dominoes into a temporary
folder, timed from the outside (wall and CPU of the process and its children), in three ways:

- ``pool``: ``--workers 2``, the worker processes started at once (what every generate did before);
- ``adaptive``: no worker count, the default (solved here while the work left is smaller than a
  worker's start: forge.oracle.local_pool.run_local);
- ``adaptive, torch``: the same in a process that has imported torch first, as the loop's kernel has
  from its second iteration on (numba's and torch's OpenMP threads spin against each other there, which
  is why the calls solved here run on one numba thread). Its figure includes importing torch.

    python benchmarks/small_generate.py                       # 1 deal x 10 declarations, 3 dominoes
    python benchmarks/small_generate.py --deals 4 --hand-size 4 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = """
import sys, tempfile
if sys.argv[1] == "torch":
    import torch  # noqa: F401
from forge.oracle.generate import generate
if __name__ == "__main__":
    n, hand, workers = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    jobs = [(s, d) for s in range(n) for d in range(10)]
    with tempfile.TemporaryDirectory() as out:
        list(generate(jobs, out, hand, workers=None if workers == "none" else int(workers), progress=False))
"""

WAYS = {"pool": ("plain", "2"), "adaptive": ("plain", "none"), "adaptive, torch": ("torch", "none")}


def run_once(way: str, deals: int, hand: int) -> tuple[float, float]:
    """Wall and CPU seconds (the process and its children) of one fresh generating process."""
    preload, workers = WAYS[way]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, preload, str(deals), str(hand), workers])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"the {way} run failed (status {status})")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1, help="seeds, each with all 10 declarations (default 1)")
    parser.add_argument("--hand-size", type=int, default=3, help="dominoes per hand (default 3, the tiny preset's)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each way, interleaved (default 5)")
    args = parser.parse_args(argv)
    for way in WAYS:  # untimed: warm the numba cache and the page cache
        run_once(way, args.deals, args.hand_size)
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    for _ in range(args.repeats):
        for way in WAYS:
            times[way].append(run_once(way, args.deals, args.hand_size))
    print(f"{args.deals * 10} shards of {args.hand_size} dominoes per hand, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} fresh processes (load {os.getloadavg()[0]:.2f} at the end)")
    for way, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {way:16s} wall {wall:5.2f} s   CPU {cpu:5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
