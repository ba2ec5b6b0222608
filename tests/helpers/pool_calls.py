"""Functions a spawned worker process can import by name (tests/test_local_pool.py)."""

from __future__ import annotations

import os


def whose(n: int) -> tuple[int, int]:
    """``n`` and the process that ran the call."""
    return n, os.getpid()


def numba_threads(n: int) -> tuple[int, int]:
    """``n`` and the numba threads the call ran with."""
    import numba

    return n, numba.get_num_threads()
