"""Names training shares with the layers above it, in a module light enough for configuration
checks and status views (no torch import)."""

from __future__ import annotations

#: Precisions ``forge.ml.training.train`` accepts: "auto" (see ``resolve_precision``) or Lightning's names.
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
#: Which states training samples (forge.ml.tokenize explains each): "all" is the spec's rule.
SELECTIONS: tuple[str, ...] = ("all", "decisions", "mixed")
#: The W&B project runs go to unless told otherwise (training runs and the flywheel's iterations alike).
WANDB_PROJECT = "forge-texas42"

