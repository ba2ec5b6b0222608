"""What the evaluate stage found: metrics against earlier iterations, where the model loses points,
its worst blunders as positions, and how well its game value is calibrated.

The stage scores whole golden splits with histogram metrics and keeps no per-sample output. The
per-sample views here run the checkpoint again on a fixed, evenly spaced subset of a split (a few
thousand samples, so the notebook stays quick on the standard preset) through the same exact
inference net the stage uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import torch
from matplotlib.figure import Figure

from forge.flywheel.records import HIGHER_IS_BETTER, PRIMARY_METRIC, MetricSource, better
from forge.flywheel.stages.evaluate import EvaluateResult
from forge.ml.catalog import REFERENCE_FIVE
from forge.ml.data import spread_indices
from forge.ml.inference import inference_net
from forge.ml.loading import load_module
from forge.ml.metrics import BLUNDER_THRESHOLD, move_gaps, predict, team_sign
from forge.ml.model import VALUE_SCALE, game_value, move_scores
from forge.ml.store import load_split
from forge.ml.tokenize import F_DECL
from forge.oracle.rules import DECL_NAMES
from forge.ui.metric_info import info, label
from forge.ui.views import breakdown
from forge.ui.views.display import frame_html
from forge.ui.views.positions import board_html, decode_sample, sample_tricks_played

#: Samples the per-sample views look at, at most.
SUBSET = 3000
#: Rows of the comparison table: (result section, metric name).
COMPARED: tuple[tuple[str, str], ...] = (
    *((split, name) for split in ("val", "test")
      for name in (*REFERENCE_FIVE, "game_value_mae", "accuracy", "p99_gap")),
    ("playout", "playout_points_lost"),
    ("playout", "playout_outcome_error"),
)
BETTER, WORSE = "#1a9850", "#d73027"


# ---------------------------------------------------------------------------------------------- comparison

def _metric(source: MetricSource | None, split: str, name: str) -> float | None:
    """A metric of an evaluate result or a history entry (both are a MetricSource)."""
    return source.metric(split, name) if source is not None else None


def change(name: str, now: float | None, then: float | None) -> str:
    """The change from ``then`` to ``now`` with its direction: arrow for up/down, word for good/bad."""
    if now is None or then is None:
        return ""
    delta = now - then
    if delta == 0:
        return "= same"
    return f"{'▲' if delta > 0 else '▼'} {delta:+.4g} {'better' if better(name, now, then) else 'worse'}"


def comparison_frame(result: EvaluateResult, previous: MetricSource | None = None,
                     best: MetricSource | None = None) -> pl.DataFrame:
    """This iteration's metrics beside the previous and the best iteration's, with each change's
    direction, each metric's unit and what it means."""
    rows = []
    for split, name in COMPARED:
        now = _metric(result, split, name)
        if now is None:
            continue
        prev, top = _metric(previous, split, name), _metric(best, split, name)
        m = info(name)
        rows.append({"metric": label(split, name), "unit": m.unit,
                     "better when": "higher" if name in HIGHER_IS_BETTER else "lower",
                     "this": now, "previous": prev, "vs previous": change(name, now, prev),
                     "best": top, "vs best": change(name, now, top), "meaning": m.meaning})
    return pl.DataFrame(rows, schema={"metric": pl.String, "unit": pl.String, "better when": pl.String,
                                      "this": pl.Float64, "previous": pl.Float64, "vs previous": pl.String,
                                      "best": pl.Float64, "vs best": pl.String, "meaning": pl.String})


def comparison_html(result: EvaluateResult, previous: Any = None, best: Any = None,
                    best_now: int | None = None, iteration: int | None = None) -> str:
    """The comparison table; ``best`` is the best iteration before this one (what the flags compare
    with), ``best_now`` the best recorded iteration today (the one every view highlights)."""
    frame = comparison_frame(result, previous, best)

    def colour(column: str, value: Any) -> str | None:
        if column.startswith("vs ") and isinstance(value, str):
            return BETTER if value.endswith("better") else WORSE if value.endswith("worse") else None
        return None

    names = [f"previous: iteration {previous.iteration}" if previous is not None else "previous: none yet",
             f"best: the best iteration before this one by {label(*PRIMARY_METRIC)}, iteration {best.iteration}"
             if best is not None else "best: none before this one"]
    if best_now is not None:
        names.append(f"the best iteration recorded so far: {best_now}"
                     + (" (this one)" if best_now == iteration else ""))
    note = (f'<div style="font:12px system-ui,sans-serif;color:#555">{"; ".join(names)}. ▲/▼: the metric went '
            f'up/down; green: better, red: worse (accuracy and zero-regret are better higher, the rest lower).</div>')
    return f'<div class="forge-comparison">{frame_html(frame, text_colour=colour)}{note}</div>'


def best_entry(state: Any, result: EvaluateResult) -> Any:
    """The history entry this evaluation was compared with as "best" (None for the first)."""
    iteration = result.best_iteration
    return state.entry(iteration) if iteration is not None else None


def comparison_for(ctx: Any, result: EvaluateResult) -> str:
    """The comparison of ``ctx``'s iteration with the previous, the best before it, and the best today."""
    best = ctx.state.history.best()
    return comparison_html(result, ctx.previous(), best_entry(ctx.state, result),
                           best.iteration if best is not None else None, ctx.iteration)


# ---------------------------------------------------------------------------------------------- per sample

@dataclass(frozen=True)
class Predictions:
    """The model's outputs on a fixed subset of a split, beside the oracle's answers."""

    split: str
    index: np.ndarray  # sample numbers in the split
    arrays: dict[str, np.ndarray]  # the subset's store arrays
    logits: np.ndarray  # (N, 7)
    value: np.ndarray  # (N,) predicted V (forge.ml.model.game_value), points, mover's view
    q: np.ndarray | None  # (N, 7) predicted Q, points, mover's view (None: the Q head was not trained)

    @property
    def value_source(self) -> str:
        """Where ``value`` is read (forge.ml.model.game_value): the Q head when it was trained."""
        return "best legal Q" if self.q is not None else "value head"

    @property
    def preds(self) -> np.ndarray:
        return predict(self.logits, self.arrays["legal"]).numpy()

    @property
    def gaps(self) -> np.ndarray:
        a = self.arrays
        return move_gaps(self.preds, a["qvals"], a["legal"], a["teams"]).numpy()

    @property
    def decls(self) -> np.ndarray:
        return self.arrays["tokens"][:, 0, F_DECL].astype(np.int64)

    @property
    def tricks_played(self) -> np.ndarray:
        return sample_tricks_played(self.arrays["tokens"], self.arrays["masks"])

    @property
    def oracle_value(self) -> np.ndarray:
        """Oracle V from the mover's side, points."""
        return self.arrays["values"].astype(np.int64) * team_sign(self.arrays["teams"]).numpy()

    def probs(self, j: int) -> np.ndarray:
        """The model's move probabilities for subset row ``j`` (legal moves only)."""
        logits = torch.as_tensor(self.logits[j]).masked_fill(torch.as_tensor(self.arrays["legal"][j]) == 0,
                                                              float("-inf"))
        return torch.softmax(logits, -1).numpy()


@torch.inference_mode()
def predict_subset(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, split: str = "val",
                   limit: int = SUBSET, batch_size: int = 1024) -> Predictions:
    """Run the checkpoint on a fixed subset of ``split``."""
    module = load_module(checkpoint)
    net = inference_net(module.model)
    full = load_split(data_dir, split)
    index = spread_indices(len(full["targets"]), limit).numpy()  # the same samples every time, all shards
    arrays = {k: np.asarray(v[index]) for k, v in full.items()}
    logits, value, q = [], [], []
    for start in range(0, len(index), batch_size):
        part = slice(start, start + batch_size)
        out = net(*(torch.from_numpy(arrays[k][part]) for k in ("tokens", "masks", "players")))
        logits.append(move_scores(out, module.move_head).float())  # the scores it plays by
        v = game_value(out, torch.from_numpy(arrays["legal"][part]), module.trained_heads)  # max Q, or the value head
        value.append((out.value if v is None else v).float() * VALUE_SCALE)
        q.append(out.q_points.float())
    cat = (lambda xs: torch.cat(xs).numpy()) if len(index) else (lambda xs: np.zeros((0, 7), np.float32))
    return Predictions(split, index, arrays, cat(logits), cat(value).reshape(-1) if len(index) else np.zeros(0),
                       cat(q) if "q" in module.trained_heads else None)


def gap_frame(pred: Predictions, by: str) -> pl.DataFrame:
    """Mean Q-gap, blunder rate and sample count per ``"tricks played"`` or ``"declaration"``."""
    key = pred.tricks_played if by == "tricks played" else pred.decls
    frame = pl.DataFrame({by: key, "gap": pred.gaps})
    out = (frame.group_by(by).agg(pl.len().alias("samples"), pl.col("gap").mean().alias("Q-gap"),
                                  (pl.col("gap") > BLUNDER_THRESHOLD).mean().alias("blunder rate"))
           .sort(by))
    if by == "declaration":
        out = out.with_columns(pl.col(by).replace_strict(dict(enumerate(DECL_NAMES)), return_dtype=pl.String))
    return out


def _bars(ax: Any, labels: list[str], values: list[float | None], counts: list[int | None], colour: str) -> None:
    """One bar per group with its state count above it; a group with too few states is drawn hatched
    grey and says so, one with none says "no states" where its bar would be."""
    top = max([v for v, n in zip(values, counts) if v is not None] or [1.0])
    for x, (value, n) in enumerate(zip(values, counts)):
        if value is None or n == 0:
            ax.annotate("no\nstates", (x, 0.01 * top), ha="center", va="bottom", fontsize=7, color="#777")
            continue
        ok = breakdown.readable(n)
        ax.bar(x, value, color=colour if ok else "#ddd", hatch=None if ok else "//", edgecolor="#999" if not ok
               else colour)
        text = "" if n is None else f"n={n:,}" + ("" if ok else "\ntoo few")
        ax.annotate(text, (x, value + 0.01 * top), ha="center", va="bottom", fontsize=7,
                    color="#333" if ok else "#b2182b")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, top * 1.3)


def gap_figure(result: EvaluateResult, pred: Predictions) -> Figure:
    """Val Q-gap per declaration and per trick depth: the stage's own figures over the whole split, the
    number of states above each bar, every depth shown (an empty one says so), a group of fewer than
    ``breakdown.MIN_STATES`` states hatched grey (an evaluation recorded before per-depth metrics
    existed: per depth from the subset, with its counts)."""
    val = result.val
    fig, (ax_decl, ax_depth) = plt.subplots(1, 2, figsize=(11, 3.6))
    decls = [(m, name) for m, name in breakdown.groups("declaration") if m in val]
    _bars(ax_decl, [name for _, name in decls], [val[m] for m, _ in decls],
          [breakdown.states(val, m) for m, _ in decls], "#fdae61")
    ax_decl.tick_params(axis="x", rotation=45, labelsize=8)
    ax_decl.set_ylabel("Q-gap (points / move)")
    ax_decl.set_title(f"val Q-gap by declaration ({int(val.get('n', 0)):,} states)", fontsize=10)
    depths = breakdown.groups("depth")
    if any(m in val for m, _ in depths):
        values = [val.get(m) for m, _ in depths]
        counts = [breakdown.states(val, m) for m, _ in depths]
        title = f"val Q-gap by trick depth ({int(val.get('n', 0)):,} states)"
    else:
        frame = gap_frame(pred, "tricks played")
        found = {k: (g, n) for k, n, g in frame.select("tricks played", "samples", "Q-gap").iter_rows()}
        values = [found.get(k, (None, 0))[0] for k in range(len(depths))]
        counts = [found.get(k, (None, 0))[1] for k in range(len(depths))]
        title = f"{pred.split} Q-gap by trick depth ({len(pred.index):,} states of the subset)"
    _bars(ax_depth, [label for _, label in depths], values, counts, "#74add1")
    ax_depth.set_xlabel("tricks already played")
    ax_depth.set_ylabel("Q-gap (points / move)")
    ax_depth.set_title(title, fontsize=10)
    fig.text(0.5, 0.005, f"n: states each bar is over; hatched grey: {breakdown.FEW_NOTE}", ha="center",
             fontsize=8, color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def blunders(pred: Predictions, k: int = 3) -> list[int]:
    """Subset rows of the ``k`` costliest mistakes (largest gap first; ties: earliest sample)."""
    gaps = pred.gaps
    order = np.lexsort((pred.index, -gaps))
    return [int(j) for j in order[:k] if gaps[j] > 0]


def blunder_html(pred: Predictions, j: int, rank: int) -> str:
    """One mistake drawn as a position: the model's move, the best move and the Q table."""
    board = decode_sample(pred.arrays, j)
    gap = int(pred.gaps[j])
    return board_html(board, f"blunder {rank}: loses {gap} point{'s' if gap != 1 else ''} "
                             f"({pred.split} sample {int(pred.index[j])})",
                      model_move=int(pred.preds[j]), model_probs=pred.probs(j),
                      model_q=pred.q[j] if pred.q is not None else None, css_class="forge-blunder")


def blunders_html(pred: Predictions, k: int = 3) -> str:
    rows = blunders(pred, k)
    if not rows:
        return (f'<div class="forge-blunders">no mistakes on these {len(pred.index):,} {pred.split} samples: '
                "every move the model chose is optimal</div>")
    return '<div class="forge-blunders">' + "".join(blunder_html(pred, j, r + 1) for r, j in enumerate(rows)) + "</div>"


def calibration_figure(pred: Predictions) -> Figure:
    """Predicted vs oracle V (mover's side), with the mean prediction per oracle value, and the
    value error per trick depth."""
    truth, guess = pred.oracle_value, pred.value
    fig, (ax, ax_depth) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(truth))  # whole-point values overlap otherwise
    ax.scatter(truth + jitter, guess, s=4, alpha=0.25, color="#4575b4", label="samples")
    frame = pl.DataFrame({"oracle": truth, "model": guess})
    means = frame.group_by("oracle").agg(pl.col("model").mean()).sort("oracle")
    ax.plot(means["oracle"], means["model"], "o-", ms=3, color="#d73027", label="mean prediction")
    lim = max(1.0, float(np.abs(truth).max(initial=0)), float(np.abs(guess).max(initial=0)))
    ax.plot([-lim, lim], [-lim, lim], "--", color="#777", lw=1, label="perfect")
    mae = float(np.abs(guess - truth).mean()) if len(truth) else float("nan")
    ax.set_xlabel("oracle V (points, mover's side)")
    ax.set_ylabel("predicted V")
    ax.set_title(f"value calibration, V = {pred.value_source} ({pred.split}, {len(truth):,} samples, "
                 f"MAE {mae:.2f})", fontsize=10)
    ax.legend(fontsize=7)
    err = pl.DataFrame({"tricks played": pred.tricks_played, "err": np.abs(guess - truth)})
    by_depth = err.group_by("tricks played").agg(pl.col("err").mean()).sort("tricks played")
    ax_depth.bar(by_depth["tricks played"], by_depth["err"], color="#abd9e9")
    ax_depth.set_xticks(by_depth["tricks played"].to_list())
    ax_depth.set_xlabel("tricks already played")
    ax_depth.set_ylabel("value MAE (points)")
    ax_depth.set_title("value error by trick depth", fontsize=10)
    fig.tight_layout()
    return fig


def subset_note(pred: Predictions, total: int | None = None) -> str:
    of = f" of {total:,}" if total else ""
    return (f"<p><i>Per-sample views: {len(pred.index):,}{of} {pred.split} samples, evenly spaced through the "
            f"split (fixed, so iterations compare like with like).</i></p>")

