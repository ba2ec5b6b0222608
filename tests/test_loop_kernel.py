"""The loop's one kernel: every notebook starts from a fresh namespace and execution count, and a
kernel that died is started again before the next notebook."""

from __future__ import annotations

import os
import signal

import pytest
from jupyter_core.utils import run_sync

from forge.flywheel.paths import Workspace
from forge.flywheel.runner import LoopKernel


async def _run(km, code: str) -> dict:
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        outputs: list[dict] = []
        reply = await kc.execute_interactive(code, timeout=60, output_hook=outputs.append)
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        return {"reply": reply["content"], "text": text}
    finally:
        kc.stop_channels()


@pytest.fixture
def kernel(tmp_path):
    with LoopKernel(Workspace.at(tmp_path)) as k:
        yield k


def test_each_notebook_gets_a_fresh_namespace_and_count(kernel) -> None:
    kernel.ready()
    first = run_sync(_run)(kernel.km, "leftover = 42\nprint('set')")
    assert first["text"].strip() == "set" and first["reply"]["execution_count"] == 1
    kernel.ready()  # the next notebook
    again = run_sync(_run)(kernel.km, "print('leftover' in globals())")
    assert again["text"].strip() == "False" and again["reply"]["execution_count"] == 1


def test_a_dead_kernel_is_started_again(kernel, tmp_path) -> None:
    kernel.ready()
    pid = int(run_sync(_run)(kernel.km, "import os; print(os.getpid())")["text"])
    os.kill(pid, signal.SIGKILL)
    kernel.ready()
    new_pid = int(run_sync(_run)(kernel.km, "import os; print(os.getpid())")["text"])
    assert new_pid != pid
    env = run_sync(_run)(kernel.km, "import os; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('FORGE_LOOP'))")
    assert env["text"].split() == ["PASSIVE", "1"]  # the CLIs' thread settings reach the loop's kernels
    assert kernel.log.is_file() and kernel.log.parent == tmp_path / "runs" / "logs"
