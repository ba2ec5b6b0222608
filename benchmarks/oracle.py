"""Oracle benchmark: whole-process wall time and peak RSS of generating one shard per deal.

Each measurement is a fresh ``python -m forge.oracle.generate ... --overwrite`` process (so the
figure includes interpreter start, imports and loading the cached numba kernels), timed from the
outside; peak RSS comes from that child's own rusage. One untimed run first warms the numba cache.

    python benchmarks/oracle.py                 # benchmark deal + a spread of seeds/declarations
    python benchmarks/oracle.py --repeats 5 --big   # also seed 950 notrump-blanks (46M states)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forge.oracle.shard import read_shard_info, shard_name

BENCHMARK_DEAL = (0, 6)
SPREAD = [(1, 0), (2, 3), (3, 7), (4, 8), (5, 9), (900, 1), (901, 5)]
BIG = [(950, 0)]


def run_once(seed: int, decl: int, out: Path, workers: int = 1) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one generate process."""
    cmd = [sys.executable, "-m", "forge.oracle.generate", "--seed", str(seed), "--decl", str(decl),
           "--out", str(out), "--overwrite", "--quiet", "--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"generate failed for seed {seed} decl {decl}: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per deal (median is reported)")
    parser.add_argument("--big", action="store_true", help="include seed 950 decl 0 (~46M states)")
    parser.add_argument("--only-benchmark-deal", action="store_true")
    args = parser.parse_args()

    deals = [BENCHMARK_DEAL] + ([] if args.only_benchmark_deal else SPREAD + (BIG if args.big else []))
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        out = Path(tmp)
        run_once(*BENCHMARK_DEAL, out)  # warm the numba cache
        print(f"{'seed':>5} {'decl':>4} {'states':>12} {'wall s':>8} {'states/s':>12} {'peak RSS MB':>12}"
              f"   (median of {args.repeats}, whole process, cpus={os.cpu_count()})")
        for seed, decl in deals:
            runs = [run_once(seed, decl, out) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            rows = read_shard_info(out / shard_name(seed, decl)).rows
            print(f"{seed:>5} {decl:>4} {rows:>12,} {wall:>8.2f} {rows / wall:>12,.0f} {rss:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
