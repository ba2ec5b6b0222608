"""The flywheel as a user runs it (``python -m forge.cli.flywheel`` in a workspace), and reading what it
wrote: the state, a stage's result, its progress."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

#: A fake W&B key in the loop's environment: no file may ever hold it (tests/test_flywheel_loop.py).
FAKE_KEY = "forge-test-secret-0123456789abcdef0123456789abcdef01234567"


def flywheel(ws: Path, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m forge.cli.flywheel ARGS`` in ``ws``, as a user would run it."""
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY, **(env or {})}
    return subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=timeout)


def state(ws: Path) -> dict:
    """state.yaml as data, with its history as the loop recorded it (in history.jsonl) and its configuration
    by field name (as the history's entries hold it)."""
    from forge.flywheel.config import config_from_dict
    from forge.flywheel.state import load_state

    data = yaml.safe_load((ws / "state.yaml").read_text())
    data["config"] = config_from_dict(data["config"]).flat()
    data["history"] = [h.to_dict() for h in load_state(ws).history]
    return data


def edit_state(ws: Path, change) -> None:
    """Edit state.yaml by hand, as a person would."""
    data = yaml.safe_load((ws / "state.yaml").read_text())
    change(data)
    (ws / "state.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def result(ws: Path, iteration: int, stage: str) -> dict:
    return json.loads((ws / "runs" / f"iter-{iteration:04d}" / "results" / f"{stage}.json").read_text())


def progress(ws: Path, iteration: int) -> dict:
    try:
        return json.loads((ws / "runs" / f"iter-{iteration:04d}" / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def start_loop_until(ws: Path, ready, what: str, **popen) -> subprocess.Popen:
    """A background ``--once`` loop, returned once ``ready()`` observes the moment the test waits for."""
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY}
    # as from a terminal: a test worker may run with SIGINT ignored (pytest-xdist's do), children inherit
    # that, and Python then never turns Ctrl+C into KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli.flywheel", "--once"], cwd=ws, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)
    deadline = time.time() + 300
    while not ready():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"the loop never reached {what}")
        time.sleep(0.05)
    return proc


def training_steps(ws: Path, iteration: int = 2):
    """A marker: the train stage is running and has taken at least one optimiser step."""
    def ready() -> bool:
        p = progress(ws, iteration)
        # "validating" counts too: a tiny epoch's training lasts less than progress.json's write
        # interval, so the file may show only the forced writes at each validation (done carried)
        return p.get("stage") == "train" and p.get("phase") in ("training", "validating") \
            and (p.get("done") or 0) >= 1 and p.get("finished_at") is None
    return ready


def copy_after_one(runs: dict[str, Path], dest: Path) -> Path:
    """A fresh workspace identical to the reference after iteration 1 (paths inside are relative)."""
    shutil.copytree(runs["after_one"], dest, symlinks=True)
    return dest


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m forge.cli.flywheel ARGS`` in ``cwd`` with the environment as given (no fake key added)."""
    return subprocess.run([sys.executable, "-m", "forge.cli.flywheel", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    """A user mistake: exit 2 and one line on stderr naming each of ``needles``, never a traceback."""
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr
