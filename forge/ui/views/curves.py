"""Training curves of several iterations on one chart: loss and val Q-gap against samples trained on,
with smoothing and a log scale, as W&B and TensorBoard overlay runs.

Each iteration's curve is its train stage's ``metrics.csv`` (Lightning's CSVLogger), which the
retention policy keeps for every iteration however old (forge.flywheel.retention), named by the
stage's recorded result. The x axis is samples trained on: steps times the run's batch size
(``hparams.yaml`` beside the csv), from 0 for each iteration, or, ``cumulative``, from the samples
its starting weights had already seen (a fine-tuned iteration continues its parent's curve).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from forge.flywheel.paths import Workspace
from forge.flywheel.stages import REGISTRY
from forge.ml.run_logs import BEST_METRIC, metrics_frame, run_settings
from forge.ui.views.compare import Run
from forge.ui.views.display import live, show

#: The columns drawn: the training loss per logged step, the validation checks' loss and Q-gap.
TRAIN_LOSS, VAL_LOSS = "train/loss", "val/loss"
VAL_Q_GAP = BEST_METRIC  # "val/q_gap": the primary metric, as Lightning logs it
X_CHOICES = {"samples": "samples trained on in the iteration", "cumulative": "samples seen by the weights"}


@dataclass(frozen=True)
class Curve:
    """One iteration's logged training: x (samples) and y per column, only where it was logged."""

    run: Run
    series: dict[str, tuple[list[float], list[float]]]
    offset: int  # samples the starting weights had seen before this iteration


def load_curve(run: Run) -> Curve | None:
    """The iteration's curve, or None when it has no train result or its metrics.csv is unreadable."""
    ws = Workspace.at(run.root)
    try:
        result = json.loads(REGISTRY["train"].path(ws, run.iteration).read_text())
        csv = ws.root / result["metrics_csv"]
        frame = metrics_frame(csv)
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):
        return None
    batch = int(run_settings(csv).get("batch_size") or 1)
    seen, samples = result.get("samples_seen"), result.get("samples")
    offset = int(seen - samples) if isinstance(seen, int) and isinstance(samples, int) and seen >= samples else 0
    series = {}
    for column in (TRAIN_LOSS, VAL_LOSS, VAL_Q_GAP):
        if column in frame.columns and "step" in frame.columns:
            part = frame.filter(pl.col(column).is_not_null() & pl.col(column).is_finite())
            series[column] = ([(s + 1) * batch for s in part["step"].to_list()], part[column].to_list())
    return Curve(run, series, offset)


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled
    to 0 (``weight`` 0: the values as they are; 0.99: very smooth)."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1): {weight}")
    out, last, k = [], 0.0, 0
    for v in values:
        k += 1
        last = weight * last + (1 - weight) * v
        out.append(last / (1 - weight**k) if weight else v)
    return out


def curves_figure(curves: Sequence[Curve], smoothing: float = 0.6, log_y: bool = False,
                  x: str = "samples") -> Figure:
    """Loss (train smoothed, val per check) and val Q-gap per check, one colour per iteration."""
    if x not in X_CHOICES:
        raise ValueError(f"x must be one of {', '.join(X_CHOICES)}: {x!r}")
    fig, (ax_loss, ax_gap) = plt.subplots(1, 2, figsize=(12, 3.8))
    cmap = plt.get_cmap("viridis")
    several = len({c.run.workspace for c in curves}) > 1
    for k, c in enumerate(curves):
        colour = cmap(k / max(1, len(curves) - 1) * 0.9)
        name = (f"{c.run.workspace} · " if several else "") + f"iteration {c.run.iteration}"
        shift = c.offset if x == "cumulative" else 0
        xs, ys = c.series.get(TRAIN_LOSS, ([], []))
        if xs:
            xs = [v + shift for v in xs]
            if smoothing:
                ax_loss.plot(xs, ys, color=colour, lw=0.6, alpha=0.25)
            ax_loss.plot(xs, smoothed(ys, smoothing), color=colour, lw=1.4, label=f"{name} train")
        xs, ys = c.series.get(VAL_LOSS, ([], []))
        if xs:
            ax_loss.plot([v + shift for v in xs], ys, "o--", color=colour, ms=4, lw=1, label=f"{name} val")
        xs, ys = c.series.get(VAL_Q_GAP, ([], []))
        if xs:
            ax_gap.plot([v + shift for v in xs], ys, "o-", color=colour, ms=4, label=name)
    for ax, title in ((ax_loss, f"loss (train smoothed {smoothing:g}, val per check)"),
                      (ax_gap, "val Q-gap per check (points / move; lower is better)")):
        ax.set_xlabel(X_CHOICES[x])
        ax.set_title(title, fontsize=9)
        if log_y and _positive(ax):
            ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize=7, loc="upper right", ncol=1 + len(curves) // 8)
        else:
            ax.text(0.5, 0.5, "no training curve recorded", ha="center", va="center", transform=ax.transAxes)
    ax_gap.set_ylabel("points / move")
    fig.tight_layout()
    return fig


def _positive(ax: Any) -> bool:
    return all(min(line.get_ydata(), default=1) > 0 for line in ax.lines if len(line.get_ydata()))


def load_curves(runs: Sequence[Run], last: int | None = 10) -> list[Curve]:
    """The curves of the ``last`` newest iterations of ``runs`` that have one (and the best ones)."""
    chosen = list(runs) if last is None else [r for r in runs if r.best] + [r for r in runs if not r.best][-last:]
    chosen.sort(key=lambda r: (r.workspace, r.iteration))
    return [c for c in map(load_curve, chosen) if c is not None and c.series]


def show_curves(runs: Sequence[Run], last: int | None = 10) -> None:
    """The overlay with its controls (iterations, smoothing, log scale, x axis), redrawn on change."""
    if not live():  # headless (an archived run): the figure as drawn by default
        show(curves_figure(load_curves(runs, last)))
        return
    import ipywidgets as widgets
    from IPython.display import display

    curves = load_curves(runs, last=None)
    labels = [f"{c.run.workspace} · iteration {c.run.iteration}" for c in curves]
    default = labels if last is None else labels[-last:]
    pick = widgets.SelectMultiple(options=labels, value=tuple(default), rows=min(6, max(2, len(labels))),
                                  description="iterations")
    smooth = widgets.FloatSlider(value=0.6, min=0.0, max=0.99, step=0.01, description="smoothing")
    log = widgets.Checkbox(value=False, description="log scale")
    axis = widgets.ToggleButtons(options=[(v, k) for k, v in X_CHOICES.items()], value="samples")
    out = widgets.Output()

    def draw(_change: Any = None) -> None:
        chosen = [c for c, name in zip(curves, labels) if name in pick.value]
        with out:
            out.clear_output(wait=True)
            fig = curves_figure(chosen, smooth.value, log.value, axis.value)
            display(fig)
            plt.close(fig)

    for w in (pick, smooth, log, axis):
        w.observe(draw, "value")
    draw()
    display(widgets.VBox([widgets.HBox([pick, widgets.VBox([smooth, log, axis])]), out]))
