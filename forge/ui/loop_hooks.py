"""What the loop's front ends (the flywheel command, the dashboard's background loop) do as it goes:
the archive's HTML, which the headless engine leaves to them. Pass :data:`HOOKS` to
:func:`forge.flywheel.loop.run_loop`.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text


@functools.cache
def _exporter():
    """One exporter per process: building it (templates, styles) costs more than an export."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


def page_title(notebook: Path) -> str:
    """``03_train · iteration 3``: what a browser tab of an archived page says (nbconvert's default: "Notebook")."""
    match = re.fullmatch(r"iter-(\d+)", notebook.parent.name)
    return f"{notebook.stem} · iteration {int(match.group(1))}" if match else notebook.stem


def export_html(notebook: Path) -> Path:
    """Write ``<notebook>.html`` beside an executed notebook (outputs as they were, no re-run)."""
    import nbformat

    body, _ = _exporter().from_notebook_node(nbformat.read(notebook, as_version=4),
                                             resources={"metadata": {"name": page_title(notebook)}})
    out = notebook.with_suffix(".html")
    atomic_write_text(out, body)
    return out


def on_notebook(notebook: Path) -> None:
    """HTML beside an archived notebook; a failed export is reported, never fatal."""
    try:
        export_html(notebook)
    except Exception as exc:  # noqa: BLE001 - the .ipynb is the record; HTML is a convenience
        print(f"warning: could not export {notebook} to HTML: {exc}", file=sys.stderr)


def on_record(root: str | os.PathLike) -> None:
    """The archive index, refreshed; a failure is reported, never fatal."""
    from forge.ui.archive_index import write_index

    try:
        write_index(root)
    except Exception as exc:  # noqa: BLE001 - the index is a view; the record is state.yaml
        print(f"warning: archive index not written: {exc}", file=sys.stderr)


#: The loop's presentation hooks, as ``run_loop`` takes them.
HOOKS: dict[str, Any] = {"on_notebook": on_notebook, "on_record": on_record}
