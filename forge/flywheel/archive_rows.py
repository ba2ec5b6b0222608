"""The archive as data: one row per iteration, finished or under way.

How it shows is presentation: the index page (:mod:`forge.ui.archive_index`), the text table
(:func:`forge.ui.text.format_archive`) and the HTML beside each archived notebook
(:mod:`forge.ui.loop_hooks`).
"""

from __future__ import annotations

from typing import Any

from forge.flywheel.records import to_plain
from forge.flywheel.state import State


def iteration_rows(state: State, last: int | None = None) -> list[dict[str, Any]]:
    """One row per iteration: finished ones from history (the ``last`` newest, or all), plus the current one."""
    entries = state.history if last is None else state.history.tail(last)
    rows: list[dict[str, Any]] = [{**h.to_dict(), "status": "done"} for h in entries]
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
