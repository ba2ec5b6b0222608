"""Reading Lightning checkpoints of :class:`DominoModule`, with errors a user can act on.

A checkpoint carries its model config in its hyper-parameters, so the architecture is known
before any weight is touched: a mismatch is reported by name and size, never as a
``size mismatch for encoder.layers.0...`` traceback.
"""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from forge.errors import ForgeError
from forge.ml.model import PRESETS, DominoTransformer, ModelConfig
from forge.ml.module import DominoModule


class CheckpointError(ForgeError, ValueError):
    """A file that is not a usable DominoModule checkpoint, or not one for this model."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def config_of(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> ModelConfig:
    hp = ckpt.get("hyper_parameters") or {}
    try:
        return ModelConfig(**hp["model_config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a DominoModule checkpoint (no usable model_config: {e})") from None


def describe(config: ModelConfig) -> str:
    names = [n for n, c in PRESETS.items() if _same_shape(c, config)]
    return f"{names[0]!r} ({config.describe()})" if names else f"custom ({config.describe()})"


def _same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether weights of one fit the other (dropout does not matter)."""
    def shape(c: ModelConfig) -> tuple:
        return c.embed_dim, c.n_heads, c.n_layers, c.ff_dim, c.norm_first

    return shape(a) == shape(b)


def load_module(path: str | Path, **overrides: Any) -> DominoModule:
    """The checkpoint's module, with its own architecture; ``overrides`` replace training
    hyper-parameters (lr, weights, ...), e.g. for fine-tuning with another schedule."""
    ckpt = read_checkpoint(path)
    config = config_of(ckpt, path)
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if k != "model_config"}
    known = inspect.signature(DominoModule).parameters
    kwargs = {k: v for k, v in {**hp, **overrides}.items() if k in known}
    module = DominoModule(model_config=config.to_dict(), **kwargs)
    _load_state(module, ckpt, path)
    return module


def load_model(path: str | Path) -> DominoTransformer:
    """Just the network of a checkpoint, in eval mode."""
    return load_module(path).model.eval()


def load_weights(module: DominoModule, path: str | Path) -> None:
    """Copy a checkpoint's weights into ``module``; CheckpointError if the architectures differ."""
    ckpt = read_checkpoint(path)
    theirs = config_of(ckpt, path)
    if not _same_shape(theirs, module.config):
        raise CheckpointError(
            f"{path}: checkpoint is a {describe(theirs)} model, but this run builds a "
            f"{describe(module.config)} model; pick the matching --model or another checkpoint"
        )
    _load_state(module, ckpt, path)


def _load_state(module: DominoModule, ckpt: dict[str, Any], path: str | Path) -> None:
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model they claim to be ({first})") from None
