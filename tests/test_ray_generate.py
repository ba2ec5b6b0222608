"""Deal generation on a real local Ray cluster: a head node and a separate worker node, started
by ``ray start`` in a private temp dir on loopback addresses, torn down whatever happens.

Shards from Ray must be the bytes a local run writes, and losing the worker node mid-run must
still end with every shard complete and verified (its tasks rerun on the head).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test]' brings it)")

from helpers.processes import live_processes, wait_for

from forge.oracle.generate import generate  # noqa: E402
from forge.oracle.ray_pool import ClusterError  # noqa: E402
from forge.oracle.shard import read_shard_info, shard_name  # noqa: E402
from forge.oracle.verify import verify_shard  # noqa: E402

# one local Ray cluster at a time on this machine: parallel test workers run these tests in one worker
pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("ray")]

RAY = str(Path(sys.executable).with_name("ray"))
# Ray turns 127.0.0.1 and localhost into the machine's outward address; other loopback
# addresses it leaves alone, so every byte of the test stays on the loopback interface.
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
#: Notice a dead node within about a second instead of Ray's default 15 s or more.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "300",
    "RAY_health_check_timeout_ms": "300",
    "RAY_health_check_failure_threshold": "3",
    "RAY_USAGE_STATS_ENABLED": "0",
}
START_TIMEOUT = 120  # a loaded 2-core machine starts a node in 10-25 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_members(sid: int) -> list[int]:
    """Processes in session ``sid`` (each node runs in a session of its own, raylet workers too)."""
    return [p for p, fields in live_processes().items() if int(fields[3]) == sid]


def _titles(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace"))
        except OSError:
            pass
    return out


class LocalCluster:
    """``ray start --head`` plus worker nodes, each ``--block``ed in its own session, so that a
    node is killed (and the whole cluster torn down) by signalling its session's processes."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        cmd = [RAY, "start", *args, "--temp-dir", str(self.root / "ray"), "--block", "--num-cpus", "1",
               "--object-store-memory", str(100 * 2**20), "--include-log-monitor", "false",
               "--disable-usage-stats", *[x for p in ports for x in (p, str(_free_port()))]]
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        node = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **FAST_HEALTH_CHECKS})
        log.close()
        self.nodes.append(node)
        return node

    def start_head(self) -> subprocess.Popen:
        return self._start("head", ["--head", "--port", str(self.port), "--node-ip-address", HEAD_IP,
                                    "--include-dashboard", "false", "--dashboard-port", str(_free_port())])

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self._start(name, ["--address", self.address, "--node-ip-address", WORKER_IP])

    def raylets(self) -> int:
        """Raylets running in this cluster's sessions (a node is up once its raylet is)."""
        return sum(any(t.endswith("/raylet") for t in _titles(_session_members(n.pid))) for n in self.nodes
                   if n.poll() is None)

    def kill(self, node: subprocess.Popen) -> None:
        """SIGKILL every process of the node, as a lost machine would vanish."""
        for _ in range(3):  # a process forked while we kill is caught on the next pass
            for pid in _session_members(node.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        node.wait(timeout=30)

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in self.root.glob("*.log"))

    def teardown(self) -> None:
        for node in reversed(self.nodes):
            self.kill(node)
        leftovers = [e.name for e in Path("/proc").iterdir() if e.name.isdigit() and self._mentions_root(e)]
        for pid in leftovers:  # anything started with our temp dir that left the sessions
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _mentions_root(self, entry: Path) -> bool:
        try:
            return str(self.root).encode() in (entry / "cmdline").read_bytes()
        except OSError:
            return False


def test_an_address_where_no_cluster_listens_is_one_clear_line(tmp_path: Path) -> None:
    """Ray itself retries such an address for minutes on end; the user hears at once."""
    address = f"{HEAD_IP}:{_free_port()}"
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at {address}"):
        list(generate([(1, 2)], tmp_path / "lib", 3, executor="ray", ray_address=address))
    res = subprocess.run([sys.executable, "-m", "forge.oracle.generate", "--seed", "1", "--decl", "2",
                          "--hand-size", "3", "--out", str(tmp_path / "cli"), "--executor", "ray",
                          "--ray-address", address], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("(is `ray start --head` running there?)")
    assert len(res.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/*.parquet"))


#: Fresh clusters tried when a node gives up starting: ``ray start`` waits a fixed 30 s for its raylet
#: to register with the GCS (not configurable), which a 2-core machine busy with the rest of the suite
#: can miss; a node that gave up has exited, so this is seen, never guessed from a timeout.
START_ATTEMPTS = 3


def _start_cluster(root: Path) -> LocalCluster:
    """A head and a worker, both with raylets up; a fresh cluster (new ports, new temp dir) when a node
    exits while starting. Fails with every attempt's logs."""
    logs = []
    for attempt in range(1, START_ATTEMPTS + 1):
        cluster = LocalCluster(root / str(attempt))  # short: Ray's socket paths live under it
        cluster.root.mkdir()
        try:
            cluster.start_head()
            cluster.start_worker()
            state = wait_for(lambda c=cluster: "up" if c.raylets() == 2 else
                             "exited" if any(n.poll() is not None for n in c.nodes) else None,
                             START_TIMEOUT, "the head and worker raylets")
        except BaseException:
            print(cluster.log_tail(), file=sys.stderr)
            cluster.teardown()
            raise
        if state == "up":
            return cluster
        logs.append(f"=== attempt {attempt}: a node exited while starting\n{cluster.log_tail()}")
        cluster.teardown()
    print("\n".join(logs), file=sys.stderr)
    pytest.fail(f"no Ray cluster started in {START_ATTEMPTS} attempts (logs on stderr)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # A short private path: Ray's unix sockets live under it (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="forge-ray-", dir="/tmp"))
    try:
        cluster = _start_cluster(root)
        try:
            yield cluster
        except BaseException:
            print(cluster.log_tail(), file=sys.stderr)
            raise
        finally:
            cluster.teardown()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _generate_on_ray(cluster: LocalCluster, out: Path, seeds: str, hand_size: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "forge.oracle.generate", "--seed-range", seeds, "--decl", "all",
           "--hand-size", str(hand_size), "--out", str(out), "--quiet",
           "--executor", "ray", "--ray-address", cluster.address]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def test_ray_shards_are_the_bytes_of_local_ones(cluster: LocalCluster, tmp_path: Path) -> None:
    run = _generate_on_ray(cluster, tmp_path / "ray", "40:42", hand_size=4)
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err + cluster.log_tail()
    assert "20 shard(s) written, 0 kept" in out
    list(generate([(s, d) for s in (40, 41) for d in range(10)], tmp_path / "local", 4, workers=1, progress=False))
    ray_digests = _digests(tmp_path / "ray")
    assert len(ray_digests) == 20 and ray_digests == _digests(tmp_path / "local")
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.endswith(".tmp")]


def test_losing_the_worker_node_mid_run_still_completes_every_shard(cluster: LocalCluster, tmp_path: Path) -> None:
    worker = cluster.nodes[-1]
    assert worker.poll() is None and cluster.raylets() == 2, "the worker node is not up"
    out = tmp_path / "shards"
    run = _generate_on_ray(cluster, out, "60:62", hand_size=6)  # 20 deals of 0.1-1 s each
    try:
        wait_for(lambda: any(t.startswith("ray::solve_to_bytes") for t in _titles(_session_members(worker.pid)))
                 or run.poll() is not None, 120, "a deal to run on the worker node")
        assert run.poll() is None, "generation ended before the worker node could be killed"
        cluster.kill(worker)
        stdout, stderr = run.communicate(timeout=240)
    finally:
        run.kill()
    assert run.returncode == 0, stderr + cluster.log_tail()
    assert "20 shard(s) written" in stdout
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert names == sorted(shard_name(s, d) for s in (60, 61) for d in range(10))
    for path in out.glob("*.parquet"):
        assert read_shard_info(path).hand_size == 6
        assert verify_shard(path) == [], path
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
