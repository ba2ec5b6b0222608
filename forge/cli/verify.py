"""``python -m forge.cli.verify FILE...`` (also ``python -m forge.oracle.verify``): check shards.

Standard checks cost one pass over the rows; ``--deep`` also replays every legal move (see
:mod:`forge.oracle.verify`). Every file is checked and reported, whatever the others hold;
the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from forge.cli.common import ArgumentParser, run_cli
from forge.oracle.verify import verify_shard

PROG = "python -m forge.oracle.verify"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Check that shard files honour the contract.")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--deep", action="store_true", help="also check every Q against its child's V")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed = 0
    for path in args.files:
        problems = verify_shard(path, deep=args.deep)
        if problems:
            failed += 1
            print(f"FAIL {path}: {'; '.join(problems)}", file=sys.stderr)
        else:
            print(f"ok   {path}")
    if failed:
        print(f"{failed} of {len(args.files)} shard(s) failed verification", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
