"""The local pool starts its worker processes only when the work is worth their start: a handful of
small deals is solved in the calling process (a 3-domino deal takes milliseconds, a worker's start
about a second of CPU), a long run is handed to the workers."""

from __future__ import annotations

import os

import numba
import pytest
from helpers.pool_calls import numba_threads, whose

from forge.oracle import local_pool
from forge.oracle.generate import generate
from forge.oracle.local_pool import run_local


def test_quick_calls_run_here_without_starting_workers() -> None:
    results = list(run_local(whose, [(n,) for n in range(50)], workers=2, adaptive=True))
    assert sorted(n for n, _ in results) == list(range(50))
    assert {pid for _, pid in results} == {os.getpid()}


def test_calls_worth_the_workers_start_are_handed_to_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_pool, "WORKER_START_S", 0.0)  # any remaining work outweighs the start
    results = list(run_local(whose, [(n,) for n in range(6)], workers=2, adaptive=True))
    assert sorted(n for n, _ in results) == list(range(6))
    pids = [pid for _, pid in results]
    assert pids[0] == os.getpid()  # the first call shows the pace, here
    assert os.getpid() not in pids[1:]  # the rest went to the workers


def test_small_calls_here_run_on_one_numba_thread_and_leave_the_setting_as_it_was() -> None:
    """Past the first call (which keeps the process's threads: a large deal shows its pace on all of
    them), the calls made here run on one numba thread; the caller's own setting is back afterwards."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: every setting is one thread")
    before = numba.get_num_threads()
    numba.set_num_threads(2)  # as a process has it outside the tests (conftest sets one)
    try:
        results = list(run_local(numba_threads, [(n,) for n in range(5)], workers=2, adaptive=True))
        assert [t for _, t in results] == [2, 1, 1, 1, 1]
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


def test_a_number_of_workers_asked_for_is_kept() -> None:
    results = list(run_local(whose, [(n,) for n in range(4)], workers=2))
    assert os.getpid() not in {pid for _, pid in results}


def test_small_deals_solved_here_are_the_bytes_the_pool_writes(tmp_path) -> None:
    """generate() with no worker count: four 3-domino shards, the same as the pool writes."""
    jobs = [(s, d) for s in (1, 2) for d in (0, 5)]
    here = list(generate(jobs, tmp_path / "here", 3, progress=False))
    pooled = list(generate(jobs, tmp_path / "pool", 3, workers=2, progress=False))
    assert sorted((r.seed, r.decl_id) for r in here) == sorted((r.seed, r.decl_id) for r in pooled) == sorted(jobs)
    for r in here:
        assert r.path.read_bytes() == (tmp_path / "pool" / r.path.name).read_bytes()
