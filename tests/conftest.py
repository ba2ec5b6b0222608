"""Shared fixtures: solved reduced deals are cheap; the full benchmark deal is solved once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from forge.oracle.solve import Solution, solve

#: A fake W&B key in the loop's environment: no file may ever hold it (tests/test_flywheel_loop.py).
FAKE_KEY = "forge-test-secret-0123456789abcdef0123456789abcdef01234567"


def flywheel(ws: Path, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m forge.cli.flywheel ARGS`` in ``ws``, as a user would run it."""
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY, **(env or {})}
    return subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    """``condition()``'s first truthy value, polled until ``timeout`` seconds have passed (then the test
    fails, saying what it waited for): for a marker another process writes, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


#: Markers of the slow kinds (pyproject.toml): a test carrying one is in the slow tier.
SLOW_KINDS = ("loop", "notebooks", "install", "browser", "cluster")
#: Fixtures that run real flywheel iterations: a test using one is a loop test.
LOOP_FIXTURES = ("tiny_runs",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One rule for the tiers: the slow kinds, and tests on a real loop's workspace, are `slow`."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in LOOP_FIXTURES):
            item.add_marker(pytest.mark.loop)
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def benchmark_deal() -> Solution:
    """Seed 0, sixes: the spec's known answer (about 15M states, ~1 s once compiled)."""
    return solve(0, 6)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path | str]:
    """A tiny workspace after one iteration (``after_one``, a snapshot) and after two (``ws``, the
    reference run that scenarios starting from the snapshot compare with)."""
    ws = tmp_path_factory.mktemp("flywheel") / "ws"
    ws.mkdir()
    init = flywheel(ws, "init", "--preset", "tiny", "--wandb-group", "ci")
    assert init.returncode == 0, init.stderr
    first = flywheel(ws, "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    after_one = ws.parent / "after-one"
    shutil.copytree(ws, after_one, symlinks=True)
    second = flywheel(ws, "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    return {"ws": ws, "after_one": after_one, "log": first.stdout + second.stdout}


def near_ties(model, tensors: dict, move_head: str = "policy") -> int:
    """Rows whose two best legal logits lie within fp32 rounding of each other
    (``forge.ml.inference.fp32_tolerance`` at the logits' scale). Another CPU, thread count or order
    of summation may pick the other move there, so these rows bound how far argmax-based metrics of
    two fp32 forwards may differ; every other row must agree exactly."""
    import torch

    from forge.ml.inference import fp32_tolerance
    from forge.ml.model import move_scores

    with torch.inference_mode():
        logits = move_scores(model.eval()(tensors["tokens"], tensors["masks"], tensors["players"]), move_head)
    legal = tensors["legal"] != 0
    top2 = logits.masked_fill(~legal, float("-inf")).topk(2, -1).values
    tol = fp32_tolerance(model.config, float(logits.abs().max()))
    return int(((top2[:, 0] - top2[:, 1] <= tol) & (legal.sum(-1) > 1)).sum())
