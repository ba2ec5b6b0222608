"""Shared fixtures (solved reduced deals are cheap; the full benchmark deal is solved once; a tiny
workspace after two real iterations) and the test tiers. Shared test code lives in tests/helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.by_hand_notebooks import made_once, run_stage_notebooks
from helpers.loop import flywheel

from forge.oracle.solve import Solution, solve

#: Markers of the slow kinds (pyproject.toml): a test carrying one is in the slow tier.
SLOW_KINDS = ("loop", "notebooks", "install", "browser", "cluster")
#: The kinds run first, longest first (the order tests are handed to the workers).
FIRST = ("install", "browser", "notebooks", "loop", "slow")
#: Fixtures that run real flywheel iterations: a test using one is a loop test.
LOOP_FIXTURES = ("tiny_runs",)


def pytest_configure(config: pytest.Config) -> None:
    """The solver on one numba thread in the test processes: two pytest workers share 2 cores, and in a
    process that has loaded torch (most of them) numba's OpenMP threads spin against torch's, which made
    small deals 12-20x slower on two threads (the fixture of tests/test_training.py solved its 344 deals
    in 24 s on two threads under load, 4 s on one; forge.oracle.local_pool._solo does the same in the loop).
    The solver is exact on any thread count; subprocesses (the loop, its kernels and pools) keep their own setting.

    And torch on one thread, for the same reason: a flywheel iteration trained in a test's own process
    took 41 s instead of 5 while the other worker drove JupyterLab (each of its two OpenMP threads slept
    at every barrier of the attention kernel's nested parallel regions, waiting for a core). One thread
    here and two in the kernels give the same moves; the point errors agree within fp32 rounding
    (tests/helpers/numerics.py)."""
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One rule for the tiers: the slow kinds, and tests on a real loop's workspace, are `slow`; and the
    xdist groups (:func:`_xdist_groups`)."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in LOOP_FIXTURES):
            item.add_marker(pytest.mark.loop)
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)
    # the longest kinds first (stable otherwise): on 2 workers a minute-long test that starts last keeps the
    # other worker idle at the end, while quick tests fill in around long ones started early
    items.sort(key=lambda item: next((rank for rank, kind in enumerate(FIRST) if item.get_closest_marker(kind)),
                                     len(FIRST)))
    _xdist_groups(config, items)


def _xdist_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pytest-xdist's ``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker by the
    group's name at the end of their node ids (``...@group``). Since pytest 9 a node id is structured
    and xdist's own suffix (written to ``_nodeid``) is lost, so every group was ignored (the browser's
    and Ray's shared resources, and modules whose expensive fixtures were then made once per worker):
    the suffix is set here, as xdist sets it."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest before 9: xdist sets the suffix itself
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(scope="session")
def benchmark_deal() -> Solution:
    """Seed 0, sixes: the spec's known answer (about 15M states, ~1 s once compiled)."""
    return solve(0, 6)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, worker_id: str) -> dict[str, Path | str]:
    """A tiny workspace after one iteration (``after_one``, a snapshot) and after two (``ws``, the
    reference run that scenarios starting from the snapshot compare with). Made once per test run:
    under pytest-xdist the first worker to need it makes it, the others wait for it and share it
    (a test copies it before changing it)."""
    if worker_id == "master":
        return _two_iterations(tmp_path_factory.mktemp("flywheel"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # this run's, common to its workers
    done = shared / "tiny_runs" / "log.txt"
    with FileLock(str(shared / "tiny_runs.lock")):
        if not done.is_file():
            made = _two_iterations(shared / "tiny_runs")
            done.write_text(str(made["log"]))
    return {"ws": shared / "tiny_runs" / "ws", "after_one": shared / "tiny_runs" / "after-one", "log": done.read_text()}


@pytest.fixture(scope="session")
def stage_notebooks_by_hand(tiny_runs, tmp_path_factory, worker_id: str) -> dict:
    """The four stage notebooks executed by hand on a copy of ``tiny_runs``' snapshot (its iteration 2;
    tests/helpers/by_hand_notebooks.py), once per test run; a test copies the workspace before changing it."""
    return made_once(tmp_path_factory, worker_id, "stage_notebooks_by_hand",
                     lambda where: run_stage_notebooks(Path(tiny_runs["after_one"]), where))


def _two_iterations(where: Path) -> dict[str, Path | str]:
    ws = where / "ws"
    ws.mkdir(parents=True)
    init = flywheel(ws, "init", "--preset", "tiny", "--wandb-group", "ci")
    assert init.returncode == 0, init.stderr
    first = flywheel(ws, "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    after_one = ws.parent / "after-one"
    shutil.copytree(ws, after_one, symlinks=True)
    second = flywheel(ws, "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    return {"ws": ws, "after_one": after_one, "log": first.stdout + second.stdout}
