"""Compare mode: saved runs side by side (``curve.json`` files). Runs of one mode compare point by
point (trainer) or iteration by iteration (flywheel); the flywheel beside trainer runs compares on
the one axis they share, wall-clock minutes, with the reference's published figures as lines."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from forge.errors import InputError
from forge.ml.catalog import REFERENCE_FIGURES
from ttq.common import REFERENCE_MODEL, figure, five_metrics_figure, metrics_path, read_json, save_figure
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


#: Minutes at which the wall-clock comparison reads every run (those within the longest run).
WALL_MARKS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 150)
#: The metrics read at each mark: the headline's three, in points.
WALL_METRICS = ("q_gap", "value_mae", "q_mae")
#: A trainer scores a point when its clock passes the mark, a batch or so later: a row this close past a
#: mark counts as at it.
MARK_SLACK_MIN = 0.25


def _wall_label(curve: dict[str, Any]) -> str:
    """A run's label with its CPU: runs side by side at wall-clock may come from different machines."""
    cpu = curve.get("machine", {}).get("cpu")
    return f"{_label(curve)} ({cpu})" if cpu else _label(curve)


def _distinct(labels: list[str]) -> list[str]:
    """The labels with a repeat numbered (``name #2``): two runs of one command on one CPU are two rows,
    not one that hides the other."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def wall_rows(curve: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's scored rows on wall-clock minutes: a flywheel's iterations (the whole loop's time), a
    trainer's points (training time, evaluation excluded). A trainer run on the CPU clock has no
    wall-clock axis, so it cannot be put beside the flywheel."""
    if curve.get("mode") == "flywheel":
        return [r for r in curve["iterations"] if r.get("minutes") is not None]
    if time_axis(curve)[0] != "minutes":
        raise InputError(f"--compare: {_label(curve)!r} was timed on the CPU clock; beside a flywheel run "
                         "only wall-clock runs compare (benchmarks/learning.py --clock wall)")
    return [p for p in curve["points"] if p.get("minutes") is not None]


def run_end(curve: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    """Where a run ended, in minutes: its budget, or its last row if that came later (a flywheel's last
    iteration ends before the budget when the next one would not fit)."""
    budget = (curve.get("budget_s") or 0.0) / 60
    return max(rows[-1]["minutes"], budget) if rows else budget


def at_minutes(rows: list[dict[str, Any]], minutes: float, metric: str, end: float | None = None) -> float | None:
    """The metric as it stood at ``minutes``: the last row scored at or before it, or within
    ``MARK_SLACK_MIN`` past it (None before the first, past the run's ``end`` (default: its last row),
    or for a metric the run did not report)."""
    if not rows or minutes > (rows[-1]["minutes"] if end is None else end) + MARK_SLACK_MIN:
        return None
    before = [r for r in rows if r["minutes"] <= minutes + MARK_SLACK_MIN and r.get(metric) is not None]
    return before[-1][metric] if before else None


def compare_wall_clock(curves: list[dict[str, Any]]) -> dict[str, dict[str, list[float | None]]]:
    """Print and return each run's Q-gap, value MAE and Q-MAE at the wall-clock marks, with the
    reference's published figures for them."""
    labels = _distinct([_wall_label(c) for c in curves])
    rows = {label: wall_rows(c) for label, c in zip(labels, curves)}
    ends = {label: run_end(c, rows[label]) for label, c in zip(labels, curves)}
    longest = max(ends.values(), default=0.0)
    marks = [m for m in WALL_MARKS if m <= longest + 1e-9] or [WALL_MARKS[0]]
    width = max(24, *(len(label) for label in rows))
    table: dict[str, dict[str, list[float | None]]] = {}
    for metric in WALL_METRICS:
        print(f"\n{metric + ' at wall-clock minute':<{width}} " + " ".join(f"{m:>7}" for m in marks))
        for label, rs in rows.items():
            values = [at_minutes(rs, m, metric, ends[label]) for m in marks]
            table.setdefault(label, {})[metric] = values
            print(f"{label:<{width}} " + " ".join(f"{v:7.3f}" if v is not None else f"{'-':>7}" for v in values))
        for model, figures in REFERENCE_FIGURES.items():
            if metric in figures:
                print(f"{'reference ' + model:<{width}} {figures[metric]:7.3f} (published, GPU)")
    return table


def plot_wall_clock(curves: list[dict[str, Any]], path: Path) -> None:
    """Val Q-gap against wall-clock minutes for every run, the reference models' Q-gap as lines
    (left: linear, right: log scale), and the other metrics in the ``-metrics`` figure."""
    fig, (linear, log) = figure(sharex=True)
    labels = _distinct([_wall_label(c) for c in curves])
    for c, label in zip(curves, labels):
        rs = [r for r in wall_rows(c) if r.get("q_gap") is not None]
        for ax in (linear, log):
            ax.plot([r["minutes"] for r in rs], [r["q_gap"] for r in rs], marker="o", ms=3, label=label)
    for (model, figures), style in zip(REFERENCE_FIGURES.items(), (":", "-.")):
        for ax in (linear, log):
            ax.axhline(figures["q_gap"], color="grey", ls=style, lw=1, label=f"reference {model}: {figures['q_gap']}")
    log.set_yscale("log")
    for ax in (linear, log):
        ax.set_xlabel("wall-clock minutes (flywheel: the whole loop; trainer: training only)")
        ax.set_ylabel("golden val Q-gap (points lost per move)")
    save_figure(fig, (linear, log), curves, "From scratch against wall-clock", path)  # the title names each CPU
    common = [{**c, "label": label, "rows": wall_rows(c)} for c, label in zip(curves, labels)]
    five_metrics_figure(common, "rows", "minutes", "wall-clock minutes", metrics_path(path),
                        f"The reference catalog's metrics against wall-clock (lines: {REFERENCE_MODEL})")


def compare(paths: list[str], out: Path | None) -> None:
    """Q-gap of saved curves point by point (runs of one budget and --points score at the same
    fractions of it), with each run's load average; one plot of them all. Flywheel runs beside
    trainer runs compare at wall-clock minutes instead."""
    curves = [read_json(path, "--compare") for path in paths]
    modes = {c.get("mode") == "flywheel" for c in curves}
    if len(modes) == 2:
        compare_wall_clock(curves)
        if out is not None:
            plot_wall_clock(curves, out)
            print(f"plot: {out}")
        return
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
