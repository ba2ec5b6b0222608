"""Generate oracle shards (command: ``python -m forge.oracle.generate --seed 0 --decl sixes --out data/shards``).

Shards that already exist, verify and hold the requested deal are kept; corrupt or foreign ones
are regenerated with a note. Many shards run in parallel worker processes behind one progress bar.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from forge.atomic import writable_dir
from forge.commandline import ArgumentParser, number, parse_seed_range, run_cli
from forge.errors import InputError
from forge.oracle import rules
from forge.oracle.deal import check_hand_size, check_seed, deal
from forge.oracle.executors import EXECUTORS
from forge.oracle.local_pool import run_local
from forge.oracle.shard import ShardError, read_shard_info, shard_path, write_shard, write_shard_bytes
from forge.oracle.shard_rows import ShardRows
from forge.oracle.solve import check_decl, solve
from forge.oracle.state import initial_state
from forge.oracle.verify import remember_verified, verify_once


@dataclass(frozen=True)
class ShardResult:
    """What became of one (seed, declaration): written, or kept because it verified."""

    seed: int
    decl_id: int
    path: Path
    rows: int
    root_v: int | None  # None for a kept shard until asked for (see root_values)
    root_q: tuple[int, ...] | None
    seconds: float
    skipped: bool = False
    note: str = ""


def parse_decls(text: str) -> list[int]:
    """``all``, or a comma-separated list of ids/names; InputError names an unknown one."""
    if text.strip().lower() == "all":
        return list(range(rules.N_DECLS))
    return sorted({rules.parse_decl(part) for part in text.split(",")})


def generate_one(seed: int, decl_id: int, out_dir: Path, hand_size: int = rules.MAX_HAND) -> ShardResult:
    """Solve and write one shard."""
    start = time.perf_counter()
    sol = solve(seed, decl_id, hand_size)
    path = write_shard(sol, out_dir)
    root_v, root_q = sol.root()
    return ShardResult(seed, decl_id, path, len(sol), root_v, root_q, time.perf_counter() - start)


def _existing(seed: int, decl_id: int, out_dir: Path, hand_size: int) -> ShardResult | str:
    """The kept result if the shard on disk verifies and holds this deal, else why it must be remade."""
    path = shard_path(out_dir, seed, decl_id)
    problems = verify_once(path)
    if problems:
        return f"existing shard did not verify ({'; '.join(problems)})"
    try:
        info = read_shard_info(path)
    except ShardError as exc:  # changed since it was checked a moment ago
        return f"existing shard did not verify ({exc})"
    held, wanted = (info.seed, info.decl_id, info.hand_size), (seed, decl_id, hand_size)
    if held != wanted:
        return ("existing file is a foreign shard (it holds seed {}, declaration {}, hand size {}; "
                "wanted seed {}, declaration {}, hand size {})".format(*held, *wanted))
    return ShardResult(seed, decl_id, path, info.rows, None, None, 0.0, True)


def root_values(path: Path, hand_size: int) -> tuple[int, tuple[int, ...]]:
    """V and Q of a shard's initial state, decoding only the row group that holds it."""
    rows = ShardRows(path)
    try:
        row = rows.lookup(initial_state(hand_size))
    except KeyError:
        raise ShardError(f"{path}: initial state missing") from None
    return rows.value(row), tuple(int(x) for x in rows.q_row(row))


def _check_jobs(jobs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    checked = []
    for job in jobs:
        seed, decl_id = job
        checked.append((check_seed(seed), check_decl(decl_id)))
    return list(dict.fromkeys(checked))  # each deal once, in the order asked




def generate(
    jobs: Iterable[tuple[int, int]],
    out_dir: str | os.PathLike,
    hand_size: int = rules.MAX_HAND,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> Iterator[ShardResult]:
    """Make every (seed, decl) shard in ``out_dir``; yields results as shards finish.

    ``executor="local"`` (the default) solves in ``workers`` processes on this machine (None:
    as many as it has CPUs, started once the deals left are worth their start; small deals are
    solved in this process, :func:`forge.oracle.local_pool.run_local`);
    ``"ray"`` runs one task per deal on the Ray cluster at ``ray_address`` (default:
    ``RAY_ADDRESS`` or the cluster started on this machine) and writes the shards here, byte
    for byte as a local run would (:mod:`forge.oracle.ray_pool`).

    Bad requests (a negative seed, an unknown declaration, a bad hand size, worker count or
    executor, an output folder that cannot be written) raise
    :class:`~forge.errors.InputError` before any work.
    """
    jobs = _check_jobs(jobs)
    hand_size = check_hand_size(hand_size)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if executor not in EXECUTORS:
        raise InputError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "local" and ray_address is not None:
        raise InputError("a Ray address needs the ray executor")
    if executor == "ray" and workers is not None:
        raise InputError("workers applies to the local executor (Ray runs as many deals as its nodes hold)")
    out_dir = writable_dir(out_dir)
    todo: list[tuple[int, int]] = []
    kept: list[ShardResult] = []
    notes: dict[tuple[int, int], str] = {}
    for seed, decl in jobs:
        if not overwrite and shard_path(out_dir, seed, decl).exists():
            found = _existing(seed, decl, out_dir, hand_size)
            if isinstance(found, ShardResult):
                kept.append(found)
                continue
            notes[seed, decl] = f"regenerated: {found}"
        todo.append((seed, decl))
    yield from kept

    if executor == "ray":
        results = _on_ray(todo, out_dir, hand_size, ray_address)
    else:
        # asked for no number of workers: small deals are solved here, sooner than workers would start
        results = run_local(generate_one, [(s, d, out_dir, hand_size) for s, d in todo],
                            max(1, min(workers or os.cpu_count() or 1, len(todo))), adaptive=workers is None)
    bar = tqdm(total=len(todo), unit="shard", disable=not progress or not todo, file=sys.stderr)
    with bar:
        for res in results:
            remember_verified([res.path])  # straight from the solver: no need to re-read it
            bar.update()
            note = notes.get((res.seed, res.decl_id), "")
            yield replace(res, note=note) if note else res


def _on_ray(todo: list[tuple[int, int]], out_dir: Path, hand_size: int, address: str | None) -> Iterator[ShardResult]:
    """Solve on the cluster, write here (see :mod:`forge.oracle.ray_pool` for why); joins the
    cluster now, so that a wrong address is reported before any progress is."""
    if not todo:
        return iter(())
    try:
        from forge.oracle.ray_pool import run_ray
    except ImportError as exc:
        raise InputError(f"the ray executor needs Ray: pip install 'ray>=2.40' ({exc})") from None
    return (
        ShardResult(done.seed, done.decl_id, write_shard_bytes(done.data, out_dir, done.seed, done.decl_id),
                    done.rows, done.root_v, done.root_q, done.seconds)
        for done in run_ray(todo, hand_size, address)
    )


# ---------------------------------------------------------------------------------------------- command line
# ``python -m forge.oracle.generate`` (the CLI layer's generate command runs the same ``main``).

PROG = "python -m forge.oracle.generate"


def format_qvals(res: ShardResult, hand_size: int) -> str:
    """Root V and the Q of each of player 0's dominoes, e.g. ``0-0: -38``."""
    hand = deal(res.seed, hand_size)[0]
    qs = "  ".join(f"{rules.domino_name(int(d))}: {res.root_q[i]:+d}" for i, d in enumerate(hand))
    return f"  V = {res.root_v:+d}   Q: {qs}"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Solve deals into shards.")
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
