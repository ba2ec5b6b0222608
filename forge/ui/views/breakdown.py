"""Per-declaration and per-depth figures with the number of states each one is over.

A mean over 5 states reads like one over 18,000; a depth with no states at all, left out, reads like
a depth that does not exist. Every breakdown view shows its count beside each figure (the evaluate
stage records them: ``n/<declaration>``, ``n/depth<k>``), says "no states" for an empty group, and
marks a figure drawn from fewer than :data:`MIN_STATES` states instead of drawing it like the others.
"""

from __future__ import annotations

from typing import Any

from forge.oracle.rules import DECL_NAMES, MAX_HAND

#: Below this many states a group's mean is marked "too few states": one 10-point blunder more or less
#: moves a mean over 100 states by 0.1 points per move, over 5 states by 2.
MIN_STATES = 100
FEW_NOTE = f"fewer than {MIN_STATES} states: too few to read as a figure"


def count_name(metric: str) -> str:
    """``q_gap/depth3`` -> ``n/depth3``: the recorded count a per-group metric is over."""
    return "n/" + metric.split("/", 1)[1]


def groups(kind: str) -> list[tuple[str, str]]:
    """(metric name, group label) of every declaration or every depth, empty ones included."""
    if kind == "declaration":
        return [(f"q_gap/{name}", name) for name in DECL_NAMES]
    return [(f"q_gap/depth{k}", str(k)) for k in range(MAX_HAND)]


def states(metrics: dict[str, Any] | None, metric: str) -> int | None:
    """How many states ``metric`` (a per-group Q-gap) is over; None where the record has no counts."""
    n = (metrics or {}).get(count_name(metric))
    return None if n is None else int(n)


def verdict(n: int | None) -> str:
    """What a reader must know about a group's figure: nothing, too few states, or none at all."""
    if n is None:
        return "states not recorded"
    if n == 0:
        return "no states"
    return "too few states" if n < MIN_STATES else ""


def readable(n: int | None) -> bool:
    """Whether a figure over ``n`` states may be read like the others (unknown counts: yes, as before)."""
    return n is None or n >= MIN_STATES
