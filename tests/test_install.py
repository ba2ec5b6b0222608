"""The README's main install is the research environment: JupyterLab and polars come with it.

pip resolves the README's main install (``pip install -e <repo>``, no extra) from nothing, as on a
fresh machine (``--dry-run --ignore-installed --report``: the same resolver and index as the real
install, without unpacking 1.7 GB of wheels, which took 50-90 s of the suite on 2 cores), and the
set it would install must hold ``jupyterlab`` and ``polars`` (the issue behind this test: a main
install without the test extra had no ``jupyter-lab`` command). The ``jupyter-lab`` command itself
comes with the jupyterlab distribution: this environment's copy of it must declare the console
script and run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_main_install_brings_jupyterlab_and_polars(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    resolved = run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                    "--report", str(report), "-e", str(REPO)], tmp_path, 600)
    assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-3000:]
    items = json.loads(report.read_text())["install"]
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in items}
    requested = [item["metadata"]["name"] for item in items if item.get("requested")]
    assert requested == ["forge"], requested  # the project alone, no extra: the README's main command
    assert {"jupyterlab", "polars", "torch", "lightning", "papermill", "ipywidgets"} <= names, sorted(names)
    assert not {"pytest", "selenium", "ruff"} & names, "the main install pulled in the test extra"

    # the jupyter-lab command is jupyterlab's console script
    scripts = {ep.name: ep.value for ep in metadata.distribution("jupyterlab").entry_points
               if ep.group == "console_scripts"}
    assert "jupyter-lab" in scripts, scripts
    lab = shutil.which("jupyter-lab", path=str(Path(sys.executable).parent))
    assert lab, "this environment's jupyterlab installed no jupyter-lab command"
    version = run([lab, "--version"], tmp_path, 120)
    assert version.returncode == 0 and version.stdout.strip() == metadata.version("jupyterlab"), version.stderr


if __name__ == "__main__":  # pragma: no cover - `python tests/test_install.py` times the resolution
    raise SystemExit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "--durations=1"]))
