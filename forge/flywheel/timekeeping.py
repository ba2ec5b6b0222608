"""True times for an iteration however many times it was stopped, crashed or retried.

An iteration's record keeps, in ``timings``: each stage's seconds summed over all its attempts (a
failed, stopped or killed attempt worked too), ``total``: the seconds loops spent on the iteration,
summed over every run (stages, and what the loop does between them; stages run by hand added), and
``span``: the wall-clock seconds from its start to its record, pauses included. ``total`` holds every
stage's seconds, so the train share (train / total) is at most 1; ``span`` says how long it took to
come about. While an iteration runs, ``current.timings`` holds the sums so far (``total`` included):
each run adds its share at every stage's end and on a stop or failure, and the seconds a kill cut
short are taken from its last heartbeat (:func:`fold_crash`, by ``retry``; to within a heartbeat).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from forge.flywheel import beat, usage

TOTAL = "total"
SPAN = "span"


def add(timings: dict[str, float], key: str, seconds: float) -> None:
    timings[key] = round(timings.get(key, 0.0) + max(0.0, seconds), 2)


class Clock:
    """This loop run's time on the iteration in progress, not yet added to ``current.timings``."""

    def __init__(self) -> None:
        self.mark = time.time()  # everything before it is in current.timings["total"]
        self.stage: str | None = None
        self.since: float | None = None
        self.meter: usage.Meter | None = None

    def start(self, stage: str) -> None:
        self.stage, self.since = stage, time.time()
        self.meter = usage.Meter.start()

    def stop(self, cur: Any) -> float:
        """End the running stage: its seconds added to its sum, its CPU time and peak memory to its usage
        (forge.flywheel.usage); returns the seconds (0 if none ran)."""
        if self.stage is None or self.since is None:
            return 0.0
        took = time.time() - self.since
        add(cur.timings, self.stage, took)
        if self.meter is not None:
            usage.add(cur.usage, self.stage, self.meter.read())
        self.stage = self.since = self.meter = None
        return round(took, 2)

    def lap(self, cur: Any) -> None:
        """Add the run's seconds since the last lap to the iteration's total."""
        t = time.time()
        add(cur.timings, TOTAL, t - self.mark)
        self.mark = t

    def beat_fields(self) -> dict[str, Any]:
        """What a heartbeat keeps so that a kill's lost seconds can be counted (:func:`fold_crash`)."""
        return {"run_since": self.mark, "stage": self.stage, "stage_since": self.since}


def fold_crash(root: str | os.PathLike, cur: Any) -> str | None:
    """Count the seconds a killed loop spent on ``cur`` since its last lap, up to its last heartbeat;
    what was added, or None (no beat of that loop for that iteration)."""
    hb = beat.read(root)
    if cur is None or not hb or hb.get("iteration") != cur.iteration or hb.get("pid") != cur.pid:
        return None
    t = hb.get("t")
    if not isinstance(t, (int, float)):
        return None
    said = []
    if isinstance(hb.get("run_since"), (int, float)):
        add(cur.timings, TOTAL, t - hb["run_since"])
        said.append(f"{t - hb['run_since']:.0f} s of the loop")
    stage, since = hb.get("stage"), hb.get("stage_since")
    if isinstance(stage, str) and isinstance(since, (int, float)):
        add(cur.timings, stage, t - since)
        said.append(f"{t - since:.0f} s of {stage}")
    beat.clear(root)
    return ", ".join(said) or None


def span(started_at: str | None, finished_at: str) -> float | None:
    """Wall-clock seconds from an iteration's start to its record."""
    if not started_at:
        return None
    return round((dt.datetime.fromisoformat(finished_at) - dt.datetime.fromisoformat(started_at)).total_seconds(), 2)
