"""What each recorded metric is: a short label, its unit and a one-line meaning, for every view.

The metrics themselves are defined in :mod:`forge.ml.metrics` (per state) and
:mod:`forge.ml.playout` (play-outs); this is the one place that says, for people, what their
numbers mean (the CLI's tables, the panel, the archive index and the notebooks all read it).
Per-declaration, per-depth and per-deal metrics are described from their family's entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from forge.flywheel.records import HIGHER_IS_BETTER
from forge.ml.metrics import BLUNDER_THRESHOLD

SPLITS = {"val": "golden val", "test": "golden test", "playout": "golden test play-outs"}


@dataclass(frozen=True)
class MetricInfo:
    label: str  # short, for a column header
    unit: str
    meaning: str  # one line

    def header(self) -> str:
        """``label (unit)``, as a column header that carries its unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("accuracy", "share of states",
                           "the model's move is the oracle's move (the lowest-index optimal one on a tie)"),
    "zero_regret": MetricInfo("zero-regret", "share of states", "the model's move is one of the optimal moves"),
    "q_gap": MetricInfo("Q-gap", "points / move",
                        "how many points worse the model's move is than the best move (Q of the best minus Q of the "
                        "chosen, team score difference), mean over states; 0 is perfect"),
    "blunder_rate": MetricInfo("blunder rate", "share of states",
                               f"moves that lose more than {BLUNDER_THRESHOLD} points against the best move"),
    "p99_gap": MetricInfo("p99 gap", "points", "the Q-gap that 99% of the model's moves stay within"),
    "value_mae": MetricInfo("value MAE", "points",
                            "mean absolute error of the value head's V (final score difference to come) "
                            "against the oracle's"),
    "q_mae": MetricInfo("Q MAE", "points", "mean absolute error of the Q head on legal moves"),
    "tie_rate": MetricInfo("tie rate", "share of states", "states where more than one move is optimal"),
    "decision_q_gap": MetricInfo("decision Q-gap", "points / move",
                                 "Q-gap over decisions only, the states where a legal move can lose points "
                                 "(Q-gap = decision Q-gap x decision share)"),
    "decision_share": MetricInfo("decision share", "share of states", "states where a legal move can lose points"),
    "n": MetricInfo("states", "states", "golden states scored"),
    "playout_points_lost": MetricInfo(
        "play-out lost", "points / hand",
        "the model plays all four seats of a golden test hand; each move's Q-gap, summed over the hand's "
        "moves (both teams), mean over hands; 0 is perfect play"),
    "playout_points_lost_team0": MetricInfo("play-out lost, team 0", "points / hand",
                                            "the same, team 0's moves only"),
    "playout_points_lost_team1": MetricInfo("play-out lost, team 1", "points / hand",
                                            "the same, team 1's moves only"),
    "playout_outcome_error": MetricInfo(
        "outcome error", "points / hand",
        "how far the hand's final score difference as played ends from perfect play's, mean over hands"),
    "playout_perfect_hands": MetricInfo("perfect hands", "share of hands", "hands played without losing a point"),
    "playout_deals": MetricInfo("play-out hands", "hands", "golden test hands played out"),
}
#: Families: metric name prefix -> how to describe one member (the suffix is the declaration, depth or deal).
_FAMILIES = {
    "q_gap/depth": lambda k: MetricInfo(f"Q-gap after {k} trick{'' if k == '1' else 's'}", "points / move",
                                        f"Q-gap over states with {k} trick{'' if k == '1' else 's'} completed"),
    "q_gap/": lambda d: MetricInfo(f"Q-gap, {d}", "points / move", f"Q-gap over states of hands declared {d}"),
    "tiebreak/slot": lambda i: MetricInfo(f"tie-break, slot {i}", "share of moves",
                                          f"moves in slot {i} that are optimal but not the oracle's target"),
    "playout_points_lost/": lambda d: MetricInfo(f"play-out lost, {d}", "points / hand",
                                                 f"play-out points lost on hands declared {d}"),
    "playout_lost/": lambda deal: MetricInfo(f"play-out lost, deal {deal}", "points",
                                             "points lost on this one golden deal (seed-declaration)"),
}


def info(name: str) -> MetricInfo:
    """The description of metric ``name`` (``q_gap``, ``q_gap/notrump``, ``q_gap/depth3``, ...)."""
    if name in METRICS:
        return METRICS[name]
    for prefix, make in _FAMILIES.items():
        if name.startswith(prefix):
            return make(name.removeprefix(prefix))
    return MetricInfo(name, "", "")


def label(split: str, name: str) -> str:
    """``val Q-gap``: where the metric was measured and what it is."""
    prefix = "" if split == "playout" else f"{split} "
    return prefix + info(name).label


def direction(name: str) -> str:
    """Which way is better: "higher" or "lower"."""
    base = name.split("/")[0]
    return "higher" if base in HIGHER_IS_BETTER else "lower"


def legend_lines(names: list[str]) -> list[str]:
    """``label (unit, which way is better): meaning`` for each metric name, once each."""
    seen, out = set(), []
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        m = info(name)
        out.append(f"{m.label} ({m.unit}, {direction(name)} is better): {m.meaning}")
    return out


def column_info(path: tuple[str, ...]) -> MetricInfo:
    """Unit and meaning of a history column (``HISTORY_COLUMNS``' paths into a history entry)."""
    head = path[0]
    if head in SPLITS:
        m = info(path[-1])
        return MetricInfo(m.label, m.unit, f"{SPLITS[head]}: {m.meaning}")
    if head in ("delta_prev", "delta_best"):
        m = info(path[-1])
        than = "the previous iteration" if head == "delta_prev" else "the best earlier iteration"
        return MetricInfo(f"change in {m.label}", m.unit, f"val {m.label} minus {than}'s (negative is better)"
                          if direction(path[-1]) == "lower" else f"val {m.label} minus {than}'s")
    return _OTHER_COLUMNS.get(path, MetricInfo(path[-1], "", ""))


_OTHER_COLUMNS = {
    ("iteration",): MetricInfo("iteration", "", "the iteration's number (0: pretraining)"),
    ("seed_range",): MetricInfo("seeds", "", "the training deals this iteration solved and trained on"),
    ("total_seeds",): MetricInfo("total seeds", "deals", "training deals seen up to and including this iteration"),
    ("timings", "total"): MetricInfo("minutes", "",
                                     "the iteration's time: its stages (by the loop or by hand) and the loop's own, "
                                     "over every run (stopped, failed or killed attempts included; pauses not)"),
    ("timings",): MetricInfo("train share", "share of the iteration",
                             "the train stage's seconds (all its attempts) over the iteration's time (the loop "
                             "exists to train)"),
}
