"""Faults of a running loop (issue 10): a full disk mid-iteration, and a loop killed while its process
pool solves deals. Both must end in a record that says what happened and resumes without hand-editing.
"""

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
from helpers.inprocess import run_in_process
from helpers.loop import FAKE_KEY, edit_state, flywheel, state
from helpers.numerics import assert_same_metrics
from helpers.processes import alive, descendants, wait_for

from forge.flywheel.loop import retry


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    res = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                         capture_output=True, timeout=30)
    return res.returncode == 0


def _size_kb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -rm` (user and mount namespaces) to mount a "
                                                   "small tmpfs as a full disk")
def test_a_full_disk_mid_iteration_is_recorded_and_resumes(tiny_runs, tmp_path) -> None:
    """The workspace runs on a tmpfs with room for a few hundred KB more: iteration 2 fills it."""
    src, out = tiny_runs["after_one"], tmp_path / "out"
    (out / "ws").mkdir(parents=True)
    size = _size_kb(src) + 1024 + 600  # the loop holds 1 MB back for the record; 600 KB for the iteration
    script = f"""
set -e
mount -t tmpfs -o size={size}k tmpfs /mnt
cp -a "{src}/." /mnt/
cd /mnt
set +e
"{sys.executable}" -m forge.cli.flywheel --once > "{out}/stdout" 2> "{out}/stderr"
echo $? > "{out}/rc"
cp -a /mnt/. "{out}/ws/"
"""
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY}
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, timeout=900, env=env)
    ws = out / "ws"
    rc, err = int((out / "rc").read_text()), (out / "stderr").read_text()
    assert rc in (1, 2), (out / "stdout").read_text() + err
    assert "Traceback" not in err and "No space left on device" in err + (out / "stdout").read_text()
    st = state(ws)
    assert st["status"] == "failed" and st["current"]["stage"] is not None
    stage = st["current"]["stage"]
    assert st["last_error"].startswith(f"{stage}: ") and "No space left on device" in st["last_error"]
    assert "/" in st["last_error"].split("No space left on device", 1)[1]  # it names where
    for nb in ws.rglob("*.ipynb"):  # nothing archived half-written
        json.loads(nb.read_text())
    leftovers = [p for p in ws.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name or
                 p.name.endswith(".running.ipynb")]
    assert leftovers == []
    # With room again (the same workspace on the real disk), retry and run: the iteration completes
    # (in this process, its stages in-process: what counts is that the record resumes)
    retry(ws)
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    assert_same_metrics(state(ws)["history"][-1]["val"], state(tiny_runs["ws"])["history"][-1]["val"])


@pytest.mark.loop
def test_killing_the_loop_during_generate_kills_its_pool(tmp_path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    assert flywheel(ws, "init", "--preset", "tiny", "--wandb-group", "kill").returncode == 0
    edit_state(ws, lambda d: d["config"].update(golden_val_seeds=list(range(900, 940))))  # 410 deals to solve
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli.flywheel", "--once"], cwd=ws, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while True:  # marker: generate under way, with the kernel's worker processes started
        below = descendants(proc.pid)
        cur = (yaml.safe_load((ws / "state.yaml").read_text()) or {}).get("current") or {}
        if cur.get("stage") == "generate" and len(below) >= 3:
            break
        assert proc.poll() is None and time.time() < deadline, "the loop never started its generate pool"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in below), 60, f"the loop's processes {sorted(below)} to die with it")
    snap = json.loads(flywheel(ws, "status", "--json").stdout)
    assert snap["status"] == "crashed" and snap["current"]["stage"] == "generate"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (every write fails: disk full)")
def test_a_stage_log_on_a_full_disk_never_raises_nor_masks_the_stage_outcome() -> None:
    """The stage log is display-only: on a full disk its lines are dropped, and closing it (in the
    runner's ``finally``) raises nothing that would replace the stage's own error in the record."""
    import logging

    from forge.flywheel.runner import _papermill_log

    handler = _papermill_log(Path("/dev/full"))
    try:
        logging.getLogger("papermill").info("a line the notebook printed " * 50)
    finally:
        logging.getLogger("papermill").removeHandler(handler)
    handler.close()  # a buffered FileHandler raised ENOSPC here, hiding a StageFailed behind a bare OSError
    handler.close()  # and twice is harmless


def test_the_stage_log_is_written_unbuffered_for_the_live_panel(tmp_path) -> None:
    import logging

    from forge.flywheel.runner import _papermill_log

    path = tmp_path / "stage.log"
    handler = _papermill_log(path)
    try:
        logging.getLogger("papermill").info("epoch 1/3")
        logging.getLogger("papermill").info("Executing Cell 4---------------------------------------")
        assert path.read_text() == "epoch 1/3\n"  # readable before close; papermill's own noise filtered
    finally:
        logging.getLogger("papermill").removeHandler(handler)
        handler.close()


def test_a_kernel_stopped_by_an_interruption_is_not_reported_again_as_a_traceback(caplog) -> None:
    """Ctrl+C or SIGTERM mid-cell: nbclient's pending execution fails with DeadKernelError once the kernel is
    stopped, and asyncio reports that task's exception ("never retrieved", with a traceback) when it is
    collected; the loop has said what happened in one line already (seen under load, SIGTERM test)."""
    import asyncio
    import gc
    import logging

    from nbclient.exceptions import DeadKernelError

    from forge.flywheel import runner

    async def dies() -> None:
        raise DeadKernelError("Kernel died")

    def orphan() -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(dies())
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        del task
        gc.collect()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        orphan()
        assert "never retrieved" in caplog.text and "DeadKernelError" in caplog.text  # asyncio's own report
        caplog.clear()
        logging.getLogger("asyncio").addFilter(runner._QUIET_DEAD_KERNEL)
        try:
            orphan()
        finally:
            logging.getLogger("asyncio").removeFilter(runner._QUIET_DEAD_KERNEL)
    assert "never retrieved" not in caplog.text
