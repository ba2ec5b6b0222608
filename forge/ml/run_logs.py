"""Reading a training run's logs afterwards (no torch, no Lightning): its ``metrics.csv`` (Lightning's
CSVLogger: one row per logging call, blanks elsewhere) and ``hparams.yaml`` beside it, and the metric that
chose its kept checkpoint. The training notebook's views and the compare notebook's overlaid curves read
runs through these."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from forge.ml.catalog import PRIMARY

#: The metric the "best" checkpoint monitors (mode min), as Lightning logs it: the primary metric.
BEST_METRIC = "/".join(PRIMARY)


def metrics_frame(csv: str | os.PathLike) -> pl.DataFrame:
    """The run's ``metrics.csv``."""
    return pl.read_csv(csv, infer_schema_length=None)


def run_settings(csv: str | os.PathLike) -> dict[str, Any]:
    """How the run was asked to train (``hparams.yaml`` beside its metrics.csv: epochs or a budget in
    ``max_samples`` / ``max_seconds``, ``batch_size``, ``val_samples``); empty if it is gone."""
    try:
        return yaml.safe_load((Path(csv).parent / "hparams.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
