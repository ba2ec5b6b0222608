"""Checkpoints written by the public reference trainer (jasonyandell/mk5-main), as this project's.

That trainer's ``DominoTransformer`` is this project's post-norm architecture under other names:
twelve named embeddings in token-feature order (``high_pip_embed`` ... ``leader_embed``),
``transformer`` for ``encoder``, ``output_proj`` for ``policy_head``, the same ``value_head``,
and the same conventions (logits over the mover's 7 hand slots, value / 42 for the mover's team).
It has no Q head: the imported one is zeros and its run's ``q_weight`` is 0, so it counts as
untrained (:func:`forge.ml.module.trained_heads`) and no Q metric is reported for it.

Only its ``policy`` loss mode maps: in ``qvalue`` mode ``output_proj`` gives Q in points, not
move logits. Problems are ``ValueError``; :mod:`forge.ml.checkpoints` names the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from forge.ml.model import ModelConfig

#: ``imported_from`` of a converted checkpoint.
REFERENCE = "mk5-main"
#: The reference model's embedding names (``<name>_embed``), in token-feature order.
EMBEDDINGS: tuple[str, ...] = (
    "high_pip", "low_pip", "is_double", "count_value", "trump_rank", "player_id",
    "is_current", "is_partner", "is_remaining", "token_type", "decl", "leader",
)
_PREFIX = "model."
#: Training hyper-parameters that mean the same thing in both trainers.
_SHARED_HPARAMS = ("lr", "weight_decay", "soft_weight", "temperature", "value_weight")


def is_reference(ckpt: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint is the reference trainer's (known by its keys)."""
    state, hp = ckpt.get("state_dict"), ckpt.get("hyper_parameters")
    return (
        isinstance(state, Mapping) and isinstance(hp, Mapping) and "model_config" not in hp
        and f"{_PREFIX}{EMBEDDINGS[0]}_embed.weight" in state and f"{_PREFIX}output_proj.weight" in state
    )


def _rename(name: str) -> str:
    """A reference parameter name (without ``model.``) as this project's DominoTransformer calls it."""
    stem, _, rest = name.partition(".")
    if stem.endswith("_embed") and stem[: -len("_embed")] in EMBEDDINGS:
        return f"embeddings.{EMBEDDINGS.index(stem[: -len('_embed')])}.{rest}"
    if stem == "transformer":
        return f"encoder.{rest}"
    if stem == "output_proj":
        return f"policy_head.{rest}"
    if stem in ("input_proj", "value_head"):
        return name
    raise ValueError(f"unexpected weight {_PREFIX}{name}")


def from_reference(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """A reference checkpoint as this project's: ``state_dict`` renamed, a zero Q head added,
    ``hyper_parameters`` holding the ``model_config`` and the shared training settings."""
    hp = ckpt["hyper_parameters"]
    mode = hp.get("loss_mode", "policy")
    if mode != "policy":
        raise ValueError(f"reference checkpoint trained with loss_mode {mode!r}: its move head gives "
                         "Q-values, not move logits; only 'policy' checkpoints import")
    try:
        config = ModelConfig(embed_dim=int(hp["embed_dim"]), n_heads=int(hp["n_heads"]),
                             n_layers=int(hp["n_layers"]), ff_dim=int(hp["ff_dim"]),
                             dropout=float(hp.get("dropout", 0.1)), norm_first=False)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"reference checkpoint without a usable architecture ({e!r})") from None
    state: dict[str, torch.Tensor] = {}
    for key, tensor in ckpt["state_dict"].items():
        if not key.startswith(_PREFIX):
            raise ValueError(f"unexpected weight {key}")
        state[_PREFIX + _rename(key[len(_PREFIX):])] = tensor
    state[f"{_PREFIX}q_head.weight"] = torch.zeros(1, config.embed_dim)
    state[f"{_PREFIX}q_head.bias"] = torch.zeros(1)
    hparams = {"model_config": config.to_dict(), "q_weight": 0.0,
               **{k: hp[k] for k in _SHARED_HPARAMS if k in hp}}
    return {"state_dict": state, "hyper_parameters": hparams, "imported_from": REFERENCE}
