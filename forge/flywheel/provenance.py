"""Notebook provenance: which code a stage ran, and whether it differs from the committed notebook.

The loop runs whatever sits in ``notebooks/`` (a scratch cell added while stepping through a
notebook in JupyterLab runs too), so every executed stage records the sha256 of its notebook's
code cells and compares them with the version committed in git (``HEAD``); a difference is
marked "modified" and its code-cell diff is archived beside the executed notebook.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text
from forge.flywheel.paths import NOTEBOOKS, Workspace
from forge.flywheel.records import Provenance


def code_cells(notebook: dict[str, Any]) -> list[str]:
    """A notebook's code cells (its JSON, read as is: nbformat's schema validation costs seconds to
    import) as the user wrote them, papermill's injected parameters left out."""
    out = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        out.append(("".join(src) if isinstance(src, list) else src).rstrip())
    return out


def read_notebook(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def notebook_sha256(name: str) -> str:
    """sha256 of ``notebooks/<name>``'s code cells (outputs, metadata and markdown do not count)."""
    cells = code_cells(read_notebook(NOTEBOOKS / name))
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


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


def record(ws: Workspace, name: str, iteration: int) -> Provenance:
    """The provenance of stage notebook ``name`` as it is now; a modification's diff goes to the archive."""
    source = NOTEBOOKS / name
    current = code_cells(read_notebook(source))
    committed = committed_code(name)
    modified = None if committed is None else committed != current
    diff = None
    if modified:
        path = ws.archive(iteration) / f"{Path(name).stem}.diff"
        atomic_write_text(path, code_diff(committed, current, name) + "\n")
        diff = ws.rel(path)
    return Provenance(source=f"notebooks/{name}", source_sha256=notebook_sha256(name), modified=modified,
                      diff=diff)
