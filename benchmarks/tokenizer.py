"""Tokenizer benchmark: seconds and peak RSS of ``tokenize_shard`` per shard.

Each measurement runs in a fresh child process so that its peak RSS is honest (no arrays or
page cache accounting left over from an earlier run). The child times ``tokenize_shard`` alone
(imports excluded) and reports its own peak RSS, which does include the interpreter and imports.
CPU seconds (all threads) are shown too: wall time on a shared machine depends on its load.
The reference shard (seed 0, sixes: 14,675,274 rows) is solved into data/bench/ if missing.

    python benchmarks/tokenizer.py                      # reference shard, 50,000 samples, 5 runs
    python benchmarks/tokenizer.py --shard data/x.parquet --runs 7 --samples 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (0, 6)
REFERENCE_DIR = REPO / "data" / "bench"


def child(path: str, samples: int, global_seed: int) -> None:
    """Measure one tokenization in this process; print a JSON line."""
    from forge.ml.tokenize import tokenize_shard

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu_start = time.perf_counter(), time.process_time()
    out = tokenize_shard(path, samples, global_seed)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mb": peak / 1024, "import_mb": base / 1024,
                      "samples": len(out["targets"])}))


def measure(path: Path, samples: int, global_seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), str(samples), str(global_seed)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed on {path}:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def reference_shard() -> Path:
    from forge.oracle.shard import shard_path, write_shard
    from forge.oracle.solve import solve

    path = shard_path(REFERENCE_DIR, *REFERENCE)
    if not path.exists():
        print(f"solving seed {REFERENCE[0]} decl {REFERENCE[1]} into {path} ...", file=sys.stderr)
        write_shard(solve(*REFERENCE), REFERENCE_DIR)
    return path


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shard", action="append", type=Path, help="shard(s) to time (default: reference shard)")
    p.add_argument("--samples", type=int, default=50_000, help="samples per shard (default 50,000)")
    p.add_argument("--global-seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=5, help="fresh-process runs per shard; the median is shown")
    args = p.parse_args()
    shards = args.shard or [reference_shard()]
    measure(shards[0], args.samples, args.global_seed)  # untimed: warm the page cache and .pyc files
    print(f"{'shard':30s} {'rows':>11s} {'samples':>8s} {'median s':>9s} {'max s':>6s} {'CPU s':>6s} "
          f"{'peak RSS MB':>12s}")
    for path in shards:
        from forge.oracle.shard import read_shard_info

        runs = [measure(path, args.samples, args.global_seed) for _ in range(args.runs)]
        secs = [r["seconds"] for r in runs]
        peak = statistics.median(r["peak_mb"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"{path.name:30s} {read_shard_info(path).rows:11,d} {runs[0]['samples']:8,d} "
              f"{statistics.median(secs):9.3f} {max(secs):6.3f} {cpu:6.3f} {peak:12.0f}"
              f"  (after imports {statistics.median(r['import_mb'] for r in runs):.0f} MB)")


if __name__ == "__main__":
    main()
