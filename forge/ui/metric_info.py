"""What each recorded metric is: a short label, its unit and a one-line meaning, for every view.

The metrics themselves are defined in :mod:`forge.ml.metrics` (per state) and
:mod:`forge.ml.playout` (play-outs), and catalogued (label, unit, direction, meaning) in
:mod:`forge.ml.catalog`; this gives people those descriptions (the CLI's tables, the panel, the
archive index and the notebooks all read it).
Per-declaration, per-depth and per-deal metrics are described from their family's entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forge.flywheel.records import HIGHER_IS_BETTER
from forge.ml.catalog import CATALOG

SPLITS = {"val": "golden val", "test": "golden test", "playout": "golden test play-outs"}


@dataclass(frozen=True)
class MetricInfo:
    label: str  # short, for a column header
    unit: str
    meaning: str  # one line

    def header(self) -> str:
        """``label (unit)``, as a column header that carries its unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


#: Each catalogued metric's label, unit and meaning (forge.ml.catalog declares them).
METRICS: dict[str, MetricInfo] = {name: MetricInfo(m.label, m.unit, m.meaning) for name, m in CATALOG.items()}
#: Families: metric name prefix -> how to describe one member (the suffix is the declaration, depth or deal).
_FAMILIES = {
    "n/depth": lambda k: MetricInfo(f"states after {k} trick{'' if k == '1' else 's'}", "states",
                                    f"how many states the Q-gap after {k} trick{'' if k == '1' else 's'} is over"),
    "n/": lambda d: MetricInfo(f"states, {d}", "states", f"how many states of hands declared {d} were scored"),
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


_FLAG = re.compile(r"(?P<split>val|test|playout) (?P<name>\S+) (?P<mine>\S+) is worse than the best "
                   r"\(iteration (?P<best>\d+): (?P<theirs>\S+)\)")


def flag_text(flag: str) -> str:
    """A recorded flag (``playout playout_points_lost 59.0000 is worse than the best (iteration 2: 41.0000)``)
    in readable words: ``play-out lost 59.0000 points / hand is worse than iteration 2's 41.0000``; a flag
    of another form is returned as it is."""
    m = _FLAG.fullmatch(flag.strip())
    if m is None:
        return flag
    unit = info(m["name"]).unit
    unit = f" {unit}" if unit else ""
    return (f"{label(m['split'], m['name'])} {m['mine']}{unit} is worse than the best iteration's "
            f"(iteration {m['best']}: {m['theirs']}{unit}; {direction(m['name'])} is better)")
