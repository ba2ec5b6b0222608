"""``python -m forge.cli.eval``: a checkpoint's move-quality metrics on a split (and play-outs).

Evaluation runs outside Lightning on purpose: contiguous zero-copy slices of the store, the
exact fp32 :class:`~forge.ml.inference.InferenceNet` forward on CPU (oneDNN, about 2.3x the
module's own), and histogram metrics that need no per-sample storage. From Python,
call :func:`evaluate` (a checkpoint) or :func:`evaluate_model` (a network and arrays).
"""

from __future__ import annotations

import os

# On a machine shared with other busy processes, OpenMP threads that spin while waiting make torch
# up to 10x slower; sleeping waits cost little. Only takes effect if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from forge.cli.common import ArgumentParser, UsageError, number, run_cli  # noqa: E402
from forge.ml.checkpoints import load_module  # noqa: E402
from forge.ml.data import ArrayBatches, decl_of, load_tensors  # noqa: E402
from forge.ml.inference import inference_net  # noqa: E402
from forge.ml.metrics import MoveMetrics  # noqa: E402
from forge.ml.model import DominoTransformer  # noqa: E402
from forge.ml.playout import ModelPolicy, golden_shards, play_out_shards  # noqa: E402

PROG = "python -m forge.cli.eval"


@torch.inference_mode()
def evaluate_model(
    model: DominoTransformer,
    tensors: Mapping[str, Tensor],
    batch_size: int = 256,
    with_q: bool = False,
    device: str | torch.device = "cpu",
    fast: bool = True,
) -> dict[str, float]:
    """Metrics of ``model`` on a split's tensors (see :mod:`forge.ml.metrics`); ``fast=False``
    runs the module's own forward instead of the (equal to rounding) inference net."""
    net = inference_net(model, device) if fast else model.eval().to(device)
    metrics = MoveMetrics()
    for batch in ArrayBatches(tensors, batch_size):
        b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        out = net(b["tokens"], b["masks"], b["players"])
        metrics.update(
            out.logits, batch["qvals"], batch["legal"], batch["teams"], batch["targets"], decl_of(batch),
            value=out.value, values=batch["values"], q=out.q if with_q else None,
        )
    return metrics.compute()


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path,
    split: str = "val",
    batch_size: int = 256,
    playout_deals: int = 0,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Per-state metrics of a checkpoint on a split, plus play-out metrics on the first
    ``playout_deals`` deals behind that split (0: none)."""
    if threads:
        torch.set_num_threads(threads)
    module = load_module(checkpoint)
    tensors = load_tensors(data_dir, split, in_memory=False)
    metrics = evaluate_model(module.model, tensors, batch_size, with_q=bool(module.hparams.q_weight),
                             device=device)
    if playout_deals:
        shards = golden_shards(data_dir, split)[:playout_deals]
        metrics.update(play_out_shards(ModelPolicy(module.model, device), shards).summary())
    return metrics


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Evaluate a DominoTransformer checkpoint on a dataset split.")
    p.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT")
    p.add_argument("--data", required=True, type=Path, help="tokenized dataset folder (manifest.json)")
    p.add_argument("--split", default="val", help="split to evaluate: val or test (default val)")
    p.add_argument("--out", type=Path, default=None, help="also write the metrics to this JSON file")
    p.add_argument("--batch-size", type=number(int), default=256)
    p.add_argument("--playout", type=number(int, 0), default=0, metavar="N",
                   help="also play out the first N golden deals of the split (default 0)")
    p.add_argument("--threads", type=number(int), default=None, help="torch CPU threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    metrics = evaluate(args.checkpoint, args.data, args.split, args.batch_size, args.playout, args.threads)
    text = json.dumps(metrics, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
