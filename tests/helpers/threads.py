"""Thread counts for tests that solve deals or train in the pytest process on a shared 2-core machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba


@contextmanager
def one_numba_thread() -> Iterator[None]:
    """The solver on one numba thread while inside. In a process that has loaded torch, numba's OpenMP
    threads spin against torch's: 100 deals (hand 4) took 3-5 s on two threads and 0.25 s on one on
    this project's 2-core machine under load (0.3 s without torch)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
