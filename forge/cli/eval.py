"""``python -m forge.cli.eval``: a checkpoint's move-quality metrics on a split (and play-outs).

The work is :func:`forge.ml.evaluate.evaluate`; this module is only its command line. The
checkpoint may be this project's or one written by the public reference trainer. The JSON
printed holds the metrics of the checkpoint's trained heads and, under ``trained_heads``,
which heads those are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from forge.atomic import atomic_write_text
from forge.commandline import ArgumentParser, UsageError, number, run_cli
from forge.ml.checkpoints import checkpoint_info

PROG = "python -m forge.cli.eval"


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
    p.add_argument("--accelerator", default="auto",
                   help="auto (default: a CUDA GPU if there is one, under bf16 autocast), cpu, or cuda")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out}: is a folder, not a file")
    heads = checkpoint_info(args.checkpoint).trained_heads  # a bad checkpoint fails before the data loads
    # Lightning (through the module evaluate builds) loads only now: a mistake above is told in a fraction
    # of a second, not after seconds of imports
    from forge.ml.evaluate import eval_device, evaluate

    metrics = evaluate(args.checkpoint, args.data, args.split, args.batch_size, args.playout, args.threads,
                       device=eval_device(args.accelerator))
    text = json.dumps({**metrics, "trained_heads": list(heads)}, indent=1) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
