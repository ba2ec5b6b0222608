"""The few interactions the HTML views carry themselves: copy a command, sort and filter the history and
choose its columns, open a workspace folder in JupyterLab's file browser, and what a link looks like.

Each is an inline event handler, not a ``<script>``: the live panel's HTML is rendered by JupyterLab
from a widget (scripts in it are not run everywhere), the archive index is a static page, and both
must work without a library. Where scripts are off (JupyterLab's HTML viewer before "Trust HTML",
an nbviewer page) the markup stays readable: the command is shown, the table is in history order.
"""

from __future__ import annotations

import html
from typing import Any

#: Links look like links everywhere (JupyterLab's styles leave a widget's links black, not underlined).
LINK_STYLE = "color:#1a5fb4;text-decoration:underline;cursor:pointer"

_COPY_JS = (
    "const b=this,t=b.dataset.copy,done=(w)=>{b.textContent=w;setTimeout(()=>{b.textContent='copy'},2500)};"
    "const fallback=()=>{const a=document.createElement('textarea');a.value=t;a.style.position='fixed';"
    "a.style.opacity='0';document.body.appendChild(a);a.select();"
    "let ok=false;try{ok=document.execCommand('copy')}catch(e){}a.remove();done(ok?'copied':'select and copy')};"
    "if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(t).then(()=>done('copied'),"
    "fallback)}else{fallback()}"
)

_SORT_JS = (
    "const th=this,row=th.parentNode,k=[...row.children].indexOf(th),body=row.parentNode;"
    "const rows=[...body.children].filter(r=>r!==row);const up=th.dataset.sort!=='asc';"
    "[...row.children].forEach(h=>{delete h.dataset.sort;const m=h.querySelector('.forge-sort-mark');"
    "if(m)m.textContent=''});th.dataset.sort=up?'asc':'desc';"
    "th.querySelector('.forge-sort-mark').textContent=up?' \u25b2':' \u25bc';"
    "const key=r=>{const c=r.children[k],s=c?c.textContent.trim():'',n=parseFloat(s);"
    "return isNaN(n)?[1,s.toLowerCase()]:[0,n]};"
    "rows.sort((a,b)=>{const x=key(a),y=key(b);if(x[0]!==y[0])return x[0]-y[0];"
    "return (up?1:-1)*(x[1]<y[1]?-1:x[1]>y[1]?1:0)});rows.forEach(r=>body.appendChild(r))"
)

_FILTER_JS = (
    "const q=this.value.trim().toLowerCase(),t=this.closest('.forge-history-box').querySelector('table');"
    "let shown=0;[...t.querySelectorAll('tr')].slice(1).forEach(r=>{const on=r.textContent.toLowerCase()"
    ".includes(q);r.style.display=on?'':'none';shown+=on});"
    "this.nextElementSibling.textContent=q?shown+' shown':''"
)

#: Built when the menu first opens, from the table's own header row (one checkbox a column, all shown; a
#: header's name is its first text, without the unit under it).
_COLUMNS_JS = (
    "const box=this.querySelector('.forge-column-choices');if(box.childElementCount)return;"
    "const t=this.closest('.forge-history-box').querySelector('table'),heads=[...t.rows[0].cells];"
    "heads.forEach((h,k)=>{const l=document.createElement('label'),c=document.createElement('input');"
    "c.type='checkbox';c.checked=h.style.display!=='none';l.style.marginRight='10px';l.style.whiteSpace='nowrap';"
    "c.onchange=()=>{[...t.rows].forEach(r=>{const x=r.cells[k];if(x)x.style.display=c.checked?'':'none'})};"
    "const f=h.firstChild,name=(f&&f.nodeType===3?f.textContent:h.textContent).replace(/[\u25b2\u25bc]/g,'');"
    "l.appendChild(c);l.appendChild(document.createTextNode(' '+(name.trim()||'marks')));box.appendChild(l)})"
)

#: (``window.URL``: an inline handler's scope has the document's ``URL``, a string, first.)
#: In JupyterLab (its page config present), the folder's path on the server from the link as JupyterLab's
#: renderer resolved it (``<base>files/<path>/``), handed to the file browser through JupyterLab's command
#: linker (which the renderer's own handler, opening the folder as a document, would not do); elsewhere
#: the link is followed.
_FOLDER_JS = (
    "const cfg=document.getElementById('jupyter-config-data');if(!cfg)return true;"
    "const pre=new window.URL((JSON.parse(cfg.textContent).baseUrl||'/')+'files/',location.href).pathname;"
    "const u=new window.URL(this.href,location.href);if(!u.pathname.startsWith(pre))return true;"
    "event.preventDefault();event.stopImmediatePropagation();"
    "const h=document.createElement('span');h.setAttribute('data-commandlinker-command','filebrowser:go-to-path');"
    "h.setAttribute('data-commandlinker-args',JSON.stringify({path:decodeURIComponent("
    "u.pathname.slice(pre.length)).replace(/\\/$/,'')}));this.parentNode.appendChild(h);h.click();h.remove();"
    "return false"
)


def attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def copy_button(text: str) -> str:
    """A small "copy" button that puts ``text`` on the clipboard and says it did."""
    return (f'<button type="button" class="forge-copy" data-copy="{attr(text)}" title="copy to the clipboard" '
            f'onclick="{attr(_COPY_JS)}" style="font:11px system-ui,sans-serif;padding:0 6px;margin-left:4px;'
            f'cursor:pointer;border:1px solid #bbb;border-radius:3px;background:#f6f6f6">copy</button>')


def command(text: str, css: str = "forge-command") -> str:
    """A command as code, with its copy button."""
    return (f'<span class="forge-command-box"><code class="{css}" style="word-break:break-all">{attr(text)}</code>'
            f"{copy_button(text)}</span>")


def sortable_head(inner: str, title: str = "", style: str = "") -> str:
    """A header cell that sorts its table by this column (numbers by value, then text), asc then desc;
    ``inner`` is HTML, ``title`` text."""
    tip = f' title="{attr(title + " (click: sort)" if title else "click: sort")}"'
    return (f'<th{tip} onclick="{attr(_SORT_JS)}" style="{style + ";" if style else ""}cursor:pointer">{inner}'
            '<span class="forge-sort-mark"></span></th>')


def filter_box(placeholder: str = "filter rows: a note, #tag, metric...") -> str:
    """A text box that hides the rows of the table in the same ``.forge-history-box`` not containing it
    (its keys are its own: JupyterLab's notebook shortcuts, "1" for a heading, must not see them)."""
    return (f'<div style="margin:2px 0"><input type="search" class="forge-filter" placeholder="{attr(placeholder)}" '
            f'oninput="{attr(_FILTER_JS)}" onkeydown="event.stopPropagation()" data-lm-suppress-shortcuts="true" '
            'style="font:12px system-ui,sans-serif;width:22em;padding:1px 4px"/>'
            '<span class="forge-filter-count" style="color:#555;font-size:11px;margin-left:6px"></span>'
            f'{columns_menu()}</div>')


def columns_menu() -> str:
    """"columns": a menu of the table's columns (in the same ``.forge-history-box``), each shown or hidden by
    its checkbox."""
    return (f'<details class="forge-column-chooser" ontoggle="{attr(_COLUMNS_JS)}" '
            'style="display:inline-block;margin-left:10px;font:12px system-ui,sans-serif">'
            '<summary style="cursor:pointer;color:#1a5fb4">columns</summary>'
            '<div class="forge-column-choices" style="max-width:60em;padding:2px 0"></div></details>')


def folder_link(href: str, label: str) -> str:
    """A link to a workspace folder: in JupyterLab, its file browser goes there (the page stays);
    elsewhere the href is followed."""
    return (f'<a class="forge-folder" href="{attr(href)}" onclick="{attr(_FOLDER_JS)}" '
            f'style="{LINK_STYLE}">{attr(label)}</a>')
