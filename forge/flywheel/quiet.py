"""Lightning's start-up chatter kept out of a stage's output.

Run by hand, the train stage's notebook would otherwise show, in red, which accelerators exist,
a tip to install a cloud logger, how many validation batches run, a torch deprecation that
Lightning triggers (twice) and the model summary: none of it about this iteration. The notebook
shows the stage's own summary instead. Other warnings still show.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
#: torch deprecates the LeafSpec that Lightning's own pytree helper builds (nothing a user can act on).
_NOISE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info logs and the LeafSpec deprecation off, for the duration (levels restored after)."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NOISE, category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
