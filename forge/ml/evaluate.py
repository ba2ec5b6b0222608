"""A checkpoint's move-quality metrics on a split of a tokenized dataset, and its play-outs.

Evaluation runs outside Lightning on purpose: contiguous zero-copy slices of the store, the
fp32 :class:`~forge.ml.inference.InferenceNet` forward on CPU (oneDNN, about 2.3x the module's
own; equal to it up to fp32 rounding, so metrics may differ in the last digits between CPUs),
and histogram metrics that need no per-sample storage.

Only trained heads are scored (:func:`forge.ml.module.trained_heads`): an untrained Q head's
error means nothing. A model that outputs NaN or infinity, or any metric that is not finite, is a
:class:`NonFiniteError`: a diverged model must never be recorded as a result.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from forge.errors import ForgeError, InputError
from forge.ml.data import ArrayBatches, decl_of, load_tensors
from forge.ml.devices import on_cuda
from forge.ml.inference import inference_net
from forge.ml.loading import load_module
from forge.ml.metrics import MoveMetrics
from forge.ml.model import DominoTransformer, ModelOutput, best_legal_q, move_scores
from forge.ml.playout import ModelPolicy, golden_shards, play_out_shards
from forge.ml.tokenize import tricks_played_of


class NonFiniteError(ForgeError):
    """A model's outputs or metrics hold NaN or infinity (a diverged run)."""


def _first_non_finite(out: ModelOutput, legal: Tensor, with_value: bool, with_q: bool) -> int | None:
    """Row of the first sample whose scored outputs are not all finite (illegal slots don't count)."""
    ok = (torch.isfinite(out.logits) | (legal == 0)).all(-1)
    if with_value:
        ok &= torch.isfinite(out.value)
    if with_q:
        ok &= (torch.isfinite(out.q) | (legal == 0)).all(-1)
    bad = (~ok).nonzero()
    return int(bad[0]) if len(bad) else None


@torch.inference_mode()
def evaluate_model(
    model: DominoTransformer,
    tensors: Mapping[str, Tensor],
    batch_size: int = 256,
    with_q: bool = False,
    with_value: bool = True,
    device: str | torch.device = "cpu",
    fast: bool = True,
    move_head: str = "policy",
) -> dict[str, float]:
    """Metrics of ``model`` playing by ``move_head`` on a split's tensors (see
    :mod:`forge.ml.metrics`), with the value and Q heads' errors where asked; ``fast=False`` runs
    the module's own forward instead of the inference net (equal up to fp32 rounding)."""
    net = inference_net(model, device) if fast else model.eval().to(device)
    # On a GPU, batched inference under bf16 autocast (outputs back in fp32 for the metrics); the CPU
    # keeps the exact fp32 InferenceNet.
    cuda = torch.device(device).type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    metrics = MoveMetrics()
    start = 0
    for batch in ArrayBatches(tensors, batch_size):
        b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            out = net(b["tokens"], b["masks"], b["players"])
        if cuda:
            out = type(out)(*(t.float() for t in out))
        row = _first_non_finite(out, b["legal"], with_value, with_q)
        if row is not None:
            raise NonFiniteError(f"the model outputs NaN or infinity (first at sample {start + row}): "
                                 "it diverged; use another checkpoint")
        metrics.update(
            move_scores(out, move_head), batch["qvals"], batch["legal"], batch["teams"], batch["targets"],
            decl_of(batch),
            value=out.value if with_value else None, values=batch["values"], q=out.q if with_q else None,
            depths=tricks_played_of(batch["tokens"], batch["masks"]),
            game_value=best_legal_q(out, b["legal"]) if with_q else None,
        )
        start += len(batch["targets"])
    return _finite(metrics.compute())


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise NonFiniteError(f"non-finite metric(s) {', '.join(bad)}: the model diverged")
    return metrics


PLAYOUT_LOST = "playout_lost/"


def playout_key(seed: int, decl_id: int) -> str:
    """The metric holding one golden deal's play-out points lost: ``playout_lost/<seed>-<decl id>``."""
    return f"{PLAYOUT_LOST}{seed}-{decl_id}"


def playout_deal(key: str) -> tuple[int, int] | None:
    """(seed, decl id) of a :func:`playout_key`, else None."""
    if not key.startswith(PLAYOUT_LOST):
        return None
    seed, _, decl = key.removeprefix(PLAYOUT_LOST).partition("-")
    return (int(seed), int(decl)) if seed.isdigit() and decl.isdigit() else None


def eval_device(accelerator: str = "auto") -> str:
    """Where evaluation runs for a training ``accelerator`` setting: "cuda" when that means a GPU
    (batched inference under bf16 autocast), else "cpu" (the exact fp32 InferenceNet)."""
    gpu = on_cuda(accelerator)
    if gpu and not torch.cuda.is_available():
        raise InputError(f"accelerator {accelerator!r} asks for a GPU, and torch sees no CUDA device here")
    return "cuda" if gpu else "cpu"


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path,
    split: str = "val",
    batch_size: int = 256,
    playout_deals: int = 0,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Per-state metrics of a checkpoint's trained heads on a split, plus play-out metrics on the
    first ``playout_deals`` deals behind that split (0: none)."""
    if threads:
        torch.set_num_threads(threads)
    module = load_module(checkpoint)
    heads = module.trained_heads
    tensors = load_tensors(data_dir, split, in_memory=False)
    try:
        metrics = evaluate_model(module.model, tensors, batch_size, with_q="q" in heads,
                                 with_value="value" in heads, device=device, move_head=module.move_head)
        if playout_deals:
            shards = golden_shards(data_dir, split)[:playout_deals]
            played = play_out_shards(ModelPolicy(module.model, device, module.move_head), shards)
            metrics.update(_finite(played.summary()))
            # per deal too, so a view can show the worst play-out without playing them all again
            metrics.update({playout_key(d.seed, d.decl_id): float(d.points_lost) for d in played.deals})
    except NonFiniteError as e:
        raise NonFiniteError(f"{checkpoint} on split {split!r}: {e}") from None
    return metrics
