"""``python -m forge.cli.train``: train a DominoTransformer on a tokenized dataset.

Each run gets ``<run-dir>/domino/version_N/`` holding ``metrics.csv``, ``checkpoints/``
(``last.ckpt`` and ``best.ckpt``, best by validation Q-gap) and, unless disabled, an offline
W&B run under ``wandb/``. ``--resume CKPT`` starts from a checkpoint's weights (fine-tuning:
fresh optimiser and schedule). From Python, call :func:`forge.ml.training.train`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from forge.commandline import TRAIN, ArgumentParser, UsageError, number, run_cli
from forge.ml.model_presets import PRESETS
from forge.ml.settings import PRECISIONS, HardwareSection, TrainingSection
from forge.validation import first_problem

PROG = TRAIN


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Train a DominoTransformer on a tokenized dataset.")
    p.add_argument("--data", required=True, type=Path, help="tokenized dataset folder (manifest.json)")
    p.add_argument("--epochs", type=number(int), help=_default("epochs"))
    p.add_argument("--lr", type=number(float, 0), help=_default("lr"))
    p.add_argument("--batch-size", type=number(int), help=_default("batch_size"))
    p.add_argument("--model", choices=sorted(PRESETS), default=None,
                   help="architecture preset (default: the --resume checkpoint's, else large)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--run-dir", type=Path, default=Path("runs"))
    p.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True,
                   help="log to W&B, offline, files under the run folder (default: on)")
    p.add_argument("--wandb-group", default=None, metavar="G")
    p.add_argument("--shuffle-hands", action="store_true", help="hand-slot shuffling augmentation")
    p.add_argument("--value-weight", type=number(float, 0), help="weight of the value loss " + _default("value_weight"))
    p.add_argument("--q-weight", type=number(float, 0), help="weight of the Q-regression loss " + _default("q_weight"))
    p.add_argument("--seed", type=number(int, 0), help=_default("train_seed"))
    p.add_argument("--threads", type=number(int), default=None, help="torch CPU threads")
    p.add_argument("--val-samples", type=number(int), default=None, metavar="N",
                   help="validate each epoch on N samples spread over the val split (default: all)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="auto (default): bf16-mixed on a GPU (16-mixed on an older one), 32 on a CPU, "
                   "where it measured fastest")
    p.add_argument("--accelerator", help="cpu, cuda, ... (default auto)")
    p.add_argument("--devices", type=_devices, help="devices (processes) per node, or auto (default 1)")
    p.add_argument("--strategy", help="e.g. ddp (one process per device)")
    p.add_argument("--num-nodes", type=number(int))
    p.add_argument("--compile", action="store_true", default=None, help="run the network through torch.compile")
    p.add_argument("--no-progress", action="store_true")
    return p


def _default(name: str) -> str:
    """The training section's default, said in the help (the section is its one source)."""
    return f"(default {TrainingSection.model_fields[name].default})"


def _given(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


def _devices(text: str) -> int | str:
    return text if text == "auto" else number(int)(text)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    try:
        training = TrainingSection(**_given(model=args.model, epochs=args.epochs, lr=args.lr,
                                            batch_size=args.batch_size, train_seed=args.seed,
                                            val_samples=args.val_samples, value_weight=args.value_weight,
                                            q_weight=args.q_weight))
        hardware = HardwareSection(**_given(precision=args.precision, accelerator=args.accelerator,
                                            devices=args.devices, strategy=args.strategy, num_nodes=args.num_nodes,
                                            compile=args.compile))
    except ValidationError as err:  # the option is the field's name with dashes
        raise UsageError("--" + first_problem(err).replace("_", "-").replace("train-seed", "seed")) from None
    from forge.ml.training import train  # torch and Lightning: only once the request holds (--help, a typo: ~0.5 s)

    result = train(args.data, training, hardware, resume=args.resume, run_dir=args.run_dir, wandb=args.wandb,
                   wandb_group=args.wandb_group, threads=args.threads, progress=not args.no_progress,
                   module_kwargs={"shuffle_hands": args.shuffle_hands})
    if result.global_rank != 0:  # a DDP worker: rank 0 reports the run
        return 0
    print(f"run: {result.run_dir}")
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint:
        print(f"best checkpoint: {result.best_checkpoint} (val q_gap {result.best_q_gap:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
