"""The README's main install is the research environment: JupyterLab and polars come with it.

A fresh virtual environment is made exactly as the README's main command makes it
(``python3 -m venv X && X/bin/pip install -e <repo>``, no extra; without bytecode compilation), then asked to import
``jupyterlab`` and ``polars`` and to run the ``jupyter-lab`` command. pip's cache makes the
install quicker on a machine that installed the project before; it is still the slowest test
here (about a minute), so it runs once, in its own temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]
PYTHON3 = shutil.which("python3") or sys.executable


def run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_main_install_brings_jupyterlab_and_polars(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = run([PYTHON3, "-m", "venv", str(venv)], tmp_path, 120)
    assert made.returncode == 0, made.stderr
    # --no-compile: the same files, without compiling every installed module to bytecode up front (the
    # interpreter does that for what it imports); it is half the install's CPU time on 2 cores
    installed = run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "-e", str(REPO)], tmp_path, 900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    probe = run([str(venv / "bin" / "python"), "-c",
                 "import jupyterlab, polars, forge; print(jupyterlab.__version__, polars.__version__)"], tmp_path, 120)
    assert probe.returncode == 0, probe.stderr
    lab = venv / "bin" / "jupyter-lab"
    assert lab.is_file() and os.access(lab, os.X_OK), "the main install has no jupyter-lab command"
    version = run([str(lab), "--version"], tmp_path, 120)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    # the jupyter front command finds lab too (the "Jupyter command `jupyter-lab` not found")
    sub = run([str(venv / "bin" / "jupyter"), "lab", "--version"], tmp_path, 120)
    assert sub.returncode == 0 and sub.stdout.strip() == version.stdout.strip(), sub.stderr


if __name__ == "__main__":  # pragma: no cover - `python tests/test_install.py` times the install
    raise SystemExit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "--durations=1"]))
