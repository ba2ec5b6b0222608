"""``archive/index.html``: every iteration with its metrics, status, stage notebooks and W&B run.

A static page (no kernel needed) refreshed by the CLI whenever the loop records an iteration or
a failure (the loop's ``on_record`` hook) and by ``flywheel archive``.
"""

from __future__ import annotations

import os
from pathlib import Path

from forge.atomic import atomic_write_text
from forge.flywheel.archive import iteration_rows
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import ERROR_ANCHOR
from forge.flywheel.stages import REGISTRY
from forge.flywheel.state import load_state
from forge.flywheel.status import snapshot
from forge.ui.render import LEGEND, ROW_BEST, ROW_FLAGGED, badge, esc, link, wandb_cell
from forge.ui.text import HISTORY_COLUMNS, column_text

INDEX = "index.html"


def write_index(root: str | os.PathLike = ".") -> Path:
    """Write the index page for the workspace at ``root``; returns its path."""
    ws = Workspace.at(root)
    state = load_state(ws.root)
    snap = snapshot(ws.root, state)
    base = ws.root / "archive"
    base.mkdir(parents=True, exist_ok=True)
    head = "".join(f"<th>{esc(label)}</th>" for label, _ in HISTORY_COLUMNS)
    head += "<th>status</th>" + "".join(f"<th>{s}</th>" for s in REGISTRY) + "<th>failed attempts</th><th>W&amp;B</th>"
    body = []
    for row in iteration_rows(state):
        cells = [f"<td>{esc(column_text(label, row, path))}</td>" for label, path in HISTORY_COLUMNS]
        title = f' title="{esc(row["error"])}"' if row.get("error") else ""
        cells.append(f"<td{title}>{badge(row['status'])}</td>")
        books = row.get("notebooks") or {}
        for s, stage in REGISTRY.items():
            label = stage.notebook.split("_")[1].split(".")[0]
            mark = badge("modified", f"{s} ran a notebook that differs from the committed one", "forge-modified") \
                if s in row["modified"] else ""
            cells.append(f"<td>{link(ws.root, books.get(s), base, label)} {mark}</td>")
        attempts = " ".join(
            link(ws.root, a.get("notebook"), base, f"{a['number']}: {a['stage']}" +
                 (f" cell {a['cell']}" if a.get("cell") else ""), ERROR_ANCHOR) if a.get("notebook")
            else esc(a["stage"])
            for a in row.get("attempts") or [])
        cells.append(f"<td>{attempts or '-'}</td>")
        cells.append(f"<td>{wandb_cell(row.get('wandb'), ws.root, base)}</td>")
        colour = ROW_FLAGGED if row.get("flags") else ROW_BEST if row.get("is_best") else ""
        style = f' style="background:{colour}"' if colour else ""
        body.append(f"<tr{style}>{''.join(cells)}</tr>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>forge archive</title>
<style>body{{font:14px/1.5 system-ui,sans-serif;margin:24px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}} th{{background:#f4f4f4}}</style></head>
<body><h1>forge flywheel archive</h1>
<p>status {badge(snap['status'])} &middot; preset {esc(snap['preset'])} &middot; W&amp;B group
{esc(state.wandb.get('group'))} ({esc(state.wandb.get('mode'))}) &middot; seeds trained {esc(snap['total_seeds'])}</p>
<table><tr>{head}</tr>
{''.join(body)}
</table>{LEGEND}</body></html>
"""
    out = base / INDEX
    atomic_write_text(out, page)
    return out
