"""The panel's notice: what happened while it was open (an iteration recorded, flagged, or failed).

A person who started a loop and went back to reading should not have to compare history rows to
learn that one finished: the live panel compares each refresh's snapshot with the previous one and,
when the record moved on, shows one line at its top that stays until the next event (or a click
on "dismiss"). A panel opened afterwards says nothing: the history already shows it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from forge.flywheel.records import PRIMARY_METRIC
from forge.flywheel.status import Snapshot
from forge.ui.metric_info import flag_text, info, label
from forge.ui.render import badge, esc
from forge.ui.text import cell

_BOX = ("border-radius:4px;padding:4px 8px;margin:2px 0;font:13px/1.5 system-ui,sans-serif;"
        "display:flex;gap:8px;align-items:baseline")
_DISMISS = ('<button type="button" class="forge-dismiss" onclick="this.closest(\'.forge-notice\').remove()" '
            'style="margin-left:auto;font:11px system-ui,sans-serif;cursor:pointer">dismiss</button>')


def event(before: Snapshot, after: Snapshot) -> dict[str, Any] | None:
    """What changed from ``before`` to ``after`` worth a notice: ``{"kind": "finished", "entry": ...,
    "best": bool, "flags": [...]}`` for a newly recorded iteration, ``{"kind": "failed", ...}`` for a
    loop that failed or crashed; None for anything else (a stage done, a heartbeat)."""
    if after.history_count > before.history_count and after.history:
        entry = after.history[-1]
        return {"kind": "finished", "entry": entry, "flags": list(entry.get("flags") or []),
                "best": after.best_iteration == entry.get("iteration")}
    if after.status in ("failed", "crashed") and (
            before.status != after.status or before.iteration != after.iteration):
        return {"kind": after.status, "iteration": after.iteration,
                "stage": after.current.stage if after.current else None, "error": after.last_error}
    return None


def notice_html(before: Snapshot, after: Snapshot, at: str | None = None) -> str | None:
    """The notice for the change from ``before`` to ``after`` (see :func:`event`), or None."""
    ev = event(before, after)
    if ev is None:
        return None
    when = at or dt.datetime.now().strftime("%H:%M:%S")
    if ev["kind"] == "finished":
        entry = ev["entry"]
        split, name = PRIMARY_METRIC
        value = (entry.get(split) or {}).get(name)
        text = (f"iteration {esc(entry.get('iteration'))} finished at {esc(when)}: "
                f"{esc(label(split, name))} {esc(cell(value))} {esc(info(name).unit)}")
        if ev["best"]:
            text += f" {badge('best', 'the best iteration so far', 'forge-best-badge', small=True)}"
        if ev["flags"]:
            flags = "; ".join(flag_text(f) for f in ev["flags"])
            text += f" {badge('flagged', flags, 'forge-flag', small=True)} {esc(flags)}"
            colour = "#fdf0e6"
        else:
            colour = "#e8f5e8"
        css = "forge-notice forge-notice-flagged" if ev["flags"] else "forge-notice forge-notice-finished"
    else:
        where = f" in {ev['stage']}" if ev.get("stage") else ""
        text = (f"iteration {esc(ev['iteration'])} {esc(ev['kind'])}{esc(where)} at {esc(when)}"
                + (f": <code>{esc(ev['error'])}</code>" if ev.get("error") else ""))
        colour, css = "#fbe7e7", "forge-notice forge-notice-failed"
    return f'<div class="{css}" role="status" style="background:{colour};{_BOX}"><span>{text}</span>{_DISMISS}</div>'
