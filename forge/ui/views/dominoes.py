"""Dominoes drawn as tiles with pips (inline SVG), and hands as rows of tiles.

Inline SVG inside HTML renders the same in JupyterLab, archived notebooks, nbconvert's HTML and
the browser, with no image files. Every tile names itself (``data-domino="6-4"`` and a tooltip),
so a test or a screen reader can read what is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

from forge.oracle.rules import COUNT, DECL_NAMES, DOMINOES, in_called_suit, team_of

#: Pip centres on a 3x3 grid (column, row) for 0..6 pips.
_PIPS: dict[int, tuple[tuple[int, int], ...]] = {
    0: (),
    1: ((1, 1),),
    2: ((0, 0), (2, 2)),
    3: ((0, 0), (1, 1), (2, 2)),
    4: ((0, 0), (2, 0), (0, 2), (2, 2)),
    5: ((0, 0), (2, 0), (1, 1), (0, 2), (2, 2)),
    6: ((0, 0), (2, 0), (0, 1), (2, 1), (0, 2), (2, 2)),
}
GOOD, BEST, BAD, TRUMP_FILL = "#1a9850", "#2b7de9", "#d73027", "#fff4cc"
_FONT = "font:12px/1.35 system-ui,sans-serif"


def domino_svg(d: int, *, size: int = 22, faded: bool = False, outline: str | None = None,
               trump: bool = False) -> str:
    """One upright tile: the high pip on top. ``faded``: no longer in the hand; ``outline``: a
    coloured frame (legal, best, mistaken move); ``trump``: tinted as a member of the called suit."""
    high, low = DOMINOES[d]
    w, h, r = size, 2 * size, size * 0.09
    fill = TRUMP_FILL if trump else "#fff"
    stroke, width = (outline, 3) if outline else ("#333", 1.2)
    parts = [
        f'<svg class="forge-domino" data-domino="{high}-{low}" width="{w + 4}" height="{h + 4}" '
        f'viewBox="-2 -2 {w + 4} {h + 4}" style="opacity:{0.3 if faded else 1};vertical-align:middle">',
        f"<title>{high}-{low}{' (count ' + str(int(COUNT[d])) + ')' if COUNT[d] else ''}</title>",
        f'<rect x="0" y="0" width="{w}" height="{h}" rx="{size * 0.18:.1f}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"/>',
        f'<line x1="{w * 0.15:.1f}" y1="{w}" x2="{w * 0.85:.1f}" y2="{w}" stroke="#333" stroke-width="1"/>',
    ]
    for half, pips in enumerate((high, low)):
        for col, row in _PIPS[pips]:
            cx, cy = w * (0.22 + 0.28 * col), half * w + w * (0.22 + 0.28 * row)
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="#222"/>')
    parts.append("</svg>")
    return "".join(parts)


def tile(d: int, caption: str = "", **style: object) -> str:
    """A tile with a small caption under it (a local index, a Q value, a mark)."""
    return (f'<span style="display:inline-block;text-align:center;margin:0 2px;{_FONT}">'
            f"{domino_svg(d, **style)}<br><span>{escape(caption) if caption else '&nbsp;'}</span></span>")


def player_label(p: int) -> str:
    return f"P{p} (team {team_of(p)})"


def hands_html(hands: np.ndarray, decl_id: int, *, held: np.ndarray | None = None, mover: int | None = None,
               outlines: Mapping[tuple[int, int], str] | None = None,
               captions: Mapping[tuple[int, int], str] | None = None) -> str:
    """Four hands, one row per player; tiles keyed by (player, local index) may get an outline
    colour and a caption. ``held``: (4, n) booleans, dominoes already played drawn faded."""
    n = hands.shape[1]
    outlines, captions = outlines or {}, captions or {}
    rows = []
    for p in range(hands.shape[0]):
        tiles = "".join(
            tile(int(hands[p, i]), captions.get((p, i), f"#{i}"), faded=held is not None and not held[p, i],
                 outline=outlines.get((p, i)), trump=in_called_suit(int(hands[p, i]), decl_id))
            for i in range(n)
        )
        who = player_label(p) + (" · to move" if p == mover else "")
        weight = "font-weight:600;" if p == mover else ""
        rows.append(f'<div class="forge-hand" data-player="{p}" style="display:flex;align-items:center;gap:6px">'
                    f'<span style="width:150px;{weight}{_FONT}">{escape(who)}</span>{tiles}</div>')
    return f'<div class="forge-hands">{"".join(rows)}</div>'


def decl_label(decl_id: int) -> str:
    return f"{DECL_NAMES[decl_id]} ({decl_id})"


def legend() -> str:
    """What the colours mean, shown once under a drawing."""
    swatch = ('<span style="display:inline-block;width:10px;height:10px;border:2px solid {c};'
              'background:{f};margin:0 3px 0 10px"></span>{t}')
    items = [(GOOD, "#fff", "legal move"), (BEST, "#fff", "oracle's best"), (BAD, "#fff", "model's mistake"),
             ("#333", TRUMP_FILL, "called suit (trump)")]
    return f'<div style="{_FONT};color:#555">' + "".join(swatch.format(c=c, f=f, t=t) for c, f, t in items) + "</div>"


def tiles_row(dominoes: Sequence[int], captions: Sequence[str] = (), decl_id: int | None = None) -> str:
    """Dominoes in a row, e.g. the plays of a trick (captions name who played each)."""
    caps = list(captions) + [""] * (len(dominoes) - len(captions))
    return "".join(tile(int(d), c, trump=decl_id is not None and in_called_suit(int(d), decl_id))
                   for d, c in zip(dominoes, caps))
