"""The archive without a kernel: HTML exports beside each executed notebook, and its rows as data.

The archive's index page is presentation and lives in :mod:`forge.ui.archive_page`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text
from forge.flywheel.paths import Workspace
from forge.flywheel.records import to_plain
from forge.flywheel.state import State, load_state
from forge.flywheel.status import cell, pick


@functools.cache
def _exporter():
    """One exporter per process: building it (templates, styles) costs more than an export."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


def export_html(notebook: Path) -> Path:
    """Write ``<notebook>.html`` beside an executed notebook (outputs as they were, no re-run)."""
    import nbformat

    body, _ = _exporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    out = notebook.with_suffix(".html")
    atomic_write_text(out, body)
    return out


def iteration_rows(state: State) -> list[dict[str, Any]]:
    """One row per iteration: finished ones from history, plus the current one if any."""
    rows: list[dict[str, Any]] = [{**h.to_dict(), "status": "done"} for h in state.history]
    if state.current is not None:
        cur = state.current
        rows.append({"iteration": cur.iteration, "seed_range": cur.seed_range, "notebooks": cur.notebooks,
                     "status": state.status if state.status != "ready" else "incomplete",
                     "error": state.last_error, "timings": cur.timings,
                     "provenance": to_plain(cur.provenance), "attempts": to_plain(cur.attempts)})
    for row in rows:
        row["modified"] = sorted(s for s, p in (row.get("provenance") or {}).items() if p.get("modified"))
    return rows


def format_archive(root: str | os.PathLike = ".") -> str:
    """The archive as a text table (``python -m forge.cli.flywheel archive``)."""
    ws = Workspace.at(root)
    state = load_state(ws.root)
    labels = ["iter", "seeds", "status", "accuracy", "Q-gap", "blunder", "play-out lost", "notebooks (archive/)",
              "modified", "failed attempts"]
    rows = [labels]
    for row in iteration_rows(state):
        books = row.get("notebooks") or {}
        folder = Path(next(iter(books.values()))).parent.name if books else "-"
        rows.append([
            str(row["iteration"]), cell(row.get("seed_range")), row["status"],
            cell(pick(row, ("val", "accuracy"))), cell(pick(row, ("val", "q_gap"))),
            cell(pick(row, ("val", "blunder_rate"))), cell(pick(row, ("playout", "playout_points_lost"))),
            f"{folder}/ ({len(books)} stages)" if books else "-",
            ", ".join(row["modified"]) or "-",
            ", ".join(f"{a['stage']} ({a['notebook'] or 'no notebook'})" for a in row.get("attempts") or []) or "-",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(labels))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    index = ws.root / "archive" / "index.html"
    lines.append(f"\nindex: {index if index.exists() else '(not written yet)'}")
    return "\n".join(lines)
