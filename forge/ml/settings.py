"""Names training shares with the layers above it, in a module light enough for configuration
checks and status views (no torch import)."""

from __future__ import annotations

#: Precisions ``forge.ml.training.train`` accepts: "auto" (see ``resolve_precision``) or Lightning's names.
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
#: The W&B project runs go to unless told otherwise (training runs and the flywheel's iterations alike).
WANDB_PROJECT = "forge-texas42"


def on_cuda(accelerator: str) -> bool:
    """Whether an ``accelerator`` setting means a CUDA GPU ("auto": if torch sees one)."""
    if accelerator in ("cuda", "gpu"):
        return True
    if accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()
