"""Deal generation on a Ray cluster: one task per deal, shards written by the driver.

Where shards land. A task solves its deal on whichever node Ray picks and returns the shard's
bytes through Ray's object store; the driver (the process that called ``generate``) writes
them into the output folder with the same atomic temp-file-and-rename as a local run. So no
node needs a shared filesystem, the only writer is the one process that owns the folder (and
its verified-shard memo), a task lost with its node leaves no file anywhere (Ray reruns it,
``max_retries``), and the bytes are those a local run writes: the same sha256.

Memory. A task asks Ray for the memory its deal needs, so a node runs only as many at once
as it can hold: measured peak RSS is about 180 MB of interpreter, numba and pyarrow plus
25 bytes per reachable state (8 the sorted state, 8 the solver's V/Q rows, 8 the V and Q
columns, about 5 the parquet bytes; 76M states peaked at 1.9 GB). The state count is only
known once solved, so the request uses the largest deal measured for the hand size with
some headroom (:data:`MAX_STATES`) and a 400 MB base for the Ray worker around it. It is a
scheduling request: a deal larger than that still runs.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import ray

from forge.errors import ForgeError, InputError
from forge.oracle.shard import shard_bytes
from forge.oracle.solve import solve

#: Largest state count measured per hand size (seeds 0-39 x 10 declarations for 1-5, 0-11 for
#: 6; the benchmarks' largest full deal, seed 3 doubles-trump, for 7), with about 1.3-2x headroom.
MAX_STATES = {1: 10, 2: 200, 3: 4_000, 4: 80_000, 5: 800_000, 6: 9_000_000, 7: 100_000_000}
BYTES_PER_STATE = 26
TASK_BASE_BYTES = 400 * 2**20
CONNECT_TIMEOUT = 10.0
#: Times Ray reruns a deal whose worker or node died (not one that raised: that is a bug).
MAX_RETRIES = 3


class ClusterError(ForgeError):
    """The Ray cluster could not be reached, or a deal failed there even after its retries."""


@dataclass(frozen=True)
class SolvedDeal:
    """One deal solved on a worker: its shard's bytes and what the progress report shows."""

    seed: int
    decl_id: int
    rows: int
    root_v: int
    root_q: tuple[int, ...]
    seconds: float
    data: np.ndarray  # uint8: the shard file, as forge.oracle.shard.shard_bytes makes it


def memory_request(hand_size: int) -> int:
    """Bytes a task asks Ray for, to solve and serialise one deal of ``hand_size``."""
    return TASK_BASE_BYTES + BYTES_PER_STATE * MAX_STATES[hand_size]


def solve_to_bytes(seed: int, decl_id: int, hand_size: int) -> SolvedDeal:
    """The Ray task: solve one deal on one CPU and return its shard as bytes."""
    import numba

    numba.set_num_threads(1)  # the task holds one CPU; Ray runs deals side by side
    start = time.perf_counter()
    sol = solve(seed, decl_id, hand_size)
    data = shard_bytes(sol)
    root_v, root_q = sol.root()
    return SolvedDeal(seed, decl_id, len(sol), root_v, root_q, time.perf_counter() - start, data)


def _reachable(address: str) -> None:
    """Fail fast on a wrong address: ``ray.init`` retries an unreachable one for minutes on end."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"a Ray address is HOST:PORT (the head's GCS port, 6379 by default), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                           "(is `ray start --head` running there?)") from None


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address`` unless this process already has; True if we joined."""
    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        _reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "RAY_ADDRESS, or the cluster started on this machine"
        raise ClusterError(f"cannot connect to the Ray cluster at {where}: {exc}") from None
    return True


def run_ray(jobs: Iterable[tuple[int, int]], hand_size: int, address: str | None = None) -> Iterator[SolvedDeal]:
    """Solve every (seed, decl) as its own Ray task; results in completion order.

    Joins the cluster and submits the tasks at once (so a wrong address fails before any
    progress is shown); abandoning the iterator (an error, Ctrl+C) cancels what is still
    queued or running.
    """
    joined = _connect(address)
    task = ray.remote(solve_to_bytes).options(
        num_cpus=1, memory=memory_request(hand_size), max_retries=MAX_RETRIES, retry_exceptions=False
    )
    pending = {task.remote(seed, decl, hand_size): (seed, decl) for seed, decl in jobs}
    return _collect(pending, joined)


def _collect(pending: dict, joined: bool) -> Iterator[SolvedDeal]:
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            seed, decl = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise ClusterError(f"seed {seed} declaration {decl} failed on the Ray cluster "
                                   f"(after up to {MAX_RETRIES} retries): {exc}") from None
            del ref  # the driver held the only reference: the object store frees its copy
            yield result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if joined:
            ray.shutdown()
