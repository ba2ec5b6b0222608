"""``python -m forge.cli.tokenize``: oracle shards -> a tokenized, memory-mappable dataset.

Splits are named by the caller (``--split val='seed_0000000[0-3]_*'``), never inferred from
seed numbers; without ``--split`` every shard goes to ``train``. Patterns are globs relative to
``--input``; a shard matched by two splits is an error (it would leak between them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from forge.commandline import ArgumentParser, UsageError, number, run_cli
from forge.ml.store import BuildStats, build_dataset

PROG = "python -m forge.cli.tokenize"
DEFAULT_SAMPLES = 50_000


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    p.add_argument("--input", required=True, type=Path, help="folder holding the shard .parquet files")
    p.add_argument("--output", required=True, type=Path,
                   help="dataset folder (manifest.json + <split>/*.npy)")
    p.add_argument("--samples-per-shard", type=number(int, 1), default=DEFAULT_SAMPLES, metavar="K",
                   help=f"states sampled per shard (default {DEFAULT_SAMPLES})")
    p.add_argument("--global-seed", type=number(int, 0), default=0, metavar="G",
                   help="sampling seed (default 0)")
    p.add_argument("--split", action="append", default=[], metavar="NAME=GLOB",
                   help="shards for a split, by glob under --input; repeat per split and glob")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="tokenized-shard cache (default: <output>/../cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolve_splits(input_dir: Path, output_dir: Path, specs: list[str]) -> dict[str, list[Path]]:
    """NAME=GLOB specs -> shards per split, sorted by path within each glob, in the order given."""
    if not input_dir.is_dir():
        raise UsageError(f"--input {input_dir}: no such folder")
    if output_dir.resolve() == input_dir.resolve():
        raise UsageError("--output must not be the --input folder")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output {output_dir}: is a file, not a dataset folder")
    specs = specs or ["train=*.parquet"]
    splits: dict[str, list[Path]] = {}
    seen: dict[Path, str] = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            raise UsageError(f"--split {spec!r}: expected NAME=GLOB, e.g. val='seed_0000000[0-3]_*'")
        found = sorted(p for p in input_dir.glob(pattern) if p.is_file() and p.suffix == ".parquet")
        if not found:
            raise UsageError(f"--split {spec!r}: no .parquet files match under {input_dir}")
        for p in found:
            if p in seen:
                raise UsageError(f"{p.name} matches both split {seen[p]!r} and {name!r}")
            seen[p] = name
        splits.setdefault(name, []).extend(found)
    return splits


def _summary(stats: BuildStats) -> str:
    counts = ", ".join(f"{s}: {n:,} samples" for s, n in stats.counts.items())
    return (f"tokenized {len(stats.tokenized)} shard(s), {len(stats.cached)} from cache; "
            f"{counts} -> {stats.out_dir}")


def main(argv: list[str] | None = None) -> int:
    """Build the dataset; errors propagate to :func:`forge.commandline.run_cli` as one line."""
    logging.basicConfig(format="tokenize: %(message)s", level=logging.WARNING, stream=sys.stderr)
    args = parser().parse_args(argv)
    splits = resolve_splits(args.input, args.output, args.split)
    stats = build_dataset(splits, args.output, args.samples_per_shard, args.global_seed,
                          cache_dir=args.cache_dir, progress=not args.no_progress)
    print(_summary(stats))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
