"""Local worker processes for deal generation, which die with the process that started them.

A ProcessPoolExecutor's workers block on a queue whose write end they hold themselves, so when
their parent is killed (``kill -9`` of a flywheel loop, an OOM kill) they never see end-of-file:
a solve in flight runs to its end and the idle workers then wait forever (issue 10, fault 5).
On Linux each worker asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``).

Starting a worker (an interpreter, numba and the cached kernels) costs about a second of CPU; a
small deal solves in a millisecond. Asked to choose (``adaptive``), the pool first solves here and
starts its workers only once the calls left promise more work than their start costs.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

import numba

T = TypeVar("T")

#: What starting the worker processes costs, in seconds of this process's time: calls whose projected
#: remaining time is below it run here (a 3-domino deal: about 1 ms; a 7-domino deal: about a second).
WORKER_START_S = 1.0

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; a no-op elsewhere).

    The signal follows the parent *thread* that started this process, so start workers from a
    thread that outlives them (a pool used inside one ``with`` block does). A parent that died
    before the request took effect is caught by comparing the parent pid afterwards.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # best effort (a sandbox may forbid it): the work itself must still go on
    if os.getppid() != parent_pid:  # orphaned already: the signal will never come
        os.kill(os.getpid(), signal.SIGKILL)


def _init_worker(parent_pid: int, threads: int) -> None:
    die_with_parent(parent_pid)
    numba.set_num_threads(threads)


def _solo(fn: Callable[..., T], args: tuple) -> T:
    """``fn(*args)`` on one numba thread. Work solved here is small, where handing a parallel loop to a
    second thread costs more than it gains; and in a process that has loaded torch, numba's OpenMP
    threads and torch's spin against each other: 30 four-domino deals took 1.27 s on two threads
    there, 0.09 s without torch (2-core Xeon)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # this thread's own setting: other threads keep theirs
    try:
        return fn(*args)
    finally:
        numba.set_num_threads(before)


def run_local(fn: Callable[..., T], calls: Iterable[tuple], workers: int, adaptive: bool = False) -> Iterator[T]:
    """``fn(*args)`` for every args tuple, in ``workers`` processes; results in completion order.

    Each worker gets an equal share of the CPUs as numba threads. ``spawn``, not ``fork``:
    numba's thread pools do not survive a fork safely. ``adaptive``: the first call runs here,
    and hands the rest to the workers if it alone took longer than :data:`WORKER_START_S`; if not,
    the next calls run here too (on one numba thread: :func:`_solo`) while those left would take
    less than :data:`WORKER_START_S` at their pace, and the rest go to the workers.
    """
    calls = list(calls)
    done = 0
    if adaptive and workers > 1 and calls:
        started = time.perf_counter()
        yield fn(*calls[0])  # it also pays for loading the kernels
        done = 1
        if time.perf_counter() - started <= WORKER_START_S:
            started = time.perf_counter()
            while done < len(calls):
                yield _solo(fn, calls[done])
                done += 1
                if (time.perf_counter() - started) / (done - 1) * (len(calls) - done) > WORKER_START_S:
                    break
    rest = calls[done:]
    workers = min(workers, len(rest))
    if workers <= 1:
        for args in rest:
            yield fn(*args)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    init_args = (os.getpid(), threads)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init_args) as pool:
        futures = [pool.submit(fn, *args) for args in rest]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:  # an error or an abandoned generator: drop the queued jobs, not just wait for them
            for fut in futures:
                fut.cancel()
