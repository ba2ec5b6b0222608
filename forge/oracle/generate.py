"""Generate oracle shards: ``python -m forge.oracle.generate --seed 0 --decl sixes --out data/shards``.

Shards that already exist and verify are kept; corrupt ones are regenerated. Many shards run in
parallel worker processes (``--workers``, default: CPU count) behind one progress bar.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from forge.atomic import writable_dir
from forge.cli.common import ArgumentParser, UsageError, parse_seed_range, run_cli
from forge.oracle import rules
from forge.oracle.deal import check_hand_size, deal
from forge.oracle.shard import ShardError, read_shard_info, shard_path, write_shard
from forge.oracle.shard_rows import ShardRows
from forge.oracle.solve import solve
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
    """``all``, or a comma-separated list of ids/names."""
    if text.strip().lower() == "all":
        return list(range(rules.N_DECLS))
    try:
        return sorted({rules.parse_decl(part) for part in text.split(",")})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def generate_one(seed: int, decl_id: int, out_dir: Path, hand_size: int = rules.MAX_HAND) -> ShardResult:
    """Solve and write one shard."""
    start = time.perf_counter()
    sol = solve(seed, decl_id, hand_size)
    path = write_shard(sol, out_dir)
    row = sol.lookup(initial_state(hand_size))
    root_q = tuple(int(x) for x in sol.q[:, row])
    return ShardResult(seed, decl_id, path, len(sol), int(sol.V[row]), root_q, time.perf_counter() - start)


def _existing(seed: int, decl_id: int, out_dir: Path, hand_size: int) -> ShardResult | str:
    """The kept result if the shard on disk verifies for this request, else why it must be remade."""
    path = shard_path(out_dir, seed, decl_id)
    problems = verify_once(path)
    if not problems and read_shard_info(path).hand_size != hand_size:
        problems = [f"hand size {read_shard_info(path).hand_size}, requested {hand_size}"]
    if problems:
        return "; ".join(problems)
    return ShardResult(seed, decl_id, path, read_shard_info(path).rows, None, None, 0.0, True)


def root_values(path: Path, hand_size: int) -> tuple[int, tuple[int, ...]]:
    """V and Q of a shard's initial state, decoding only the row group that holds it."""
    rows = ShardRows(path)
    try:
        row = rows.lookup(initial_state(hand_size))
    except KeyError:
        raise ShardError(f"{path}: initial state missing") from None
    return rows.value(row), tuple(int(x) for x in rows.q_row(row))


def _init_worker(threads: int) -> None:
    import numba

    numba.set_num_threads(threads)


def generate(
    jobs: Iterable[tuple[int, int]],
    out_dir: str | os.PathLike,
    hand_size: int = rules.MAX_HAND,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Iterator[ShardResult]:
    """Make every (seed, decl) shard in ``out_dir``; yields results as shards finish."""
    out_dir = writable_dir(out_dir)
    hand_size = check_hand_size(hand_size)
    todo: list[tuple[int, int]] = []
    kept: list[ShardResult] = []
    notes: dict[tuple[int, int], str] = {}
    for seed, decl in jobs:
        if not overwrite and shard_path(out_dir, seed, decl).exists():
            found = _existing(seed, decl, out_dir, hand_size)
            if isinstance(found, ShardResult):
                kept.append(found)
                continue
            notes[seed, decl] = f"regenerated: existing shard did not verify ({found})"
        todo.append((seed, decl))
    yield from kept

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    bar = tqdm(total=len(todo), unit="shard", disable=not progress or not todo, file=sys.stderr)
    with bar:
        if workers == 1:
            for seed, decl in todo:
                res = generate_one(seed, decl, out_dir, hand_size)
                remember_verified([res.path])  # straight from the solver: no need to re-read it
                bar.update()
                yield _with_note(res, notes)
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = mp.get_context("spawn")  # numba's thread pools do not survive fork safely
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(generate_one, s, d, out_dir, hand_size) for s, d in todo]
            for fut in as_completed(futures):
                res = fut.result()
                remember_verified([res.path])
                bar.update()
                yield _with_note(res, notes)


def _with_note(res: ShardResult, notes: dict[tuple[int, int], str]) -> ShardResult:
    note = notes.get((res.seed, res.decl_id))
    if not note:
        return res
    return ShardResult(**{**res.__dict__, "note": note})


def format_qvals(res: ShardResult, hand_size: int) -> str:
    """Root V and the Q of each of player 0's dominoes, e.g. ``0-0: -38``."""
    hand = deal(res.seed, hand_size)[0]
    qs = "  ".join(f"{rules.domino_name(int(d))}: {res.root_q[i]:+d}" for i, d in enumerate(hand))
    return f"  V = {res.root_v:+d}   Q: {qs}"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m forge.oracle.generate", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="one deal seed (>= 0)")
    which.add_argument("--seed-range", metavar="A:B", help="seeds A..B-1")
    parser.add_argument("--decl", required=True, help="0..9, a name (e.g. sixes, notrump), a list a,b or 'all'")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the shards")
    parser.add_argument("--overwrite", action="store_true", help="regenerate shards that already verify")
    parser.add_argument("--hand-size", type=int, default=rules.MAX_HAND, help="dominoes per hand, 1..7 (default 7)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--show-qvals", action="store_true", help="print each deal's root V and player 0's Q")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"seeds must be non-negative, got {args.seed}")
    seeds = range(args.seed, args.seed + 1) if args.seed is not None else parse_seed_range(args.seed_range)
    decls = parse_decls(args.decl)
    if not 1 <= args.hand_size <= rules.MAX_HAND:
        raise UsageError(f"--hand-size must be 1..{rules.MAX_HAND}, got {args.hand_size}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    jobs = [(s, d) for s in seeds for d in decls]
    written = kept = 0
    start = time.perf_counter()
    results = sorted(
        generate(jobs, args.out, args.hand_size, args.overwrite, args.workers, progress=not args.quiet),
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
                res = ShardResult(**{**res.__dict__, "root_v": v, "root_q": q})
            how = "kept (verified)" if res.skipped else f"solved in {res.seconds:.2f}s"
            print(f"seed {res.seed} decl {res.decl_id} ({rules.DECL_NAMES[res.decl_id]}): "
                  f"{res.rows:,} states, {how} -> {res.path}")
            print(format_qvals(res, args.hand_size))
    print(f"{written} shard(s) written, {kept} kept (already verified) in {args.out} "
          f"[{time.perf_counter() - start:.1f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
