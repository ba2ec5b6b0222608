"""Start-up benchmark: how long the commands people type every day take before they answer.

`python -m forge.cli.flywheel --help` and `status` on a fresh `quick` workspace, each run as a whole
process (interpreter start, imports, work) ``--runs`` times, interleaved; prints the median, the
spread and which heavy libraries the process loaded (none is the light core's promise: configuration,
state, status and the CLI's parsing import no torch, Lightning, pyarrow or polars). Run it on a quiet
machine: the figures are wall-clock. The goals (issue 25): `--help` <= 0.5 s, `status` <= 1 s on 2 cores.

    python benchmarks/startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "lightning", "pyarrow", "polars")
#: The command run in-process (as `python -m` would), then the heavy libraries it left loaded.
PROBE = """import sys, runpy
sys.argv = ["flywheel", *sys.argv[1:]]
try:
    runpy.run_module("forge.cli.flywheel", run_name="__main__")
except SystemExit:
    pass
print("LOADED", sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"`flywheel {' '.join(args)}` failed: {res.stderr.strip().splitlines()[-1:]}")
    return elapsed


def loaded(args: list[str], cwd: Path) -> list[str]:
    res = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=cwd, capture_output=True,
                         text=True)
    line = next((x for x in res.stderr.splitlines() if x.startswith("LOADED")), "LOADED ?")
    return line.split(" ", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (default 9)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        from forge.flywheel.config import load_preset
        from forge.flywheel.state import new_state, save_state

        save_state(ws, new_state(load_preset("quick"), "startup-bench"))
        commands = {"--help": ["--help"], "status": ["status"]}
        times: dict[str, list[float]] = {name: [] for name in commands}
        timed(["status"], ws)  # warm the page cache once, as a person's second command would find it
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(timed(argv, ws))
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
              f"Python {platform.python_version()}; {args.runs} runs each, interleaved")
        for name, argv in commands.items():
            t = sorted(times[name])
            print(f"flywheel {name:<7} median {statistics.median(t):.3f} s  (min {t[0]:.3f}, max {t[-1]:.3f})  "
                  f"heavy libraries loaded: {loaded(argv, ws)}")


if __name__ == "__main__":
    main()
