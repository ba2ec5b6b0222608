"""Static HTML views of the flywheel: the status panel, stage result tables, the archive index.

Plain HTML with inline styles so the same markup works inside JupyterLab, in archived
notebooks rendered by nbconvert/nbviewer, and as a standalone page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from forge.flywheel.status import HISTORY_COLUMNS, cell, pick

BADGE_COLOURS = {
    "ready": "#2b7de9", "running": "#1a9850", "failed": "#d73027", "done": "#6a3d9a", "crashed": "#e66101",
}
_TABLE = "border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0"
_TD = "border:1px solid #ddd;padding:2px 6px;text-align:right"
_TH = _TD + ";background:#f4f4f4"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link(root: Path, target: str | None, base: Path, label: str) -> str:
    """An <a> to a workspace file, relative to ``base`` (the folder of the page showing it)."""
    if not target:
        return "-"
    path = root / target
    html_version = path.with_suffix(".html")
    if html_version.is_file():
        path = html_version
    href = os.path.relpath(path, base)
    return f'<a href="{esc(href)}" target="_blank">{esc(label)}</a>'


def ago(seconds: float | None) -> str:
    """A readable age: 42s ago, 5 min ago, 3.2 h ago, 4 days ago."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def badge(status: str) -> str:
    colour = BADGE_COLOURS.get(status, "#777")
    return (f'<span class="forge-badge" style="background:{colour};color:#fff;border-radius:4px;'
            f'padding:1px 8px;font-weight:600">{esc(status)}</span>')


def wandb_cell(info: dict[str, Any] | None, root: Path, base: Path) -> str:
    if not info:
        return "-"
    if info.get("url"):
        return f'<a href="{esc(info["url"])}" target="_blank">run</a>'
    if info.get("error"):
        return f'<span title="{esc(info["error"])}">error</span>'
    if info.get("dir"):
        return f'<code title="{esc(info.get("sync", ""))}">{esc(info.get("sync") or info["dir"])}</code>'
    return "-"


def history_table(history: list[dict[str, Any]], root: Path, base: Path) -> str:
    head = "".join(f'<th style="{_TH}">{esc(label)}</th>' for label, _ in HISTORY_COLUMNS)
    head += f'<th style="{_TH}">notebooks</th><th style="{_TH}">W&amp;B</th>'
    rows = []
    for h in history:
        cells = []
        for label, path in HISTORY_COLUMNS:
            value = pick(h, path)
            if label == "minutes" and isinstance(value, (int, float)):
                text = f"{value / 60:.1f}"
            else:
                text = cell(value)
            cells.append(f'<td style="{_TD}">{esc(text)}</td>')
        books = " ".join(link(root, nb, base, stage[:3]) for stage, nb in (h.get("notebooks") or {}).items())
        cells.append(f'<td style="{_TD}">{books or "-"}</td>')
        cells.append(f'<td style="{_TD};text-align:left">{wandb_cell(h.get("wandb"), root, base)}</td>')
        best = ' style="background:#eef8ee"' if h.get("is_best") else ""
        rows.append(f"<tr{best}>{''.join(cells)}</tr>")
    return f'<table class="forge-history" style="{_TABLE}"><tr>{head}</tr>{"".join(rows)}</table>'


def panel_html(snap: dict[str, Any], base: str | os.PathLike | None = None, plot_png: str | None = None) -> str:
    """The status panel: badge, current iteration and stage, heartbeat, error, next action, history."""
    root = Path(snap["root"])
    base = Path(base) if base is not None else root
    cur = snap.get("current")
    lines = [
        '<div class="forge-panel" style="font:13px/1.5 system-ui,sans-serif;border:1px solid #ccc;'
        'border-radius:6px;padding:8px 12px;margin:4px 0">',
        f'<div><b>forge flywheel</b> {badge(snap["status"])} &nbsp;preset <b>{esc(snap["preset"])}</b>'
        f' &nbsp;iteration <b class="forge-iteration">{esc(snap["iteration"])}</b>'
        f' &nbsp;seeds trained <b class="forge-total-seeds">{esc(snap["total_seeds"])}</b></div>',
    ]
    if cur:
        done = ", ".join(cur["stages_completed"]) or "none"
        process = ""
        if snap["status"] in ("running", "crashed"):  # who runs it only matters while it (should) run
            process = (f', heartbeat <span class="forge-heartbeat">{esc(ago(cur.get("heartbeat_age_s")))}</span>,'
                       f' pid {esc(cur.get("pid"))} on {esc(cur.get("host"))}')
        lines.append(
            f'<div>current: iteration {esc(cur["iteration"])}, seeds {esc(cell(cur["seed_range"]))}, stage '
            f'<b class="forge-stage">{esc(cur.get("stage") or "-")}</b> ({esc(cur["progress"])}; done: {esc(done)})'
            f'{process}</div>'
        )
    if snap.get("last_error"):
        lines.append(f'<div style="color:#b2182b">last error: <code class="forge-error">'
                     f'{esc(snap["last_error"])}</code></div>')
    if snap.get("next_action"):
        lines.append(f'<div>next: <span class="forge-next">{esc(snap["next_action"])}</span></div>')
    wb = snap.get("wandb") or {}
    report = f' &middot; <a href="{esc(wb["report"])}" target="_blank">group report</a>' if wb.get("report") else ""
    lines.append(f'<div style="color:#555">W&amp;B: project {esc(wb.get("project"))}, group {esc(wb.get("group"))}, '
                 f'mode {esc(wb.get("mode"))}{report}</div>')
    if snap.get("history"):
        lines.append(history_table(snap["history"], root, base))
    if plot_png:
        lines.append(f'<img alt="Q-gap and accuracy against seeds trained" src="data:image/png;base64,{plot_png}"/>')
    lines.append("</div>")
    return "\n".join(lines)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def result_table(result: dict[str, Any]) -> str:
    """A stage's result as a two-column table (nested keys flattened as ``a.b``)."""
    flat: dict[str, Any] = {}
    _flatten("", result, flat)
    rows = []
    for key, value in flat.items():
        if isinstance(value, float):
            text = f"{value:.4f}"
        elif isinstance(value, list) and len(value) > 8:
            text = f"{len(value)} items: {', '.join(map(str, value[:4]))}, ..."
        else:
            text = str(value)
        rows.append(f'<tr><th style="{_TH};text-align:left">{esc(key)}</th>'
                    f'<td style="{_TD};text-align:left">{esc(text)}</td></tr>')
    return f'<table style="{_TABLE}">{"".join(rows)}</table>'
