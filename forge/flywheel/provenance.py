"""Notebook provenance: which code a stage ran, and whether it differs from the committed notebook.

The loop runs whatever sits in ``notebooks/`` (a scratch cell added while stepping through a
notebook in JupyterLab runs too), so every executed stage records the sha256 of its notebook's
code cells and compares them with the version committed in git (``HEAD``); a difference is
marked "modified" and its code-cell diff is archived beside the executed notebook.
"""

from __future__ import annotations

import difflib
import json
import subprocess
from pathlib import Path

from forge.atomic import atomic_write_text
from forge.flywheel.fingerprint import code_cells, notebook_sha256, read_notebook
from forge.flywheel.paths import NOTEBOOKS, STAGE_NOTEBOOKS, Workspace
from forge.flywheel.records import Provenance


def committed_code(name: str) -> list[str] | None:
    """Code cells of ``notebooks/<name>`` as committed in git HEAD; None outside a git checkout."""
    try:
        res = subprocess.run(["git", "-C", str(NOTEBOOKS), "show", f"HEAD:./{name}"], capture_output=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    try:
        return code_cells(json.loads(res.stdout.decode("utf-8")))
    except (ValueError, UnicodeDecodeError):
        return None


def code_diff(committed: list[str], current: list[str], name: str) -> str:
    """A unified diff of the code cells (cells separated by a marker line)."""
    def lines(cells: list[str]) -> list[str]:
        out = []
        for i, src in enumerate(cells, 1):
            out += [f"# --- code cell {i}"] + src.splitlines()
        return out

    return "\n".join(difflib.unified_diff(lines(committed), lines(current), f"{name} (committed)",
                                         f"{name} (as run)", lineterm=""))


def record(ws: Workspace, stage: str, iteration: int) -> Provenance:
    """The provenance of ``stage``'s notebook as it is now; a modification's diff goes to the archive."""
    name = STAGE_NOTEBOOKS[stage]
    source = NOTEBOOKS / name
    current = code_cells(read_notebook(source))
    committed = committed_code(name)
    modified = None if committed is None else committed != current
    diff = None
    if modified:
        path = ws.archive(iteration) / f"{Path(name).stem}.diff"
        atomic_write_text(path, code_diff(committed, current, name) + "\n")
        diff = ws.rel(path)
    return Provenance(source=f"notebooks/{name}", source_sha256=notebook_sha256(stage), modified=modified,
                      diff=diff)
