"""Reading checkpoints of :class:`~forge.ml.module.DominoModule`, with errors a user can act on (torch only,
no Lightning: vetting a baseline or describing a checkpoint stays light; :mod:`forge.ml.loading` builds the
module from one).

Two kinds are read, told apart by their keys: this project's Lightning checkpoints, whose
hyper-parameters carry the model config, and the public reference trainer's
(:mod:`forge.ml.reference`), mapped into this project's model. Either way the architecture is
known before any weight is touched: a mismatch is reported by name and size, never as a
``size mismatch for encoder.layers.0...`` traceback. Before a checkpoint is used, its weights
must match the digest it was saved with (when it has one: checkpoints written before digests
existed still load) and be finite: a corrupt file or a diverged run is refused, naming the file.

Files are read with torch's restricted unpickler (``weights_only``), never the general one: a
checkpoint may come from anywhere, and unpickling arbitrary objects can run arbitrary code. The
only globals allowed beyond torch's own are numpy's plain-array reconstruction, which full
Lightning checkpoints need for the numpy RNG state they store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forge.errors import ForgeError
from forge.ml.model import PRESETS, ModelConfig
from forge.ml.reference import from_reference, is_reference

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array unpickling helper, by object
#: Globals a checkpoint may name beyond torch's own: numpy arrays of plain numbers (bool, int,
#: float; never object arrays, whose items would be unpickled too), under numpy 2's and 1's names.
SAFE_GLOBALS: list = [
    (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    *{type(np.dtype(code)) for code in "?bBhHiIlLqQefd"},
]


#: Checkpoint key of :func:`weights_sha256` over the checkpoint's ``state_dict``.
WEIGHTS_SHA256 = "weights_sha256"
#: The network's heads, in the order metrics report them.
HEADS: tuple[str, ...] = ("policy", "value", "q")


def weights_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def trained_heads(hparams: Mapping[str, Any]) -> tuple[str, ...]:
    """Heads whose loss was on in the run that wrote these hyper-parameters. A head trained only
    in an earlier run has gone stale as the trunk moved on, so it counts as untrained too."""
    weights = {"policy": hparams.get("policy_weight", 1.0), "value": hparams.get("value_weight", 0.0),
               "q": hparams.get("q_weight", 0.0)}
    return tuple(h for h in HEADS if weights[h])


class CheckpointError(ForgeError, ValueError):
    """A file that is not a usable DominoModule checkpoint, or not one for this model."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint as this project's (reference ones converted), its weights verified."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - arbitrary bytes fail torch.load in arbitrary ways
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    if is_reference(ckpt):
        try:
            ckpt = from_reference(ckpt)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
    _check_weights(ckpt, path)
    return ckpt


def _check_weights(ckpt: dict[str, Any], path: Path) -> None:
    state = ckpt["state_dict"]
    odd = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise CheckpointError(f"{path}: state_dict entry {odd!r} is not a tensor")
    expected = ckpt.get(WEIGHTS_SHA256)
    if expected is not None and weights_sha256(state) != expected:
        raise CheckpointError(f"{path}: weights do not match the checksum saved with them "
                              "(the file is corrupt); use another checkpoint")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} of {len(state)} weight tensors hold NaN or infinity "
                              f"(first: {bad[0]}); the run that wrote it diverged")


def config_of(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> ModelConfig:
    hp = ckpt.get("hyper_parameters") or {}
    try:
        return ModelConfig(**hp["model_config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a DominoModule checkpoint (no usable model_config: {e})") from None


def describe(config: ModelConfig) -> str:
    names = [n for n, c in PRESETS.items() if same_shape(c, config)]
    return f"{names[0]!r} ({config.describe()})" if names else f"custom ({config.describe()})"


def same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether weights of one fit the other (dropout does not matter)."""
    def shape(c: ModelConfig) -> tuple:
        return c.embed_dim, c.n_heads, c.n_layers, c.ff_dim, c.norm_first

    return shape(a) == shape(b)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, learnt without building a model from it."""

    path: Path
    config: ModelConfig
    trained_heads: tuple[str, ...]  # heads whose loss was on when it was trained
    imported_from: str | None  # None: written by this project; else the trainer it came from
    checksum: bool  # whether it carried a weights checksum (it matched, or reading would fail)

    def require(self, config: ModelConfig) -> None:
        """CheckpointError unless its weights fit a model built with ``config``."""
        require_fit(self.config, config, self.path)


def require_fit(theirs: ModelConfig, ours: ModelConfig, path: str | Path) -> None:
    """CheckpointError unless weights of architecture ``theirs`` (read from ``path``) fit ``ours``."""
    if not same_shape(theirs, ours):
        raise CheckpointError(
            f"{path}: checkpoint is a {describe(theirs)} model, but this run builds a "
            f"{describe(ours)} model; pick the matching --model or another checkpoint"
        )


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Whether ``path`` is a usable checkpoint (CheckpointError, naming it, if not) and of what
    architecture: e.g. to vet a baseline before a run depends on it."""
    ckpt = read_checkpoint(path)
    config = config_of(ckpt, path)
    return CheckpointInfo(Path(path), config, trained_heads(ckpt["hyper_parameters"]),
                          ckpt.get("imported_from"), WEIGHTS_SHA256 in ckpt)


def baseline_architecture(path: str | Path) -> ModelConfig:
    """The architecture of a usable checkpoint (CheckpointError, naming it, for anything else)."""
    return checkpoint_info(path).config
