"""Static HTML views of the flywheel: the status panel, stage result tables, the archive index.

Plain HTML with inline styles so the same markup works inside JupyterLab, in archived
notebooks rendered by nbconvert/nbviewer, and as a standalone page.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path
from typing import Any

from forge.commandline import FLYWHEEL
from forge.flywheel.notes import notes_or_none
from forge.flywheel.records import PRIMARY_METRIC, TRACKED, metric_label
from forge.flywheel.runner import ERROR_ANCHOR
from forge.flywheel.status import RunningStage, Snapshot
from forge.ui.interactive import LINK_STYLE, command, filter_box, folder_link, sortable_head
from forge.ui.metric_info import column_info, flag_text
from forge.ui.text import HISTORY_COLUMNS, ago, cell, column_text, duration, progress_text

BADGE_COLOURS = {
    "ready": "#2b7de9", "running": "#1a9850", "failed": "#d73027", "done": "#6a3d9a", "crashed": "#e66101",
    "modified": "#b35806", "stale": "#8c510a", "best": "#1a9850", "worse": "#d73027", "flagged": "#e66101",
    "by hand": "#5e3c99",
}
#: The best iteration's row (green) and the flag beside an iteration with a worse tracked metric (orange).
ROW_BEST, FLAG_COLOUR = "#dff3df", BADGE_COLOURS["flagged"]
_OTHERS = ", ".join(metric_label(*m) for m in TRACKED if m != PRIMARY_METRIC)
LEGEND = (f'<div class="forge-legend" style="font:11px/1.4 system-ui,sans-serif;color:#555">'
          f'<span style="background:{ROW_BEST};padding:0 6px">green row</span> the best iteration by '
          f'{metric_label(*PRIMARY_METRIC)} (the primary metric; only one) &middot; '
          f'<span style="background:{FLAG_COLOUR};color:#fff;border-radius:4px;padding:0 6px">flagged</span> a tracked '
          f"metric ({_OTHERS}) was worse than the best earlier iteration's when it was recorded (hover for which) "
          f"&middot; <b>modified</b>: a stage ran a notebook that differs from the committed one &middot; "
          f"<b>by hand</b>: a stage a person ran in a notebook</div>")
_TABLE = "border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0"
_TD = "border:1px solid #ddd;padding:2px 6px;text-align:right"
_TH = _TD + ";background:#f4f4f4"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link(root: Path, target: str | None, base: Path | None, label: str, anchor: str | None = None) -> str:
    """An <a> to a workspace file (its HTML export if there is one, at ``anchor``), relative to ``base``
    (the folder of the page showing it); ``base`` None: the label alone (a snapshot whose links would
    not resolve where it is read). A workspace file opens where the page is (in JupyterLab: a tab of
    the same JupyterLab, which resolves the relative link itself), a folder in JupyterLab's file
    browser (a new browser tab would load a second JupyterLab)."""
    if not target:
        return "-"
    if base is None:
        return f'<span class="forge-nolink">{esc(label)}</span>'
    path = root / target
    html_version = path.with_suffix(".html")
    if path.suffix == ".ipynb" and html_version.is_file():
        path = html_version
    elif not path.exists():
        return pruned_label(root, target, label)
    href = os.path.relpath(path, base)
    if path.is_dir():
        return folder_link(href + "/", label)
    href += f"#{anchor}" if anchor and path.suffix == ".html" else ""
    return f'<a href="{esc(href)}" style="{LINK_STYLE}">{esc(label)}</a>'


def commands_in(text: str) -> str:
    """``text`` as HTML, each `backticked` command in it as code with its copy button."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no commands to pick out
        return esc(text)
    return "".join(command(part) if k % 2 else esc(part) for k, part in enumerate(parts))


def pruned_label(root: Path, target: str, label: str) -> str:
    """What a link to a file the retention policy pruned shows instead (docs/disk.md): the label,
    marked pruned, naming the compressed copy if there is one; "missing" for a file simply gone."""
    packed = root / (target + ".gz")
    if packed.is_file():
        tip = f"pruned by the retention policy (docs/disk.md); kept compressed: {target}.gz"
        return f'<span class="forge-pruned" title="{esc(tip)}" style="color:#777">{esc(label)} (pruned)</span>'
    return (f'<span class="forge-missing" title="{esc(target)} is not on disk" style="color:#777">'
            f"{esc(label)} (missing)</span>")


def badge(status: str, title: str | None = None, css: str = "forge-badge", small: bool = False) -> str:
    colour = BADGE_COLOURS.get(status, "#777")
    tip = f' title="{esc(title)}"' if title else ""
    size = "padding:0 4px;font-size:10px;white-space:nowrap" if small else "padding:1px 8px"
    return (f'<span class="{css}"{tip} style="background:{colour};color:#fff;border-radius:4px;'
            f'{size};font-weight:600">{esc(status)}</span>')


def wandb_cell(info: dict[str, Any] | None, root: Path, base: Path | None) -> str:
    if not info:
        return "-"
    if info.get("url"):
        return f'<a href="{esc(info["url"])}" target="_blank" rel="noopener" style="{LINK_STYLE}">run</a>'
    if info.get("error"):
        return f'<span title="{esc(info["error"])}">error</span>'
    if info.get("dir"):
        return (f'<span style="font-size:11px" title="upload this offline run: {esc(info.get("sync", ""))}">'
                f'{command(info.get("sync") or info["dir"], "forge-wandb-sync")}</span>')
    return "-"


def column_head(label: str, path: tuple[str, ...], style: str = "") -> str:
    """A history column's header: its label, its unit under it, its meaning on hover; a click sorts by it."""
    info = column_info(path)
    unit = f'<br><span class="forge-unit" style="font-weight:400;color:#666">{esc(info.unit)}</span>' \
        if info.unit else ""
    return sortable_head(f"{esc(label)}{unit}", info.meaning, style)


NOTE_TIP = f'a note per iteration: {FLYWHEEL} note N "text", or the note box under the dashboard\'s buttons'


def note_cell(notes: dict[int, str], iteration: Any, style: str = "") -> str:
    """An iteration's note (notes.jsonl, ``flywheel note N "text"``), or empty."""
    css = f"{style};" if style else ""
    return (f'<td class="forge-note" style="{css}text-align:left;max-width:16em;white-space:normal">'
            f"{esc(notes.get(iteration, ''))}</td>")


def column_legend() -> str:
    """Every history column's unit and one-line meaning, folded under the table."""
    items = "".join(f"<li><b>{esc(label)}</b>{f' ({esc(column_info(path).unit)})' if column_info(path).unit else ''}: "
                    f"{esc(column_info(path).meaning)}</li>" for label, path in HISTORY_COLUMNS)
    return (f'<details class="forge-columns" style="font:11px/1.4 system-ui,sans-serif;color:#555">'
            f"<summary>what the columns mean</summary><ul style=\"margin:2px 0\">{items}</ul></details>")


def mark_cell(row: dict[str, Any], best_iteration: int | None) -> tuple[str, str]:
    """(row attributes, badges) for one history row: green when it is the best iteration, and the
    flag badge (hover: which metrics) beside it when a tracked metric was worse, the best included."""
    best = best_iteration is not None and row.get("iteration") == best_iteration and row.get("status", "done") == "done"
    flags = row.get("flags") or []
    classes = " ".join(c for c, on in (("forge-best", best), ("forge-flagged", bool(flags))) if on)
    attrs = (f' class="{classes}"' if classes else "") + (f' style="background:{ROW_BEST}"' if best else "")
    marks = (badge("best", f"the best iteration by {metric_label(*PRIMARY_METRIC)}", "forge-best-badge") if best
             else "") + (" " + badge("flagged", "; ".join(flag_text(f) for f in flags), "forge-flag") if flags else "")
    return attrs, marks.strip()


def stage_links(row: dict[str, Any], root: Path, base: Path | None, stage: str, label: str) -> str:
    """A stage's archived notebook, with its "by hand" and "modified" badges."""
    modified = {s for s, p in (row.get("provenance") or {}).items() if (p or {}).get("modified")}
    out = link(root, (row.get("notebooks") or {}).get(stage), base, label)
    if stage in (row.get("by_hand") or []):
        out += " " + badge("by hand", f"{stage} was run by hand in a notebook; the loop archived it", "forge-by-hand",
                           small=True)
    if stage in modified:
        out += " " + badge("modified", f"{stage} ran a notebook that differs from the committed one", "forge-modified",
                           small=True)
    return f'<span style="white-space:nowrap">{out}</span>'


def history_table(history: list[dict[str, Any]], root: Path, base: Path | None,
                  best_iteration: int | None = None) -> str:
    """The history, one row per iteration (``base`` None: labels instead of links)."""
    head = "".join(column_head(label, path, _TH) for label, path in HISTORY_COLUMNS)
    head += (f'<th style="{_TH}"></th>' + sortable_head("note", NOTE_TIP, _TH)
             + f'<th style="{_TH}">notebooks</th><th style="{_TH}">W&amp;B</th>')
    notes = notes_or_none(root)
    rows = []
    for h in history:
        cells = [f'<td style="{_TD}">{esc(column_text(label, h, path))}</td>' for label, path in HISTORY_COLUMNS]
        attrs, marks = mark_cell(h, best_iteration)
        cells.append(f'<td style="{_TD};text-align:left;white-space:nowrap">{marks}</td>')
        cells.append(note_cell(notes, h.get("iteration"), _TD))
        books = " ".join(stage_links(h, root, base, stage, stage[:3]) for stage in (h.get("notebooks") or {}))
        cells.append(f'<td style="{_TD};text-align:left">{books or "-"}</td>')
        cells.append(f'<td style="{_TD};text-align:left">{wandb_cell(h.get("wandb"), root, base)}</td>')
        rows.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return (f'<div class="forge-history-box">{filter_box()}<table class="forge-history" style="{_TABLE}">'
            f'<tr>{head}</tr>{"".join(rows)}</table></div>' + LEGEND + column_legend())


def _stage_line(snap: Snapshot) -> str:
    """Each stage of the iteration in progress or next: done, to do, or stale (and why)."""
    parts = []
    for st in snap.stages:
        if st.state == "stale":
            parts.append(f'{esc(st.stage)} {badge("stale", "; ".join(st.reasons), "forge-stale")}')
        else:
            parts.append(f'{esc(st.stage)} <span style="color:#555">{esc(st.state)}</span>')
    return f'<div class="forge-stages">stages: {" &middot; ".join(parts)}</div>' if parts else ""


def _running_block(run: RunningStage | None) -> str:
    """The stage under way (by the loop or by hand): progress, time in stage, the last lines it printed."""
    if not run or not run.active:
        return ""
    who = "by hand" if run.by == "hand" else "by the loop"
    bar = ""
    if run.total:
        pct = 100 * (run.done or 0) / run.total
        bar = (f'<div style="background:#eee;border-radius:3px;width:320px;height:8px;display:inline-block;'
               f'vertical-align:middle"><div class="forge-progress-bar" style="background:#1a9850;height:8px;'
               f'border-radius:3px;width:{pct:.0f}%"></div></div> ')
    tail = "".join(f"{esc(line)}\n" for line in run.log_tail)
    log = (f'<pre class="forge-log" style="background:#f7f7f7;font-size:11px;margin:2px 0;padding:4px;'
           f'max-height:9em;overflow:auto">{tail}</pre>') if tail else ""
    return (f'<div class="forge-running">running <b>{esc(run.stage)}</b> {who} (pid {esc(run.pid)}) '
            f'for <span class="forge-elapsed">{esc(duration(run.elapsed_s))}</span>: {bar}'
            f'<span class="forge-progress">{esc(progress_text(run))}</span></div>{log}')


def _files_line(snap: Snapshot, root: Path, base: Path) -> str:
    """Links to the workspace's files: state.yaml, the archive index, the iteration's runs/ and archive/ folders."""
    items = [link(root, "state.yaml", base, "state.yaml")]
    if (root / "archive" / "index.html").is_file():
        items.append(link(root, "archive/index.html", base, "archive index (every iteration; compare any two)"))
    # the iteration in progress (or next), and the last recorded one
    iterations = dict.fromkeys([snap.iteration, *[h["iteration"] for h in snap.history[-1:]]])
    for iteration in iterations:
        for folder in (f"runs/iter-{iteration:04d}", f"archive/iter-{iteration:04d}"):
            if (root / folder).is_dir():
                items.append(link(root, folder, base, f"{folder}/"))
    return f'<div class="forge-files" style="color:#555">files: {" &middot; ".join(items)}</div>'


PANEL_STYLE = "font:13px/1.5 system-ui,sans-serif"
PANEL_BOX = "border:1px solid #ccc;border-radius:6px;padding:8px 12px;margin:4px 0"


def panel_html(snap: Snapshot, base: str | os.PathLike | None = None, plot_png: str | None = None,
               links: bool = True) -> str:
    """The status panel: badge, current iteration and stage, heartbeat, error, next action, history.

    Links are relative to ``base`` (the folder of the notebook or page showing the panel). Without
    ``links`` the panel is a dated snapshot (an executed notebook's: read later from the archive,
    its links would point nowhere, and its state is that of the time it ran)."""
    parts = panel_parts(snap, base, plot_png, links)
    return "\n".join([f'<div class="forge-panel" style="{PANEL_STYLE};{PANEL_BOX}">', *parts.values(), "</div>"])


def panel_parts(snap: Snapshot, base: str | os.PathLike | None = None, plot_png: str | None = None,
                links: bool = True) -> dict[str, str]:
    """The panel in parts that change at different paces: ``status`` (every refresh while a stage runs:
    heartbeat, elapsed time, log tail), ``history`` (once per iteration: the table, its legends) and
    ``plot``. The live panel updates each part on its own, so a refresh leaves a part it did not change
    as it was (an expanded legend stays expanded, a selected command stays selected)."""
    root = Path(snap.root)
    base = (Path(base) if base is not None else root) if links else None
    cur = snap.current
    lines: list[str] = []
    if not links:
        taken = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f'<div class="forge-snapshot" style="color:#8c510a;font-size:12px">status as this notebook ran '
                     f"({taken}): a snapshot, not kept up to date; the live status is in notebooks/00_status.ipynb "
                     "and every iteration in archive/index.html</div>")
    lines += [
        f'<div><b>forge flywheel</b> {badge(snap.status)} &nbsp;preset <b>{esc(snap.preset)}</b>'
        f' &nbsp;iteration <b class="forge-iteration">{esc(snap.iteration)}</b>'
        f' &nbsp;seeds trained <b class="forge-total-seeds">{esc(snap.total_seeds)}</b></div>',
    ]
    if cur:
        done = ", ".join(cur.stages_completed) or "none"
        process = ""
        if snap.status in ("running", "crashed"):  # who runs it only matters while it (should) run
            process = (f', heartbeat <span class="forge-heartbeat">{esc(ago(cur.heartbeat_age_s))}</span>,'
                       f' pid {esc(cur.pid)} on {esc(cur.host)}')
        lines.append(
            f'<div>current: iteration {esc(cur.iteration)}, seeds {esc(cell(cur.seed_range))}, stage '
            f'<b class="forge-stage">{esc(cur.stage or "-")}</b> ({esc(cur.progress)}; done: {esc(done)})'
            f'{process}</div>'
        )
    lines.append(_stage_line(snap))
    lines.append(_running_block(snap.running))
    if cur and cur.by_hand:
        lines.append(f'<div>{badge("by hand", css="forge-by-hand")} stages of this iteration run by hand in a '
                     f'notebook: {esc(", ".join(cur.by_hand))}</div>')
    if cur and cur.modified:
        lines.append(f'<div>{badge("modified", css="forge-modified")} this iteration ran notebook(s) that differ '
                     f'from the committed version: {esc(", ".join(cur.modified))}</div>')
    for a in cur.attempts if cur else ():
        where = (link(root, a.notebook, base, f"{a.stage} notebook", ERROR_ANCHOR) if a.notebook
                 else "no notebook")
        cell_no = f", cell {a.cell}" if a.cell else ""
        lines.append(f'<div class="forge-attempt" style="color:#555">attempt {esc(a.number)} failed in '
                     f'{esc(a.stage)}{esc(cell_no)}: {esc(a.error)} ({where})</div>')
    if snap.last_error:
        lines.append(f'<div style="color:#b2182b">last error: <code class="forge-error">'
                     f'{esc(snap.last_error)}</code></div>')
    if snap.next_action:
        lines.append(f'<div>next: <span class="forge-next">{commands_in(snap.next_action)}</span></div>')
    wb = snap.wandb
    report = (f' &middot; <a href="{esc(wb["report"])}" target="_blank" rel="noopener" style="{LINK_STYLE}">group '
              "report</a>" if wb.get("report") else "")
    lines.append(f'<div style="color:#555">W&amp;B: project {esc(wb.get("project"))}, group {esc(wb.get("group"))}, '
                 f'mode {esc(wb.get("mode"))}{report}</div>')
    if base is not None:
        lines.append(_files_line(snap, root, base))
    history = history_table(snap.history, root, base, snap.best_iteration) if snap.history else ""
    plot = (f'<img alt="val Q-gap and accuracy against seeds trained" src="data:image/png;base64,{plot_png}"/>'
            if plot_png else "")
    return {"status": "\n".join(line for line in lines if line), "history": history, "plot": plot}
