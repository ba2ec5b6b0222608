"""Notebook provenance: a stage notebook edited in the working tree makes its stage run again, and the
archive, the panel and ``status`` say it ran modified, with the diff of its code cells kept.

The loop runs the notebooks of the forge checkout it imports, so this test works on a copy of the
checkout (its own git repository, PYTHONPATH first) and edits the copy, never the real notebooks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.loop import flywheel, state

pytestmark = pytest.mark.loop

REPO = Path(__file__).resolve().parents[1]
SCRATCH = "print('a scratch cell left in while exploring')"


def _checkout_copy(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "forge", dest / "forge", ignore=ignore)
    shutil.copytree(REPO / "notebooks", dest / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    git = ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], check=True)
    return dest


def test_an_edited_stage_notebook_reruns_its_stage_and_is_marked_modified(stage_notebooks_by_hand, tmp_path) -> None:
    """An iteration stepped through by hand (conftest's ``stage_notebooks_by_hand``, a copy of it: the
    stage notebooks as they are, run by papermill), then the train notebook edited in the copy of the
    checkout, and the loop run from that checkout."""
    from forge.ui.panel import render

    repo = _checkout_copy(tmp_path / "checkout")
    env = {"PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ws = tmp_path / "ws"
    shutil.copytree(stage_notebooks_by_hand["ws"], ws, symlinks=True)
    trained = json.loads((ws / "runs/iter-0002/results/train.json").read_text())
    generated = json.loads((ws / "runs/iter-0002/results/generate.json").read_text())

    book = repo / "notebooks" / "03_train.ipynb"  # as autosave leaves it after exploring in JupyterLab
    nb = json.loads(book.read_text())
    nb["cells"].append({"cell_type": "code", "id": "scratch", "metadata": {}, "execution_count": None,
                        "outputs": [], "source": [SCRATCH]})
    book.write_text(json.dumps(nb, indent=1))

    status = flywheel(ws, "status", env=env)
    assert "stale: train will run again (the stage notebook's code changed)" in status.stdout
    res = flywheel(ws, "--once", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "generate  already done" in res.stdout and "tokenize  already done" in res.stdout
    assert "train     runs again: the stage notebook's code changed" in res.stdout
    assert "notebook modified" in res.stdout

    entry = state(ws)["history"][-1]
    assert entry["fingerprints"]["train"] != trained["fingerprint"]
    prov = entry["provenance"]
    # the edited notebook is marked modified, the one the loop ran unedited after it is not; a stage done
    # by hand before the edit keeps the provenance its result recorded
    assert prov["train"]["modified"] is True and prov["evaluate"]["modified"] is False
    assert prov["generate"] == generated["provenance"]
    assert SCRATCH in (ws / prov["train"]["diff"]).read_text()
    executed = json.loads((ws / entry["notebooks"]["train"]).read_text())
    assert any(SCRATCH in "".join(c["source"]) for c in executed["cells"])  # what really ran is archived
    index = (ws / "archive" / "index.html").read_text()
    assert index.count("forge-modified") == 1
    assert "forge-modified" in render(ws)
