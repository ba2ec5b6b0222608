"""Names of the hardware settings training accepts, in a module light enough for configuration
checks (no torch import): the flywheel validates state.yaml's config against them."""

from __future__ import annotations

#: Precisions ``forge.ml.training.train`` accepts: "auto" (see ``resolve_precision``) or Lightning's names.
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
