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


def test_the_kernelspec_is_installed_once_even_by_processes_racing(tmp_path) -> None:
    """Two loops (or parallel test workers) in a fresh environment both register the kernel: one
    wins, the other keeps its spec, nothing half-written or temporary is left; a stale spec (another
    interpreter) is rewritten to this one."""
    import json
    import subprocess
    import sys

    code = ("import sys; sys.prefix = sys.argv[1]\n"
            "from forge.flywheel.runner import ensure_kernel; ensure_kernel()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    assert [p.name for p in kernels.iterdir()] == ["forge"]
    spec = kernels / "forge" / "kernel.json"
    assert sys.executable in json.loads(spec.read_text())["argv"]
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "argv": ["/gone/python", "-m", "ipykernel_launcher"]}))
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    assert sys.executable in json.loads(spec.read_text())["argv"]
    assert json.loads(spec.read_text())["display_name"] == "Python (forge)"
