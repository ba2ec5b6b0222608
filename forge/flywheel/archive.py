"""Archive review without a kernel: HTML exports beside each executed notebook and an index page."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from forge.atomic import atomic_write_text
from forge.flywheel.notebook_libs import skip_iri_format_checker
from forge.flywheel.paths import STAGE_NOTEBOOKS, Workspace
from forge.flywheel.state import STAGES, State, load_state
from forge.flywheel.status import HISTORY_COLUMNS, cell, pick, snapshot

INDEX = "index.html"


@functools.cache
def _exporter():
    """One exporter per process: building it (templates, styles) costs more than an export."""
    skip_iri_format_checker()
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


def export_html(notebook: Path) -> Path:
    """Write ``<notebook>.html`` beside an executed notebook (outputs as they were, no re-run)."""
    skip_iri_format_checker()
    import nbformat

    body, _ = _exporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    out = notebook.with_suffix(".html")
    atomic_write_text(out, body)
    return out


def iteration_rows(state: State) -> list[dict]:
    """One row per iteration: finished ones from history, plus the current one if any."""
    rows = [{**h, "status": "done"} for h in state.history]
    if state.current is not None:
        cur = state.current
        rows.append({"iteration": cur.iteration, "seed_range": cur.seed_range, "notebooks": cur.notebooks,
                     "status": state.status if state.status != "ready" else "incomplete",
                     "error": state.last_error})
    return rows


def write_index(root: str | os.PathLike = ".") -> Path:
    """``archive/index.html``: every iteration with metrics, status and links to each stage's HTML."""
    from forge.ui.render import badge, esc, link, wandb_cell

    ws = Workspace.at(root)
    state = load_state(ws.root)
    snap = snapshot(ws.root, state)
    base = ws.root / "archive"
    base.mkdir(parents=True, exist_ok=True)
    head = "".join(f"<th>{esc(label)}</th>" for label, _ in HISTORY_COLUMNS)
    head += "<th>status</th>" + "".join(f"<th>{s}</th>" for s in STAGES) + "<th>W&amp;B</th>"
    body = []
    for row in iteration_rows(state):
        cells = [f"<td>{esc(cell(pick(row, path)))}</td>" for _, path in HISTORY_COLUMNS]
        status = row["status"]
        title = f' title="{esc(row["error"])}"' if row.get("error") else ""
        cells.append(f"<td{title}>{badge(status)}</td>")
        books = row.get("notebooks") or {}
        cells += [f"<td>{link(ws.root, books.get(s), base, STAGE_NOTEBOOKS[s].split('_')[1].split('.')[0])}</td>"
                  for s in STAGES]
        cells.append(f"<td>{wandb_cell(row.get('wandb'), ws.root, base)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>forge archive</title>
<style>body{{font:14px/1.5 system-ui,sans-serif;margin:24px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}} th{{background:#f4f4f4}}</style></head>
<body><h1>forge flywheel archive</h1>
<p>status {badge(snap['status'])} &middot; preset {esc(snap['preset'])} &middot; W&amp;B group
{esc(state.wandb.get('group'))} ({esc(state.wandb.get('mode'))}) &middot; seeds trained {esc(snap['total_seeds'])}</p>
<table><tr>{head}</tr>
{''.join(body)}
</table></body></html>
"""
    out = base / INDEX
    atomic_write_text(out, page)
    return out


def format_archive(root: str | os.PathLike = ".") -> str:
    """The archive as a text table (``python -m forge.cli.flywheel archive``)."""
    ws = Workspace.at(root)
    state = load_state(ws.root)
    labels = ["iter", "seeds", "status", "accuracy", "Q-gap", "blunder", "play-out lost", "notebooks (archive/)"]
    rows = [labels]
    for row in iteration_rows(state):
        books = row.get("notebooks") or {}
        folder = Path(next(iter(books.values()))).parent.name if books else "-"
        rows.append([
            str(row["iteration"]), cell(row.get("seed_range")), row["status"],
            cell(pick(row, ("val", "accuracy"))), cell(pick(row, ("val", "q_gap"))),
            cell(pick(row, ("val", "blunder_rate"))), cell(pick(row, ("playout", "playout_points_lost"))),
            f"{folder}/ ({len(books)} stages)" if books else "-",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(labels))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    index = ws.root / "archive" / INDEX
    lines.append(f"\nindex: {index if index.exists() else '(not written yet)'}")
    return "\n".join(lines)
