"""The status panel: a live ipywidget in JupyterLab, static HTML everywhere else.

The panel is displayed as one output carrying two representations: a widget view, which a live
JupyterLab renders and which a background thread refreshes in place (it updates the widget's
value, never printing into any cell), and ``text/html``, which archived notebooks, nbconvert
and nbviewer render. Headless runs (the flywheel loop sets FORGE_HEADLESS=1) never start the
refresh thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from forge.flywheel.status import Snapshot, snapshot
from forge.ui.notice import notice_html
from forge.ui.plots import history_png
from forge.ui.render import PANEL_STYLE, panel_html, panel_parts

REFRESH_SECONDS = 5.0


_plot_cache: dict[tuple, str | None] = {}


def _history_plot(history: list[dict[str, Any]], best_iteration: int | None = None) -> str | None:
    """The history plot, redrawn only when the history changes (the panel re-renders every few seconds)."""
    key = (best_iteration, *((h.get("iteration"), h.get("finished_at")) for h in history))
    if key not in _plot_cache:
        _plot_cache.clear()
        _plot_cache[key] = history_png(history, best_iteration)
    return _plot_cache[key]


def render(root: str | os.PathLike = ".", base: str | os.PathLike | None = None, links: bool = True) -> str:
    """The panel's HTML for the workspace at ``root``, links relative to ``base`` (default: cwd);
    without ``links``, a dated snapshot (see :func:`forge.ui.render.panel_html`)."""
    return _render(snapshot(root), base, links)


def _render(snap: Snapshot, base: str | os.PathLike | None = None, links: bool = True) -> str:
    plot = _history_plot(snap.history, snap.best_iteration)
    return panel_html(snap, base=base or Path.cwd(), plot_png=plot, links=links)


def _render_parts(snap: Snapshot, links: bool = True) -> dict[str, str]:
    """The live panel's parts (see :func:`forge.ui.render.panel_parts`), each in its own panel-styled div."""
    plot = _history_plot(snap.history, snap.best_iteration)
    parts = panel_parts(snap, base=Path.cwd(), plot_png=plot, links=links)
    return {name: f'<div class="forge-panel" style="{PANEL_STYLE}">{part}</div>' if part else ""
            for name, part in parts.items()}


def state_key(snap: Snapshot) -> tuple:
    """What a message about the flywheel is about: once this changes, an old message is stale."""
    stage = snap.current.stage if snap.current else None
    return snap.status, snap.iteration, stage, snap.history_count  # the history shown is a page


class Panel:
    """Displayable status panel; ``stop()`` ends its refresh thread.

    Live, it is a box of one output widget per part of the panel (notice, status, history, plot),
    each showing its part as ``text/html`` through JupyterLab's own renderer: that renderer resolves
    the part's relative links against the notebook's folder and opens them in a tab of the same
    JupyterLab (an HTML widget's links would load a new JupyterLab). A refresh sets only the parts
    whose HTML changed, so what a reader does in an unchanged part (a legend expanded, a command
    selected for copying, the history sorted) survives the refreshes of a running loop. When an
    iteration is recorded or fails while the panel is open, the notice part says so.
    """

    def __init__(self, root: str | os.PathLike = ".", live: bool | None = None, interval: float = REFRESH_SECONDS):
        self.root = Path(root).resolve()
        self.live = os.environ.get("FORGE_HEADLESS") != "1" if live is None else live
        self.snap = snapshot(self.root)
        self.html = _render(self.snap, links=self.live)  # headless: a snapshot read later from the archive
        self.on_change: Any = None  # called with the new snapshot when the flywheel's state changes
        self._widget = None
        self.parts: dict[str, Any] = {}  # live: part name -> its HTML widget
        self._stop = threading.Event()
        if self.live:
            import ipywidgets as widgets

            self.parts = {name: widgets.Output() for name in ("notice", *_render_parts(self.snap))}
            for name, html in _render_parts(self.snap).items():
                show_html(self.parts[name], html)
            self._widget = widgets.VBox(list(self.parts.values()), layout=widgets.Layout(
                border="1px solid #ccc", padding="4px 8px", margin="4px 0")).add_class("forge-live-panel")
            threading.Thread(target=self._refresh, args=(interval,), name="forge-panel", daemon=True).start()

    def refresh(self) -> None:
        """Re-render now (e.g. a dashboard button just changed state.yaml)."""
        try:
            snap = snapshot(self.root)
            self.html = _render(snap, links=self.live)
            parts = _render_parts(snap) if self.parts else {}
        except Exception as exc:  # noqa: BLE001 - a half-written state must not kill the panel
            self.html = f"<div class='forge-panel'>status unavailable: {exc}</div>"
            parts = {"status": self.html} if self.parts else {}
        else:
            news = notice_html(self.snap, snap)
            if news and self.parts:
                parts["notice"] = news
            changed, self.snap = state_key(snap) != state_key(self.snap), snap
            if changed and self.on_change is not None:
                self.on_change(snap)
        for name, html in parts.items():
            show_html(self.parts[name], html)

    def _refresh(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget (live, its links relative to this notebook) and, for anything that reads the saved
        notebook later (its HTML export, the archive), a dated snapshot without links: wherever the
        notebook is read from then (a copy in archive/), links made for notebooks/ would point nowhere."""
        bundle: dict[str, Any] = {"text/html": self.html, "text/plain": "forge status panel"}
        if self._widget is not None:
            bundle.update(self._widget._repr_mimebundle_(include=include, exclude=exclude) or {})
            bundle["text/html"] = _render(self.snap, links=False)
        return bundle


def show_html(out: Any, html: str) -> None:
    """Show ``html`` in output widget ``out`` unless it shows it already (an unchanged part is left
    alone: see :class:`Panel`). Setting ``outputs`` is safe from the refresh thread, where ``with out:``
    would capture whatever the kernel prints meanwhile."""
    outputs = ({"output_type": "display_data", "data": {"text/html": html}, "metadata": {}},) if html else ()
    if out.outputs != outputs:
        out.outputs = outputs


def shown_html(out: Any) -> str:
    """The HTML output widget ``out`` shows ("" for none)."""
    return "".join(o.get("data", {}).get("text/html", "") for o in out.outputs)


def show_panel(root: str | os.PathLike = ".", live: bool | None = None) -> None:
    """Display the panel in the current notebook.

    Returns nothing: a notebook cell ending with this call would otherwise display the returned panel
    a second time (its last expression's value), a whole duplicate panel under the first."""
    from IPython.display import display

    display(Panel(root, live=live))
