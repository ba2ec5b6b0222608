"""Compare mode: saved runs side by side (``curve.json`` files of one mode)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from forge.errors import InputError
from ttq.common import read_json
from ttq.curve import plot, time_axis
from ttq.flywheel import plot as plot_flywheel


def _label(curve: dict[str, Any]) -> str:
    return curve.get("label") or curve["started"]


def compare_flywheel(curves: list[dict[str, Any]]) -> None:
    """Flywheel runs side by side: val Q-gap per iteration, cumulative minutes at the last, and the
    mean of the last three iterations (one iteration's Q-gap is noisy)."""
    if not all(c.get("mode") == "flywheel" for c in curves):
        raise InputError("--compare: flywheel runs compare only with flywheel runs")
    width = max(12, *(len(_label(c)) for c in curves))
    n = max(len(c["iterations"]) for c in curves)
    print(f"{'val Q-gap, iteration':<{width}} " + " ".join(f"{i + 1:>6}" for i in range(n))
          + "   last 3 mean, minutes, load")
    for c in curves:
        rows = c["iterations"]
        cells = " ".join(f"{r['q_gap']:6.3f}" for r in rows) + " " * 7 * (n - len(rows))
        tail = statistics.mean(r["q_gap"] for r in rows[-3:])
        print(f"{_label(c):<{width}} {cells}   {tail:.3f}, {rows[-1]['minutes']:.1f}, {c.get('load_before')}")


def compare(paths: list[str], out: Path | None) -> None:
    """Q-gap of saved curves point by point (runs of one budget and --points score at the same
    fractions of it), with each run's load average; one plot of them all."""
    curves = [read_json(path, "--compare") for path in paths]
    if any(c.get("mode") == "flywheel" for c in curves):
        compare_flywheel(curves)
        if out is not None:
            plot_flywheel(curves, out)
            print(f"plot: {out}")
        return
    key, _ = time_axis(curves[0])
    width = max(12, *(len(_label(c)) for c in curves))
    n = max(len(c["points"]) for c in curves)
    print(f"{'Q-gap at point':<{width}} " + " ".join(f"{i + 1:>7}" for i in range(n)) + f"   {key} at the last, load")
    for c in curves:
        pts = c["points"]
        cells = " ".join(f"{p['q_gap']:7.3f}" for p in pts) + " " * 8 * (n - len(pts))
        print(f"{_label(c):<{width}} {cells}   {pts[-1][key]:.2f}, {c.get('load_before')}")
    if out is not None:
        plot(curves, out)
        print(f"plot: {out}")
