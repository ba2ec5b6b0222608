"""``python -m forge.cli.generate`` (also ``python -m forge.oracle.generate``): solve deals into shards.

Shards that already exist, verify and hold the requested deal are kept; corrupt or foreign ones
are regenerated with a note. Many shards run in parallel worker processes behind one progress bar.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from forge.cli.common import ArgumentParser, number, parse_seed_range, run_cli
from forge.oracle import rules
from forge.oracle.deal import deal
from forge.oracle.executors import EXECUTORS
from forge.oracle.generate import ShardResult, generate, parse_decls, root_values

PROG = "python -m forge.oracle.generate"


def format_qvals(res: ShardResult, hand_size: int) -> str:
    """Root V and the Q of each of player 0's dominoes, e.g. ``0-0: -38``."""
    hand = deal(res.seed, hand_size)[0]
    qs = "  ".join(f"{rules.domino_name(int(d))}: {res.root_q[i]:+d}" for i, d in enumerate(hand))
    return f"  V = {res.root_v:+d}   Q: {qs}"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="one deal seed (>= 0)")
    which.add_argument("--seed-range", metavar="A:B", help="seeds A..B-1")
    parser.add_argument("--decl", required=True, help="0..9, a name (e.g. sixes, notrump), a list a,b or 'all'")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the shards")
    parser.add_argument("--overwrite", action="store_true", help="regenerate shards that already verify")
    parser.add_argument("--hand-size", type=int, default=rules.MAX_HAND, help="dominoes per hand, 1..7 (default 7)")
    parser.add_argument("--workers", type=number(int, 1), default=None,
                        help="worker processes of the local executor (default: CPU count)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="where deals are solved: local processes (default) or a Ray cluster, one task "
                             "per deal; shards are written here either way")
    parser.add_argument("--ray-address", metavar="HOST:PORT", default=None,
                        help="the Ray cluster's head (default: RAY_ADDRESS, or the cluster started on this machine)")
    parser.add_argument("--show-qvals", action="store_true", help="print each deal's root V and player 0's Q")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seeds = [args.seed] if args.seed is not None else parse_seed_range(args.seed_range)
    jobs = [(s, d) for s in seeds for d in parse_decls(args.decl)]
    written = kept = 0
    start = time.perf_counter()
    results = sorted(
        generate(jobs, args.out, args.hand_size, args.overwrite, args.workers, progress=not args.quiet,
                 executor=args.executor, ray_address=args.ray_address),
        key=lambda r: (r.seed, r.decl_id),
    )
    for res in results:
        kept += res.skipped
        written += not res.skipped
        if res.note:
            print(f"{res.path.name}: {res.note}", file=sys.stderr)
        if args.show_qvals:
            if res.root_v is None:
                v, q = root_values(res.path, args.hand_size)
                res = replace(res, root_v=v, root_q=q)
            how = "kept (verified)" if res.skipped else f"solved in {res.seconds:.2f}s"
            print(f"seed {res.seed} decl {res.decl_id} ({rules.DECL_NAMES[res.decl_id]}): "
                  f"{res.rows:,} states, {how} -> {res.path}")
            print(format_qvals(res, args.hand_size))
    print(f"{written} shard(s) written, {kept} kept (already verified) in {args.out} "
          f"[{time.perf_counter() - start:.1f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
