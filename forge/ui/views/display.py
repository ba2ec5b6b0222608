"""Putting views into a notebook: figures as PNG, HTML strings as HTML, widgets only where someone can click.

Figures go out as PNG images (closed afterwards), so an archived notebook, its HTML export and a
live JupyterLab show the same picture and no figure leaks into the next cell. Headless runs (the
flywheel loop sets ``FORGE_HEADLESS=1``) get no widgets: every choice falls back to its default
and is shown as static output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from matplotlib.figure import Figure

from forge.errors import ForgeError
from forge.ui.plots import png_bytes

#: One widget choice: (label, value) options; the first is the default.
Options = Sequence[tuple[str, Any]]


def live() -> bool:
    """Whether a person can interact: not in the headless loop (or a test run like it)."""
    return os.environ.get("FORGE_HEADLESS") != "1"


def displayable(item: Any) -> Any:
    """A figure as a PNG image, an HTML string as HTML, a polars frame as a compact table, anything
    else as is."""
    import polars as pl
    from IPython.display import HTML, Image

    if isinstance(item, Figure):
        return Image(data=png_bytes(item, dpi=90), format="png")
    if isinstance(item, str):
        return HTML(item)
    if isinstance(item, pl.DataFrame):
        return HTML(frame_html(item))
    return item


def show(*items: Any) -> None:
    """Display each item in the current notebook (lists and tuples are shown item by item)."""
    from IPython.display import display

    for item in items:
        if isinstance(item, (list, tuple)):
            show(*item)
        elif item is not None:
            display(displayable(item))


def choose(render: Callable[..., Any], **choices: Options | str) -> None:
    """Show ``render(**defaults)``; in a live notebook, with a control per choice that re-renders.

    ``choices`` maps each keyword of ``render`` to its options (a dropdown; the first is the
    default) or to a default text (a text box, applied on Enter). A choice that fails shows its
    error in place of the view, so a mistyped value never breaks the notebook.
    """
    empty = [name for name, options in choices.items() if not isinstance(options, str) and not options]
    if empty:
        raise ValueError(f"nothing to choose from for {', '.join(empty)}")
    defaults = {name: options if isinstance(options, str) else options[0][1] for name, options in choices.items()}
    if not live():
        show(render(**defaults))
        return
    import ipywidgets as widgets
    from IPython.display import display

    style = {"style": {"description_width": "initial"}, "layout": {"width": "max-content"}}
    pickers = {name: widgets.Text(value=options, description=name, continuous_update=False)
               if isinstance(options, str) else
               widgets.Dropdown(options=list(options), value=defaults[name], description=name, **style)
               for name, options in choices.items()}
    out = widgets.Output()

    def redraw(_: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            try:
                show(render(**{name: w.value for name, w in pickers.items()}))
            except ForgeError as exc:
                show(f'<div style="color:#b2182b">{escape(str(exc))}</div>')

    for w in pickers.values():
        w.observe(redraw, names="value")
    display(widgets.VBox([widgets.HBox(list(pickers.values())), out]))
    redraw()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN: blank
    return "" if value is None else str(value)


def frame_html(frame: Any, css_class: str = "", highlight: Sequence[str | None] = (),
               text_colour: Callable[[str, Any], str | None] | None = None) -> str:
    """A polars frame as a compact HTML table (readable numbers, no dtype row); ``highlight``
    gives a background colour per row, ``text_colour(column, value)`` a colour per cell (None: none)."""
    td = "border:1px solid #ddd;padding:1px 6px;text-align:right"
    head = "".join(f'<th style="{td};background:#f4f4f4">{escape(str(c))}</th>' for c in frame.columns)
    rows = []
    for k, row in enumerate(frame.iter_rows()):
        bg = highlight[k] if k < len(highlight) else None
        style = f' style="background:{bg}"' if bg else ""
        cells = []
        for column, value in zip(frame.columns, row):
            colour = text_colour(column, value) if text_colour else None
            css = td + (";text-align:left" if isinstance(value, str) and len(value) > 12 else "")  # prose: left
            css += f";color:{colour};font-weight:600" if colour else ""
            cells.append(f'<td style="{css}">{escape(_cell(value))}</td>')
        rows.append(f"<tr{style}>{''.join(cells)}</tr>")
    cls = f' class="{css_class}"' if css_class else ""
    return (f'<table{cls} style="border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0">'
            f"<tr>{head}</tr>{''.join(rows)}</table>")
