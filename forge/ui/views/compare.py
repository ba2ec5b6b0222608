"""Any two recorded iterations side by side, of one workspace or of several (variants run side by side).

Everything comes from the records: each workspace's ``state.yaml`` history holds, per iteration,
its metrics on the golden sets (Q-gap per declaration and per trick depth included) and the
configuration it ran with. So a comparison needs no checkpoint and no kernel state, and reads the
same in ``notebooks/06_compare.ipynb`` as in ``archive/index.html`` (which embeds :func:`index_data`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from forge.errors import InputError
from forge.flywheel.paths import find_root
from forge.flywheel.records import PRIMARY_METRIC, TRACKED, HistoryEntry, better
from forge.flywheel.state import load_state
from forge.ml.catalog import REFERENCE_FIVE
from forge.oracle.rules import DECL_NAMES, MAX_HAND
from forge.ui.metric_info import direction as better_when
from forge.ui.metric_info import info, label
from forge.ui.views import breakdown
from forge.ui.views.display import Options, choose, frame_html, show

#: The metrics compared, in order: (where measured, name).
METRIC_ROWS: tuple[tuple[str, str], ...] = (
    *(("val", n) for n in (*REFERENCE_FIVE, "accuracy", "p99_gap")),
    *(("test", n) for n in (*REFERENCE_FIVE, "accuracy")),
    *(("playout", n) for n in ("playout_points_lost", "playout_outcome_error", "playout_perfect_hands")),
)
DECL_ROWS = tuple(f"q_gap/{name}" for name in DECL_NAMES)
DEPTH_ROWS = tuple(f"q_gap/depth{k}" for k in range(MAX_HAND))
A_COLOUR, B_COLOUR = "#4575b4", "#f46d43"


@dataclass(frozen=True)
class Run:
    """One recorded iteration of one workspace."""

    workspace: str  # the workspace's label (its folder name)
    root: Path
    entry: HistoryEntry
    best: bool  # the workspace's best iteration by the primary metric

    @property
    def iteration(self) -> int:
        return self.entry.iteration

    @property
    def label(self) -> str:
        return f"{self.workspace} · iteration {self.iteration}" + (" (best)" if self.best else "")

    def metric(self, split: str, name: str) -> float | None:
        return self.entry.metric(split, name)


def workspace_labels(roots: Sequence[Path]) -> list[str]:
    """Folder names, with the parent's name added where two workspaces share one."""
    names = [r.name for r in roots]
    return [f"{r.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in roots]


#: Iterations a comparison loads per workspace: the newest ones, and the best wherever it is (a long
#: flywheel's whole history would make the view slower every day); ``last=None`` loads them all.
RECENT = 200


def load_runs(roots: Sequence[str | os.PathLike | None], last: int | None = RECENT) -> list[Run]:
    """The recorded iterations of each workspace (the ``last`` newest and the best). The first may be
    ``None`` (this folder or its parent, as a notebook finds it); the others, if relative, are taken
    relative to the first."""
    if not roots:
        return []
    first = find_root(roots[0])
    paths = [first] + [find_root(first / r) for r in roots[1:]]
    if len(set(paths)) != len(paths):
        raise InputError(f"a workspace is named twice: {', '.join(map(str, paths))}")
    runs = []
    for path, name in zip(paths, workspace_labels(paths)):
        history = load_state(path).history
        best = history.best()
        entries = list(history) if last is None else history.tail(last)
        if best is not None and all(h.iteration != best.iteration for h in entries):
            entries = [best, *entries]
        runs += [Run(name, path, h, best is not None and h.iteration == best.iteration) for h in entries]
    return runs


def workspaces(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(r.workspace for r in runs))


def pick(runs: Sequence[Run], wanted: str | int | None) -> Run:
    """The run named ``3`` (the first workspace's iteration 3) or ``variant:3``; a label works too."""
    text = str(wanted).strip()
    ws, _, number = text.rpartition(":")
    for run in runs:
        if text == run.label or (number.isdigit() and int(number) == run.iteration
                                 and (not ws or ws == run.workspace) and (ws or run.workspace == runs[0].workspace)):
            return run
    choices = ", ".join(f"{r.workspace}:{r.iteration}" for r in runs) or "none recorded yet"
    raise InputError(f"no recorded iteration {text!r} (choose from {choices})")


def default_pair(runs: Sequence[Run]) -> tuple[Run, Run]:
    """One workspace: its best against its latest (or the one before, when the latest is the best);
    several: the first two workspaces' best iterations."""
    names = workspaces(runs)
    if len(names) > 1:
        first, second = ([r for r in runs if r.workspace == n and r.best] for n in names[:2])
        if first and second:
            return first[0], second[0]
    own = [r for r in runs if r.workspace == names[0]]
    best = next((r for r in own if r.best), own[0])
    other = own[-1] if own[-1] is not best else own[-2] if len(own) > 1 else best
    return best, other


def run_options(runs: Sequence[Run], first: Run) -> Options:
    return [(first.label, first)] + [(r.label, r) for r in runs if r is not first]


# ---------------------------------------------------------------------------------------------- tables

def _verdict(name: str, a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    if a == b:
        return "same"
    return "A" if better(name.split("/")[0], a, b) else "B"


def metrics_frame(a: Run, b: Run, rows: Sequence[tuple[str, str]] = METRIC_ROWS) -> pl.DataFrame:
    """Each metric of A and B, B − A, which is better, its unit and meaning (rows neither has are left out)."""
    out = []
    for split, name in rows:
        va, vb = a.metric(split, name), b.metric(split, name)
        if va is None and vb is None:
            continue
        m = info(name)
        out.append({"metric": label(split, name), "unit": m.unit, "better when": better_when(name), "A": va, "B": vb,
                    "B − A": vb - va if va is not None and vb is not None else None,
                    "better": _verdict(name, va, vb), "meaning": m.meaning})
    return pl.DataFrame(out, schema={"metric": pl.String, "unit": pl.String, "better when": pl.String,
                                     "A": pl.Float64, "B": pl.Float64, "B − A": pl.Float64, "better": pl.String,
                                     "meaning": pl.String})


def breakdown_frame(a: Run, b: Run, names: Sequence[str], split: str = "val") -> pl.DataFrame:
    """Q-gap per declaration or per trick depth (``names``: DECL_ROWS or DEPTH_ROWS) for A and B, each
    beside the number of states it is over; a group with too few states (or none) gets no verdict and
    says so (rows neither run recorded at all are left out)."""
    out = []
    for name in names:
        va, vb = a.metric(split, name), b.metric(split, name)
        na, nb = (breakdown.states(getattr(r.entry, split, None), name) for r in (a, b))
        if va is None and vb is None and not (na == 0 or nb == 0):
            continue
        ok = breakdown.readable(na) and breakdown.readable(nb) and va is not None and vb is not None
        notes = [f"{tag}: {why}" for tag, n in (("A", na), ("B", nb)) if (why := breakdown.verdict(n))
                 and why != "states not recorded"]
        out.append({"metric": label(split, name), "unit": info(name).unit, "A": va, "A states": na, "B": vb,
                    "B states": nb, "B − A": vb - va if va is not None and vb is not None else None,
                    "better": _verdict(name, va, vb) if ok else "", "note": "; ".join(notes)})
    return pl.DataFrame(out, schema={"metric": pl.String, "unit": pl.String, "A": pl.Float64, "A states": pl.Int64,
                                     "B": pl.Float64, "B states": pl.Int64, "B − A": pl.Float64,
                                     "better": pl.String, "note": pl.String})


def config_diff(a: Run, b: Run) -> pl.DataFrame:
    """The configuration keys whose values differ between A's iteration and B's (as each ran)."""
    ca = a.entry.config.flat() if a.entry.config else {}
    cb = b.entry.config.flat() if b.entry.config else {}
    keys = [k for k in dict.fromkeys([*ca, *cb]) if ca.get(k) != cb.get(k)]
    return pl.DataFrame({"config": keys, "A": [_text(ca.get(k, "-")) for k in keys],
                         "B": [_text(cb.get(k, "-")) for k in keys]},
                        schema={"config": pl.String, "A": pl.String, "B": pl.String})


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _verdict_colour(column: str, value: Any) -> str | None:
    if column == "better" and value in ("A", "B"):
        return A_COLOUR if value == "A" else B_COLOUR
    return None


def breakdown_figure(a: Run, b: Run, split: str = "val") -> Figure | None:
    """A's and B's Q-gap per declaration and per trick depth, as grouped bars (None: neither recorded any)."""
    panels = [(DECL_ROWS, "declaration", [n.split("/")[1] for n in DECL_ROWS]),
              (DEPTH_ROWS, "tricks already played", [str(k) for k in range(MAX_HAND)])]
    kept = [(names, xlabel, [t for n, t in zip(names, ticks) if a.metric(split, n) is not None
                             or b.metric(split, n) is not None],
             [n for n in names if a.metric(split, n) is not None or b.metric(split, n) is not None])
            for names, xlabel, ticks in panels]
    if not any(present for *_, present in kept):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    for ax, (_names, xlabel, ticks, present) in zip(axes, kept):
        xs = range(len(present))
        for shift, run, colour, tag in ((-0.2, a, A_COLOUR, "A"), (0.2, b, B_COLOUR, "B")):
            legend = f"{tag}: {run.label}"  # on the run's first bar only
            for x, name in zip(xs, present):
                value, n = run.metric(split, name), breakdown.states(getattr(run.entry, split, None), name)
                if value is None:
                    continue
                ok = breakdown.readable(n)
                ax.bar(x + shift, value, width=0.4, color=colour if ok else "#ddd", hatch=None if ok else "//",
                       edgecolor=colour, label=legend)
                legend = None
                if n is not None:
                    ax.annotate(f"{n:,}", (x + shift, value), ha="center", va="bottom", fontsize=6, rotation=90,
                                color="#333" if ok else "#b2182b")
        ax.set_xticks(list(xs), ticks, rotation=45 if xlabel == "declaration" else 0, ha="right"
                      if xlabel == "declaration" else "center", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Q-gap (points / move)")
        ax.set_title(f"{split} Q-gap by {xlabel.split()[-1] if xlabel == 'declaration' else 'trick depth'}",
                     fontsize=10)
        ax.margins(y=0.25)
        ax.legend(fontsize=7)
    fig.text(0.5, 0.005, f"numbers on the bars: states each is over; hatched grey: {breakdown.FEW_NOTE}",
             ha="center", fontsize=8, color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def pair_html(a: Run, b: Run) -> str:
    """A and B side by side: metrics, per-declaration and per-depth Q-gap, configuration differences."""
    head = (f'<div style="font:13px/1.5 system-ui,sans-serif"><b style="color:{A_COLOUR}">A</b>: {a.label} &middot; '
            f'<b style="color:{B_COLOUR}">B</b>: {b.label}</div>')
    parts = [head, "<h4>Metrics</h4>",
             frame_html(metrics_frame(a, b), "forge-compare-metrics", text_colour=_verdict_colour)]
    for title, names, css in (("Q-gap per declaration (golden val)", DECL_ROWS, "forge-compare-decl"),
                              ("Q-gap per trick depth (golden val)", DEPTH_ROWS, "forge-compare-depth")):
        frame = breakdown_frame(a, b, names)
        few = (f'<p style="font:12px system-ui,sans-serif;color:#555">states: how many golden val states each '
               f"figure is over; no verdict where a side has {breakdown.FEW_NOTE.split(':')[0]}</p>")
        body = frame_html(frame, css, text_colour=_verdict_colour) + few if len(frame) else \
            f'<p class="{css}">not recorded for these iterations (recorded since per-depth metrics were added)</p>'
        parts += [f"<h4>{title}</h4>", body]
    diff = config_diff(a, b)
    parts.append("<h4>Configuration differences</h4>")
    parts.append(frame_html(diff, "forge-config-diff") if len(diff) else
                 '<p class="forge-config-diff">the same configuration</p>')
    return f'<div class="forge-compare">{"".join(parts)}</div>'


def pair_view(a: Run, b: Run) -> list[Any]:
    """What a notebook shows for a pair: the tables, then the breakdown's bars."""
    return [pair_html(a, b), breakdown_figure(a, b)]


def choose_pair(runs: Sequence[Run], a: str | int | None = None, b: str | int | None = None) -> None:
    """Two dropdowns (A and B, any recorded iteration of any workspace), and the pair side by side."""
    if not runs:
        show('<div class="forge-compare">nothing to compare yet: no iteration is recorded</div>')
        return
    first, second = default_pair(runs)
    first = pick(runs, a) if a is not None else first
    second = pick(runs, b) if b is not None else second
    choose(pair_view, a=run_options(runs, first), b=run_options(runs, second))


# ---------------------------------------------------------------------------------------------- trends

def trend_figure(runs: Sequence[Run], metrics: Sequence[tuple[str, str]] = TRACKED) -> Figure:
    """Every tracked metric against seeds trained, one line per workspace; each workspace's best
    iteration (by the primary metric) ringed in green."""
    cols = 3
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    names = workspaces(runs)
    for ax, (split, name) in zip(axes.flat, metrics):
        for k, ws in enumerate(names):
            pts = [(r.entry.total_seeds, r.metric(split, name), r.best) for r in runs if r.workspace == ws
                   and r.metric(split, name) is not None]
            if not pts:
                continue
            xs, ys, best = zip(*pts)
            ax.plot(xs, ys, "o-", ms=3, color=f"C{k}", label=ws)
            for x, y, is_best in pts:
                if is_best:
                    ax.plot([x], [y], "o", ms=10, mfc="none", mec="#1a9850", mew=2)
        m = info(name)
        ax.set_title(f"{label(split, name)} ({better_when(name)} is better)", fontsize=9)
        ax.set_ylabel(m.unit, fontsize=8)
        ax.set_xlabel("seeds trained", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("every tracked metric, iteration by iteration (green ring: the best iteration by "
                 f"{label(*PRIMARY_METRIC)})", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- workspaces

def workspaces_frame(runs: Sequence[Run]) -> pl.DataFrame:
    """One row per workspace: how far it got, its best iteration and its latest."""
    rows = []
    for ws in workspaces(runs):
        own = [r for r in runs if r.workspace == ws]
        best = next(r for r in own if r.best) if any(r.best for r in own) else None
        last = own[-1]
        rows.append({"workspace": ws, "preset": last.entry.config.preset if last.entry.config else None,
                     "iterations": len(own), "seeds trained": last.entry.total_seeds,
                     "best iteration": best.iteration if best else None,
                     f"best {label(*PRIMARY_METRIC)}": best.metric(*PRIMARY_METRIC) if best else None,
                     "its play-out lost": best.metric("playout", "playout_points_lost") if best else None,
                     "latest iteration": last.iteration,
                     f"latest {label(*PRIMARY_METRIC)}": last.metric(*PRIMARY_METRIC)})
    return pl.DataFrame(rows)


def variant_config(runs: Sequence[Run]) -> pl.DataFrame:
    """The configuration keys that differ between the workspaces (their latest iterations'), one column each."""
    configs = {}
    for ws in workspaces(runs):
        last = [r for r in runs if r.workspace == ws][-1]
        configs[ws] = last.entry.config.flat() if last.entry.config else {}
    keys = [k for k in dict.fromkeys(k for c in configs.values() for k in c)
            if len({repr(c.get(k)) for c in configs.values()}) > 1]
    return pl.DataFrame({"config": keys, **{ws: [_text(c.get(k)) for k in keys] for ws, c in configs.items()}})


def workspaces_html(runs: Sequence[Run]) -> str:
    if not runs:
        return '<div class="forge-compare-workspaces">no iteration is recorded yet</div>'
    frame = workspaces_frame(runs)
    diff = variant_config(runs) if len(workspaces(runs)) > 1 else None
    same = "<p>the workspaces run the same configuration</p>"
    note = "" if diff is None else frame_html(diff, "forge-variant-config") if len(diff) else same
    units = (f"<p style='font:12px system-ui,sans-serif;color:#555'>{label(*PRIMARY_METRIC)} in "
             f"{info(PRIMARY_METRIC[1]).unit}: {info(PRIMARY_METRIC[1]).meaning}; play-out lost in "
             f"{info('playout_points_lost').unit}: {info('playout_points_lost').meaning}</p>")
    return f'<div class="forge-compare-workspaces">{frame_html(frame)}{units}{note}</div>'


# ---------------------------------------------------------------------------------------------- the index page

def index_data(runs: Sequence[Run]) -> dict[str, Any]:
    """What ``archive/index.html``'s comparison needs, as JSON-able data: the rows (label, unit,
    meaning, which way is better) and each run's values and configuration."""
    def rows(names: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"split": s, "name": n, "label": label(s, n), "unit": info(n).unit, "better": better_when(n),
                 "meaning": info(n).meaning} for s, n in names]

    counts = {breakdown.count_name(n) for n in (*DECL_ROWS, *DEPTH_ROWS)}
    return {
        "min_states": breakdown.MIN_STATES,
        "sections": [{"title": "Metrics", "css": "forge-compare-metrics", "rows": rows(METRIC_ROWS)},
                     {"title": "Q-gap per declaration (golden val)", "css": "forge-compare-decl",
                      "rows": rows([("val", n) for n in DECL_ROWS])},
                     {"title": "Q-gap per trick depth (golden val)", "css": "forge-compare-depth",
                      "rows": rows([("val", n) for n in DEPTH_ROWS])}],
        "runs": [{"label": r.label, "iteration": r.iteration,
                  "values": {s: {n: r.metric(s, n) for n in {*(m for _, m in METRIC_ROWS), *DECL_ROWS, *DEPTH_ROWS,
                                                             *counts}
                                 if r.metric(s, n) is not None} for s in ("val", "test", "playout")},
                  "config": r.entry.config.flat() if r.entry.config else {}} for r in runs],
    }
