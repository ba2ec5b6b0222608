"""Static HTML views of the flywheel: the status panel, stage result tables, the archive index.

Plain HTML with inline styles so the same markup works inside JupyterLab, in archived
notebooks rendered by nbconvert/nbviewer, and as a standalone page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from forge.flywheel.records import PRIMARY_METRIC, TRACKED, metric_label
from forge.flywheel.runner import ERROR_ANCHOR
from forge.ui.text import HISTORY_COLUMNS, ago, cell, column_text, duration, progress_text

BADGE_COLOURS = {
    "ready": "#2b7de9", "running": "#1a9850", "failed": "#d73027", "done": "#6a3d9a", "crashed": "#e66101",
    "modified": "#b35806", "stale": "#8c510a", "best": "#1a9850", "worse": "#d73027",
}
#: Row colours of the history table, and what they mean (shown as a legend under it).
ROW_BEST, ROW_FLAGGED = "#eef8ee", "#fdf0e6"
_OTHERS = ", ".join(metric_label(*m) for m in TRACKED if m != PRIMARY_METRIC)
LEGEND = (f'<div class="forge-legend" style="font:11px/1.4 system-ui,sans-serif;color:#555">'
          f'<span style="background:{ROW_BEST};padding:0 6px">green row</span> best by '
          f'{metric_label(*PRIMARY_METRIC)} (the primary metric) &middot; <span style="background:{ROW_FLAGGED};'
          f'padding:0 6px">orange row</span> a tracked metric ({_OTHERS}) is worse than the best iteration\'s '
          f"&middot; <b>modified</b>: a stage ran a notebook that differs from the committed one</div>")
_TABLE = "border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0"
_TD = "border:1px solid #ddd;padding:2px 6px;text-align:right"
_TH = _TD + ";background:#f4f4f4"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link(root: Path, target: str | None, base: Path, label: str, anchor: str | None = None) -> str:
    """An <a> to a workspace file (its HTML export if there is one, at ``anchor``), relative to ``base``
    (the folder of the page showing it)."""
    if not target:
        return "-"
    path = root / target
    html_version = path.with_suffix(".html")
    if html_version.is_file():
        path = html_version
    href = os.path.relpath(path, base) + (f"#{anchor}" if anchor and path.suffix == ".html" else "")
    return f'<a href="{esc(href)}" target="_blank">{esc(label)}</a>'


def badge(status: str, title: str | None = None, css: str = "forge-badge") -> str:
    colour = BADGE_COLOURS.get(status, "#777")
    tip = f' title="{esc(title)}"' if title else ""
    return (f'<span class="{css}"{tip} style="background:{colour};color:#fff;border-radius:4px;'
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
        cells = [f'<td style="{_TD}">{esc(column_text(label, h, path))}</td>' for label, path in HISTORY_COLUMNS]
        modified = {s for s, p in (h.get("provenance") or {}).items() if (p or {}).get("modified")}
        books = " ".join(link(root, nb, base, stage[:3]) + (badge("modified", f"{stage} ran a modified notebook",
                                                                   "forge-modified") if stage in modified else "")
                         for stage, nb in (h.get("notebooks") or {}).items())
        cells.append(f'<td style="{_TD}">{books or "-"}</td>')
        cells.append(f'<td style="{_TD};text-align:left">{wandb_cell(h.get("wandb"), root, base)}</td>')
        flags = h.get("flags") or []
        colour = ROW_FLAGGED if flags else ROW_BEST if h.get("is_best") else ""
        attrs = f' style="background:{colour}"' if colour else ""
        if flags:
            attrs += f' class="forge-flagged" title="{esc("; ".join(flags))}"'
        rows.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return f'<table class="forge-history" style="{_TABLE}"><tr>{head}</tr>{"".join(rows)}</table>' + LEGEND


def _stage_line(snap: dict[str, Any]) -> str:
    """Each stage of the iteration in progress or next: done, to do, or stale (and why)."""
    parts = []
    for st in snap.get("stages") or []:
        if st["state"] == "stale":
            parts.append(f'{esc(st["stage"])} {badge("stale", "; ".join(st["reasons"]), "forge-stale")}')
        else:
            parts.append(f'{esc(st["stage"])} <span style="color:#555">{esc(st["state"])}</span>')
    return f'<div class="forge-stages">stages: {" &middot; ".join(parts)}</div>' if parts else ""


def _running_block(run: dict[str, Any] | None) -> str:
    """The stage under way (by the loop or by hand): progress, time in stage, the last lines it printed."""
    if not run or not run.get("active"):
        return ""
    who = "by hand" if run.get("by") == "hand" else "by the loop"
    bar = ""
    if run.get("total"):
        pct = 100 * (run.get("done") or 0) / run["total"]
        bar = (f'<div style="background:#eee;border-radius:3px;width:320px;height:8px;display:inline-block;'
               f'vertical-align:middle"><div class="forge-progress-bar" style="background:#1a9850;height:8px;'
               f'border-radius:3px;width:{pct:.0f}%"></div></div> ')
    tail = "".join(f"{esc(line)}\n" for line in run.get("log_tail") or [])
    log = (f'<pre class="forge-log" style="background:#f7f7f7;font-size:11px;margin:2px 0;padding:4px;'
           f'max-height:9em;overflow:auto">{tail}</pre>') if tail else ""
    return (f'<div class="forge-running">running <b>{esc(run.get("stage"))}</b> {who} (pid {esc(run.get("pid"))}) '
            f'for <span class="forge-elapsed">{esc(duration(run.get("elapsed_s")))}</span>: {bar}'
            f'<span class="forge-progress">{esc(progress_text(run))}</span></div>{log}')


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
    lines.append(_stage_line(snap))
    lines.append(_running_block(snap.get("running")))
    if cur and cur.get("modified"):
        lines.append(f'<div>{badge("modified", css="forge-modified")} this iteration ran notebook(s) that differ '
                     f'from the committed version: {esc(", ".join(cur["modified"]))}</div>')
    for a in (cur or {}).get("attempts") or []:
        where = (link(root, a.get("notebook"), base, f"{a['stage']} notebook", ERROR_ANCHOR) if a.get("notebook")
                 else "no notebook")
        cell_no = f", cell {a['cell']}" if a.get("cell") else ""
        lines.append(f'<div class="forge-attempt" style="color:#555">attempt {esc(a["number"])} failed in '
                     f'{esc(a["stage"])}{esc(cell_no)}: {esc(a["error"])} ({where})</div>')
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
