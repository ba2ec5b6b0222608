"""The header at the top of every archived notebook: which iteration and stage, who ran it, and a link
back to the archive's index.

The archive is read from its HTML exports (a browser, JupyterLab's HTML viewer) as often as from
the notebooks, so each one says where it belongs and how to get back, with a link relative to
its own folder (``archive/iter-NNNN/`` or a failed attempt's ``attempt-K/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text

#: Tag of the header cell (not a cell of the source notebook: failing-cell numbers skip it; the value is
#: what archived notebooks carry since before the module was renamed).
HEADER_TAG = "forge-archive-note"
INDEX = "index.html"


def index_link(notebook: Path, archive_root: Path) -> str:
    """``archive/index.html`` relative to the folder of an archived notebook."""
    return Path(os.path.relpath(archive_root / INDEX, notebook.parent)).as_posix()


def header_markdown(notebook: Path, archive_root: Path, parts: list[str]) -> str:
    return ("**Archived notebook** · " + " · ".join(parts)
            + f" · [← the archive index: every iteration, compare any two]({index_link(notebook, archive_root)})")


def with_header(nb: Any, notebook: Path, archive_root: Path, parts: list[str]) -> Any:
    """``nb`` (an nbformat node) with the note as its first cell (replacing an earlier note)."""
    import nbformat

    text = header_markdown(notebook, archive_root, parts)
    cell = nbformat.v4.new_markdown_cell(text, metadata={"tags": [HEADER_TAG]})
    if nb.get("nbformat_minor", 5) < 5:
        cell.pop("id", None)  # cell ids came with nbformat 4.5
    else:
        cell["id"] = HEADER_TAG
    nb.cells = [cell] + [c for c in nb.cells if HEADER_TAG not in c.get("metadata", {}).get("tags", [])]
    return nb


def add_header(notebook: Path, archive_root: Path, parts: list[str], source: Path | None = None) -> Path:
    """Write ``source`` (default: the notebook itself) to ``notebook`` with the note on top, atomically."""
    import nbformat

    nb = nbformat.read(source or notebook, as_version=4)
    atomic_write_text(notebook, nbformat.writes(with_header(nb, notebook, archive_root, parts)))
    return notebook
