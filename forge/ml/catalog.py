"""The metric catalogue: for every recorded metric, its label, unit, which way is better, the
splits whose regressions are flagged, and what it means; and the reference's published figures.

One declaration per metric, so the evaluate stage, the history's flags, the panel, the notebooks'
views and the benchmarks read the same facts (:mod:`forge.ml.metrics` and :mod:`forge.ml.playout`
compute the numbers; this says what they are). :data:`REFERENCE_FIVE` are the five metrics of the
reference's model catalog, with its definitions: every evaluation reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A blunder loses more than this many points against the best move (the reference's threshold).
BLUNDER_THRESHOLD = 10


@dataclass(frozen=True)
class Metric:
    label: str  # short, for a column header
    unit: str
    meaning: str  # one line
    higher_is_better: bool = False
    tracked: tuple[str, ...] = ()  # splits ("val", "test", "playout") whose regressions against the best are flagged

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


SHARE = "share of states"
CATALOG: dict[str, Metric] = {
    "q_gap": Metric("Q-gap", "points / move",
                    "how many points worse the model's move is than the best move (Q of the best minus Q of the "
                    "chosen, team score difference), mean over states; 0 is perfect", tracked=("val", "test")),
    "zero_regret": Metric("zero-regret", SHARE,
                          "the model's move is one of the optimal moves (its Q equals the best legal Q)",
                          higher_is_better=True, tracked=("val",)),
    "blunder_rate": Metric("blunder rate", SHARE,
                           f"moves that lose more than {BLUNDER_THRESHOLD} points against the best move",
                           tracked=("val",)),
    "value_mae": Metric("value MAE", "points",
                        "mean absolute error of the value head's V (final score difference to come, the mover's "
                        "team's) against the oracle's", tracked=("val",)),
    "game_value_mae": Metric("game-value MAE", "points",
                             "the same error of the V read off the Q head, its best legal move's Q (V = max Q in a "
                             "game of perfect information): the model's value of a state", tracked=("val",)),
    "q_mae": Metric("Q-MAE", "points",
                    "mean absolute error of the Q head's value of each legal move against the oracle's Q "
                    "(illegal moves not counted)", tracked=("val",)),
    "accuracy": Metric("accuracy", SHARE,
                       "the model's move is the oracle's move (the lowest-index optimal one on a tie)",
                       higher_is_better=True, tracked=("val",)),
    "p99_gap": Metric("p99 gap", "points", "the Q-gap that 99% of the model's moves stay within"),
    "tie_rate": Metric("tie rate", SHARE, "states where more than one move is optimal"),
    "decision_q_gap": Metric("decision Q-gap", "points / move",
                             "Q-gap over decisions only, the states where a legal move can lose points "
                             "(Q-gap = decision Q-gap x decision share)"),
    "decision_share": Metric("decision share", SHARE, "states where a legal move can lose points"),
    "n": Metric("states", "states", "golden states scored"),
    "playout_points_lost": Metric(
        "play-out lost", "points / hand",
        "the model plays all four seats of a golden test hand; each move's Q-gap, summed over the hand's "
        "moves (both teams), mean over hands; 0 is perfect play", tracked=("playout",)),
    "playout_points_lost_team0": Metric("play-out lost, team 0", "points / hand", "the same, team 0's moves only"),
    "playout_points_lost_team1": Metric("play-out lost, team 1", "points / hand", "the same, team 1's moves only"),
    "playout_outcome_error": Metric(
        "outcome error", "points / hand",
        "how far the hand's final score difference as played ends from perfect play's, mean over hands"),
    "playout_perfect_hands": Metric("perfect hands", "share of hands", "hands played without losing a point",
                                    higher_is_better=True),
    "playout_deals": Metric("play-out hands", "hands", "golden test hands played out"),
}

#: The metric that ranks checkpoints and iterations: val Q-gap, lower is better. Training keeps the epoch
#: with the lowest (logged as ``val/q_gap``), the history's best iteration is the lowest.
PRIMARY: tuple[str, str] = ("val", "q_gap")

#: The reference catalog's five metrics, in its order.
REFERENCE_FIVE: tuple[str, ...] = ("q_gap", "zero_regret", "blunder_rate", "value_mae", "q_mae")

#: The reference's published figures on its golden val set (its model catalog), by model.
REFERENCE_FIGURES: dict[str, dict[str, float]] = {
    "Q-Val Shuffle (3.3M)": {"q_gap": 0.074, "zero_regret": 0.994, "blunder_rate": 0.0024, "value_mae": 1.90,
                             "q_mae": 0.96},
    "Q-Val Small (816K)": {"q_gap": 0.094, "q_mae": 1.49},
}

#: Metrics that are better higher (every other one is better lower).
HIGHER_IS_BETTER = frozenset(name for name, m in CATALOG.items() if m.higher_is_better)
#: (split, metric) pairs whose regressions against the best iteration are flagged, val first.
TRACKED: tuple[tuple[str, str], ...] = tuple(
    (split, name) for split in ("val", "test", "playout") for name, m in CATALOG.items() if split in m.tracked)
