"""Where deals can be solved: a light module, so configuration checks need not import the solver."""

from __future__ import annotations

#: "local": worker processes on this machine (the default, nothing to start); "ray": tasks on a Ray cluster.
EXECUTORS = ("local", "ray")
