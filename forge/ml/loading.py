"""A :class:`DominoModule` from a checkpoint: its own architecture and hyper-parameters, its weights
checked first (:mod:`forge.ml.checkpoints` reads and vets the file)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from forge.ml.checkpoints import CheckpointError, config_of, read_checkpoint, require_fit
from forge.ml.module import DominoModule


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


def load_weights(module: DominoModule, path: str | Path, ckpt: dict[str, Any] | None = None) -> None:
    """Copy a checkpoint's weights into ``module``; CheckpointError if the architectures differ.
    ``ckpt``: the file as :func:`read_checkpoint` already returned it (not read twice)."""
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    require_fit(config_of(ckpt, path), module.config, path)
    _load_state(module, ckpt, path)


def _load_state(module: DominoModule, ckpt: dict[str, Any], path: str | Path) -> None:
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model they claim to be ({first})") from None
