"""Which device a setting means: asks torch, so it lives apart from the light names in forge.ml.settings."""

from __future__ import annotations

import torch


def on_cuda(accelerator: str) -> bool:
    """Whether an ``accelerator`` setting means a CUDA GPU ("auto": if torch sees one)."""
    if accelerator in ("cuda", "gpu"):
        return True
    if accelerator != "auto":
        return False
    return torch.cuda.is_available()
