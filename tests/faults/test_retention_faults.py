"""A kill (SIGKILL) in the middle of a prune: the workspace stays consistent (every archived notebook is
there, plain or compressed; every link of the views resolves) and the next prune finishes the job."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers.processes import wait_for
from helpers.retention_workspace import add_iteration, new_workspace

from forge.flywheel import retention
from forge.flywheel.loop import run_loop
from forge.flywheel.state import load_state, save_state
from forge.ui.render import history_table

ROOT = Path(__file__).resolve().parents[2]

# Prunes the workspace, stopping (for the kill) inside the third notebook's compressed write.
_PRUNE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from forge.flywheel import retention
    from forge.flywheel.state import load_state
    root, marker = Path(sys.argv[1]), Path(sys.argv[2])
    calls = []
    plain = retention.without_images
    def stalled(data):
        calls.append(1)
        if len(calls) == 3:
            marker.write_text("inside the write")
            time.sleep(600)
        return plain(data)
    retention.without_images = stalled
    retention.prune(root, load_state(root))
""")


def _consistent(ws, state) -> None:
    for entry in state.history:
        for rel in entry.notebooks.values():
            path = ws.root / rel
            assert path.is_file() or path.with_name(path.name + ".gz").is_file(), f"{rel}: neither plain nor .gz"
    page = history_table([h.to_dict() for h in state.history], ws.root, ws.root / "archive", None)
    for href in re.findall(r'href="([^"]+)"', page):
        assert href.startswith("https://") or (ws.root / "archive" / href).exists(), href
    assert (ws.run_dir(state.history[-1].iteration) / "model.ckpt").is_file()  # the next iteration's start


def test_kill_mid_prune_then_next_prune_finishes(tmp_path: Path) -> None:
    ws, state = new_workspace(tmp_path / "ws", retain_last=2, replay_iters=1, retain_images=0, stop_iterations=4)
    for it, gap in enumerate([0.9, 0.8, 0.7, 0.6], 1):
        add_iteration(ws, state, it, gap)
    state.status = "done"  # so that the loop started below only finishes the prune, then stops
    save_state(ws.root, state)
    marker = tmp_path / "stalled"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _PRUNE, str(ws.root), str(marker)], env=env)
    try:
        wait_for(marker.is_file, 120, "the prune to reach its third notebook")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    archive = ws.archive(1)
    assert list(archive.glob(".*.tmp")), "the kill was meant to land inside a compressed write"
    assert not (ws.run_dir(1) / retention.PRUNED).exists()  # not marked done
    state = load_state(ws.root)
    _consistent(ws, state)
    said: list[str] = []
    assert run_loop(ws.root, say=said.append) == 0  # the next loop finishes the prune as it starts
    assert "retention: pruned iteration(s) 1-2; released the tokens of 1-3" in said[0], said
    assert not list(ws.root.rglob(".*.tmp"))
    for it in (1, 2):
        assert (ws.run_dir(it) / retention.PRUNED).is_file()
        assert sorted(p.name for p in ws.archive(it).iterdir()) == [
            "01_generate.ipynb.gz", "02_tokenize.ipynb.gz", "03_train.ipynb.gz", "04_evaluate.ipynb.gz"]
        assert not (ws.run_dir(it) / "model.ckpt").exists()
    _consistent(ws, state)
    assert not retention.prune(ws.root, state)  # nothing left
