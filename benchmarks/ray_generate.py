"""Ray vs local deal generation: wall time for the same deals, and proof the shards are identical.

Starts a one-node Ray cluster on this machine (``ray start --head`` on a loopback address in a
temp dir, as many CPUs as the machine has), then generates the same deals with the local
executor (one worker process per CPU) and with the ray executor (one task per deal), twice each:
the first ray run includes starting Ray's worker processes, the second reuses them. Every run
writes a fresh folder; the shards' sha256 must match across executors.

    python benchmarks/ray_generate.py                  # 4 full deals (2.3M-9.8M states)
    python benchmarks/ray_generate.py --reduced        # 8 deals of 6 dominoes a hand
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forge.oracle.generate import generate

FULL_DEALS = [(31, 8), (4, 8), (11, 9), (6, 9)]
REDUCED_DEALS = [(seed, decl) for seed in (7, 8) for decl in (0, 2, 5, 9)]
HEAD_IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the machine's outward address; this stays on loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(root: Path, cpus: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port", "--dashboard-port"]
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--port", str(port), "--node-ip-address",
           HEAD_IP, "--temp-dir", str(root), "--block", "--num-cpus", str(cpus), "--include-dashboard", "false",
           "--include-log-monitor", "false", "--disable-usage-stats",
           *[x for p in ports for x in (p, str(_free_port()))]]
    head = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return head, f"{HEAD_IP}:{port}"


def stop(head: subprocess.Popen) -> None:
    """SIGKILL the head's whole session (gcs, raylet, workers): nothing outlives the benchmark."""
    for _ in range(3):
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == head.pid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    head.wait()


def timed(jobs, out: Path, hand_size: int, **kw) -> float:
    start = time.perf_counter()
    for _ in generate(jobs, out, hand_size, overwrite=True, progress=False, **kw):
        pass
    return time.perf_counter() - start


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.parquet")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="8 deals of 6 dominoes instead of 4 full deals")
    args = parser.parse_args()
    jobs, hand = (REDUCED_DEALS, 6) if args.reduced else (FULL_DEALS, 7)
    cpus = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="forge-raybench-", dir="/tmp"))
    head, address = start_head(root / "ray", cpus)
    try:
        timed(jobs[:1], root / "warm", hand, workers=1)  # numba's cache loaded once before timing
        import ray

        deadline = time.monotonic() + 120
        while True:  # the head is up once a driver can join it
            try:
                ray.init(address=address, logging_level="ERROR")
                break
            except (ConnectionError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        print(f"{len(jobs)} deals, hand size {hand}, {cpus} CPUs (one Ray node: the head)")
        rows = [
            ("local, cold", timed(jobs, root / "local1", hand, workers=cpus)),
            ("ray, cold workers", timed(jobs, root / "ray1", hand, executor="ray", ray_address=address)),
            ("local", timed(jobs, root / "local2", hand, workers=cpus)),
            ("ray", timed(jobs, root / "ray2", hand, executor="ray", ray_address=address)),
        ]
        ray.shutdown()
        for name, seconds in rows:
            print(f"  {name:<18} {seconds:6.2f} s")
        same = digests(root / "local1") == digests(root / "ray1") == digests(root / "ray2")
        print(f"  shards identical (sha256) across executors: {same}")
    finally:
        stop(head)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
