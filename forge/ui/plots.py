"""Matplotlib helpers shared by the UI: the status panel's history plot, and figures as PNG."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def _history_axes(ax_gap, history: list[dict[str, Any]], best_iteration: int | None = None) -> None:
    pts = [(h["total_seeds"], h["val"]["q_gap"], h["val"].get("accuracy"), h.get("iteration"))
           for h in history if h.get("val")]
    if not pts:
        ax_gap.text(0.5, 0.5, "no evaluated iterations yet", ha="center", va="center", transform=ax_gap.transAxes)
        return
    seeds, gaps, accs, iterations = zip(*pts)
    lines = ax_gap.plot(seeds, gaps, "o-", color="#d73027", label="val Q-gap (points / move, left)")
    ax_gap.set_xlabel("seeds trained")
    if len(set(seeds)) == 1:  # one iteration: one tick at its seed count, not a made-up range around it
        ax_gap.set_xticks([seeds[0]])
        ax_gap.set_xlim(seeds[0] - 1, seeds[0] + 1)
    else:
        ax_gap.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_gap.set_ylabel("Q-gap (points / move)", color="#d73027")
    if best_iteration in iterations:
        k = iterations.index(best_iteration)
        lines += ax_gap.plot([seeds[k]], [gaps[k]], "o", ms=12, mfc="none", mec="#1a9850", mew=2,
                             label=f"best: iteration {best_iteration}")
    ax_acc = ax_gap.twinx()
    lines += ax_acc.plot(seeds, accs, "s--", color="#2b7de9", label="val accuracy (share of states, right)")
    ax_acc.set_ylabel("accuracy", color="#2b7de9")
    # both axes' lines in one legend, under the plot: inside it, "best" placement sees only the left axis'
    # lines and the legend covered the accuracy points
    ax_gap.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3),
                  ncol=2, frameon=False)
    ax_gap.set_title("history")


def png_bytes(fig, dpi: int = 80) -> bytes:
    """The figure as PNG, closed afterwards (works under any matplotlib backend, headless too)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def history_png(history: list[dict[str, Any]], best_iteration: int | None = None) -> str | None:
    """Q-gap and accuracy against seeds trained, as base64 PNG (None without evaluated iterations)."""
    if not any(h.get("val") for h in history):
        return None
    return base64.b64encode(png_bytes(history_figure(history, best_iteration))).decode()


def history_figure(history: list[dict[str, Any]], best_iteration: int | None = None):
    """Q-gap and accuracy against seeds trained, the legend under the axes."""
    fig, ax = plt.subplots(figsize=(6, 3.3))
    _history_axes(ax, history, best_iteration)
    fig.tight_layout()
    return fig
