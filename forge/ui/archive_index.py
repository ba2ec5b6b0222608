"""``archive/index.html``: every iteration with its metrics, status, stage notebooks and W&B run; any two
iterations side by side; and every tracked metric's trend.

A static page (no kernel needed) refreshed by the CLI whenever the loop records an iteration or
a failure (the loop's ``on_record`` hook) and by ``flywheel archive``. Its links are relative and
open in the same tab (JupyterLab's HTML viewer blocks new windows), for a browser reading the files;
inside JupyterLab's HTML viewer, once trusted, a few lines of script make them work there too (see
``_LINKS_SCRIPT``). Its history sorts by a click on a column's header and filters on a text box
(forge.ui.interactive), and shows each iteration's note (forge.flywheel.notes). The comparison is
drawn server-side for a default pair (the best against the latest) and redrawn by a few lines of
script when another pair is picked; without script (JupyterLab's viewer until "Trust HTML") the
default pair stays.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from forge.atomic import atomic_write_text
from forge.flywheel.archive_rows import iteration_rows
from forge.flywheel.notes import notes_or_none
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import ERROR_ANCHOR
from forge.flywheel.stages import REGISTRY
from forge.flywheel.state import load_state
from forge.flywheel.status import HISTORY_PAGE, snapshot
from forge.ui.interactive import filter_box, sortable_head
from forge.ui.plots import png_bytes
from forge.ui.render import (
    LEGEND,
    NOTE_TIP,
    badge,
    column_head,
    column_legend,
    esc,
    link,
    mark_cell,
    note_cell,
    stage_links,
    wandb_cell,
)
from forge.ui.text import HISTORY_COLUMNS, column_text
from forge.ui.views import compare, curves

INDEX = "index.html"

#: Redraws the comparison for the picked pair from the page's data (see forge.ui.views.compare.index_data).
_SCRIPT = """
const DATA = JSON.parse(document.getElementById("forge-compare-data").textContent);
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
function g4(v) {
  if (v === null || v === undefined) return "";
  if (v === 0) return "0";
  const e = Math.floor(Math.log10(Math.abs(v)));
  if (e < -4 || e >= 4) return v.toExponential(3).replace(/\\.?0+e/, "e");
  return String(Number(v.toPrecision(4)));
}
function table(css, head, rows) {
  const td = 'style="border:1px solid #ddd;padding:1px 6px;text-align:right"';
  const prose = 'style="border:1px solid #ddd;padding:1px 6px;text-align:left"';  // long text, as frame_html
  return `<table class="${css}" style="border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0">`
    + "<tr>" + head.map(h => `<th ${td}>${esc(h)}</th>`).join("") + "</tr>"
    + rows.map(r => "<tr>" + r.map(c => `<td ${c.length > 12 && !c.startsWith("<") ? prose : td}>${c}</td>`)
      .join("") + "</tr>").join("") + "</table>";
}
function verdict(row, a, b) {
  if (a === null || b === null || a === undefined || b === undefined) return "";
  if (a === b) return "same";
  return (row.better === "higher") === (a > b) ? "A" : "B";
}
function coloured(v) {
  const colour = v === "A" ? "#4575b4" : v === "B" ? "#f46d43" : null;
  return colour ? `<span style="color:${colour};font-weight:600">${v}</span>` : esc(v);
}
function draw() {
  const a = DATA.runs[document.getElementById("forge-a").value];
  const b = DATA.runs[document.getElementById("forge-b").value];
  let html = `<div><b style="color:#4575b4">A</b>: ${esc(a.label)} &middot; <b style="color:#f46d43">B</b>: `
    + `${esc(b.label)}</div>`;
  DATA.sections.forEach((sec, k) => {
    const rows = [];
    for (const row of sec.rows) {
      const va = (a.values[row.split] || {})[row.name], vb = (b.values[row.split] || {})[row.name];
      // per declaration / depth: the states each figure is over (see forge.ui.views.breakdown)
      const count = k === 0 ? null : "n/" + row.name.split("/")[1];
      const na = count && (a.values[row.split] || {})[count], nb = count && (b.values[row.split] || {})[count];
      if (va === undefined && vb === undefined && na !== 0 && nb !== 0) continue;
      const diff = va !== undefined && vb !== undefined ? g4(vb - va) : "";
      const cells = [esc(row.label), esc(row.unit)];
      if (k === 0) cells.push(row.better);
      const few = n => n === 0 ? "no states"
        : n !== undefined && n !== null && n < DATA.min_states ? "too few states" : "";
      if (k === 0) cells.push(g4(va), g4(vb), diff, coloured(verdict(row, va, vb)), esc(row.meaning));
      else {
        const note = [["A", na], ["B", nb]].filter(([, n]) => few(n)).map(([t, n]) => `${t}: ${few(n)}`).join("; ");
        cells.push(g4(va), g4(na), g4(vb), g4(nb), diff, note ? "" : coloured(verdict(row, va, vb)), esc(note));
      }
      rows.push(cells);
    }
    const head = k === 0 ? ["metric", "unit", "better when", "A", "B", "B − A", "better", "meaning"]
                         : ["metric", "unit", "A", "A states", "B", "B states", "B − A", "better", "note"];
    html += `<h4>${esc(sec.title)}</h4>` + (rows.length ? table(sec.css, head, rows)
      : `<p class="${sec.css}">not recorded for these iterations</p>`);
  });
  const keys = [...new Set([...Object.keys(a.config), ...Object.keys(b.config)])]
    .filter(k => JSON.stringify(a.config[k]) !== JSON.stringify(b.config[k]));
  html += "<h4>Configuration differences</h4>" + (keys.length
    ? table("forge-config-diff", ["config", "A", "B"],
            keys.map(k => [esc(k), esc(JSON.stringify(a.config[k]) ?? "-"), esc(JSON.stringify(b.config[k]) ?? "-")]))
    : '<p class="forge-config-diff">the same configuration</p>');
  document.getElementById("forge-compare").innerHTML = `<div class="forge-compare">${html}</div>`;
}
document.getElementById("forge-a").addEventListener("change", draw);
document.getElementById("forge-b").addEventListener("change", draw);
"""


#: Inside JupyterLab's HTML viewer (once trusted) the page's base is ``/files/archive/index.html?_xsrf=...``
#: and the Jupyter server answers a link that drops that token 403 (the viewer sends no referer); a page
#: it then served from ``/files/`` would be sandboxed by the server, and its own links (an archived
#: notebook's "back to the index") would be asked to log in. So there a click on a relative link fetches
#: the page with the token and writes it into this same frame, with its base and this script again:
#: the index and the archived pages link to each other as they do on disk. Elsewhere (a browser reading
#: the files, no token) nothing changes.
_LINKS_SCRIPT = """<script id="forge-links">
(() => {
  const self = document.currentScript.textContent;
  const token = new URL(document.baseURI).searchParams.get("_xsrf");
  if (!token) return;
  document.addEventListener("click", async event => {
    const a = event.target.closest("a[href]");
    const href = a && a.getAttribute("href");
    if (!href || /^([a-z]+:|#|\\/)/i.test(href)) return;
    event.preventDefault();
    const url = new URL(href, document.baseURI);
    url.searchParams.set("_xsrf", token);
    const hash = url.hash.slice(1);
    url.hash = "";
    const response = await fetch(url.href, {credentials: "same-origin"});
    if (!response.ok) { location.href = url.href; return; }
    const base = `<base href="${url.href.replace(/"/g, "&quot;")}" target="_self">`;
    const text = (await response.text()).replace(/<head(\\s[^>]*)?>/i, m => m + base);
    const end = text.toLowerCase().lastIndexOf("</body>");  // the page's own, not one quoted in a cell
    const again = text.includes('<script id="forge-links">') ? ""  // the index has it already
      : '<script id="forge-links">' + self + "<\\/script>";
    const page = end < 0 ? text + again : text.slice(0, end) + again + text.slice(end);
    document.open();
    document.write(page);
    document.close();
    const target = hash && document.getElementById(decodeURIComponent(hash));
    if (target) target.scrollIntoView();
  });
})();
</script>"""


def _compare_section(root: Path) -> str:
    runs = compare.load_runs([root])
    if not runs:
        return '<h2 id="compare">Compare two iterations</h2><p>nothing to compare yet: no iteration is recorded</p>'
    a, b = compare.default_pair(runs)

    def select(name: str, chosen: compare.Run) -> str:
        options = "".join(f'<option value="{k}"{" selected" if r is chosen else ""}>{esc(r.label)}</option>'
                          for k, r in enumerate(runs))
        return f'<label>{name} <select id="forge-{name.lower()}">{options}</select></label>'

    data = json.dumps(compare.index_data(runs)).replace("</", "<\\/")
    trend = base64.b64encode(png_bytes(compare.trend_figure(runs), dpi=80)).decode()
    return (f'<h2 id="compare">Compare two iterations</h2>'
            f"<p>{select('A', a)} &nbsp; {select('B', b)} "
            '<span style="color:#555;font-size:12px">(pick any two; for two workspaces, variants run side by side, '
            "use notebooks/06_compare.ipynb)</span></p>"
            f'<div id="forge-compare">{compare.pair_html(a, b)}</div>'
            f'<script type="application/json" id="forge-compare-data">{data}</script><script>{_SCRIPT}</script>'
            f"{_curves_section(runs)}"
            f'<h2 id="trends">Every tracked metric, iteration by iteration</h2>'
            f'<img class="forge-trends" alt="every tracked metric against seeds trained" '
            f'src="data:image/png;base64,{trend}"/>')


def _curves_section(runs: list[compare.Run]) -> str:
    """The newest iterations' training curves overlaid (a static figure: the notebook 06_compare has
    the controls)."""
    found = curves.load_curves(runs)
    if not found:
        return ""
    png = base64.b64encode(png_bytes(curves.curves_figure(found), dpi=80)).decode()
    return ('<h2 id="curves">Training curves, iteration by iteration</h2>'
            f'<p style="color:#555;font-size:12px">the newest {len(found)} iterations with a recorded curve, '
            "against samples trained on in each; train loss smoothed 0.6 (the faint line: as logged). "
            "To pick iterations, smoothing, a log scale or the samples seen over every iteration: "
            "notebooks/06_compare.ipynb</p>"
            f'<img class="forge-curves" alt="training loss and val Q-gap of each iteration against samples" '
            f'src="data:image/png;base64,{png}"/>')


def _older(count: int) -> str:
    if count <= HISTORY_PAGE:
        return ""
    return (f'<p class="forge-older">the newest {HISTORY_PAGE} of {count} recorded iterations; every one is in '
            '<code>history.jsonl</code> (one JSON line each)</p>')


def write_index(root: str | os.PathLike = ".") -> Path:
    """Write the index page for the workspace at ``root``; returns its path."""
    ws = Workspace.at(root)
    state = load_state(ws.root)
    snap = snapshot(ws.root, state)
    base = ws.root / "archive"
    base.mkdir(parents=True, exist_ok=True)
    head = "".join(column_head(label, path) for label, path in HISTORY_COLUMNS)
    # the stages' notebooks in one column, one per line, and a W&B command that wraps: the page fits a
    # 1,400 px window (a column per stage and an unbroken `wandb sync` path needed about 2,100; cells padded
    # 5 px, not 6, since the game-value MAE column)
    head += ("<th></th>" + sortable_head("status") + sortable_head("note", NOTE_TIP)
             + "<th>notebooks</th><th>failed attempts</th><th>W&amp;B</th>")
    notes = notes_or_none(ws.root)
    body = []
    for row in iteration_rows(state, last=HISTORY_PAGE):
        cells = [f"<td>{esc(column_text(label, row, path))}</td>" for label, path in HISTORY_COLUMNS]
        attrs, marks = mark_cell(row, snap.best_iteration)
        cells.append(f'<td style="text-align:left;white-space:nowrap">{marks}</td>')
        title = f' title="{esc(row["error"])}"' if row.get("error") else ""
        cells.append(f"<td{title}>{badge(row['status'])}</td>")
        cells.append(note_cell(notes, row["iteration"]))
        books = "".join(f"<div>{stage_links(row, ws.root, base, s, s)}</div>"
                        for s in REGISTRY if (row.get("notebooks") or {}).get(s))
        cells.append(f'<td class="forge-notebooks" style="text-align:left">{books or "-"}</td>')
        attempts = " ".join(
            link(ws.root, a.get("notebook"), base, f"{a['number']}: {a['stage']}" +
                 (f" cell {a['cell']}" if a.get("cell") else ""), ERROR_ANCHOR) if a.get("notebook")
            else esc(a["stage"])
            for a in row.get("attempts") or [])
        cells.append(f"<td>{attempts or '-'}</td>")
        cells.append(f'<td class="forge-wandb" style="text-align:left;max-width:18em">'
                     f"{wandb_cell(row.get('wandb'), ws.root, base)}</td>")
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>forge archive</title>
<style>body{{font:13px/1.45 system-ui,sans-serif;margin:16px 20px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:2px 5px;text-align:right}} th{{background:#f4f4f4}}</style></head>
<body><h1>forge flywheel archive</h1>
<p>status {badge(snap.status)} &middot; preset {esc(snap.preset)} &middot; W&amp;B group
{esc(state.wandb.get('group'))} ({esc(state.wandb.get('mode'))}) &middot; seeds trained {esc(snap.total_seeds)}
&middot; <a href="#compare">compare two iterations</a> &middot; <a href="#curves">training curves</a>
&middot; <a href="#trends">trends</a></p>
<noscript><p class="forge-noscript" style="color:#8c510a">This page's links to the iteration pages, its sorting,
filtering and comparison picker need scripts: in JupyterLab, press "Trust HTML" in this tab's toolbar.</p></noscript>
<div class="forge-history-box">{filter_box()}<table class="forge-history"><tr>{head}</tr>
{''.join(body)}
</table></div>{_older(len(state.history))}{LEGEND}{column_legend()}
{_compare_section(ws.root)}
{_LINKS_SCRIPT}
</body></html>
"""
    out = base / INDEX
    atomic_write_text(out, page)
    return out
