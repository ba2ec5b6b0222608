"""The archive without a kernel: HTML exports beside each executed notebook, and its rows as data.

The archive's index page is presentation and lives in :mod:`forge.ui.archive_page`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write_text
from forge.flywheel.metric_info import column_info
from forge.flywheel.paths import Workspace
from forge.flywheel.records import PRIMARY_METRIC, best_of, metric_label, to_plain
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
                     "provenance": to_plain(cur.provenance), "attempts": to_plain(cur.attempts),
                     "by_hand": list(cur.by_hand)})
    for row in rows:
        row["modified"] = sorted(s for s, p in (row.get("provenance") or {}).items() if p.get("modified"))
    return rows


def format_archive(root: str | os.PathLike = ".") -> str:
    """The archive as a text table (``python -m forge.cli.flywheel archive``)."""
    ws = Workspace.at(root)
    state = load_state(ws.root)
    metrics = [("val", "accuracy"), ("val", "q_gap"), ("val", "blunder_rate"), ("playout", "playout_points_lost")]
    labels = ["iter", "seeds", "status", "accuracy", "Q-gap", "blunder", "play-out lost", "notebooks (archive/)",
              "by hand", "modified", "failed attempts", ""]
    units = ["", "", ""] + [column_info(m).unit for m in metrics] + [""] * 5
    rows = [labels, units]
    best = best_of(state.history, *PRIMARY_METRIC)
    for row in iteration_rows(state):
        books = row.get("notebooks") or {}
        folder = Path(next(iter(books.values()))).parent.name if books else "-"
        mark = ("*" if best is not None and row["status"] == "done" and row["iteration"] == best.iteration else ""
                ) + ("!" if row.get("flags") else "")
        rows.append([
            str(row["iteration"]), cell(row.get("seed_range")), row["status"],
            *(cell(pick(row, m)) for m in metrics),
            f"{folder}/ ({len(books)} stages)" if books else "-",
            ", ".join(row.get("by_hand") or []) or "-",
            ", ".join(row["modified"]) or "-",
            ", ".join(f"{a['stage']} ({a['notebook'] or 'no notebook'})" for a in row.get("attempts") or []) or "-",
            mark,
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(labels))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"(* the best iteration by {metric_label(*PRIMARY_METRIC)}; ! a tracked metric was worse than "
                 "the best earlier iteration's when it was recorded; by hand: stages a person ran in a notebook)")
    index = ws.root / "archive" / "index.html"
    lines.append(f"\nindex: {index if index.exists() else '(not written yet)'}")
    return "\n".join(lines)
