"""Check that a shard file honours the contract (command: ``python -m forge.oracle.verify FILE...``).

The standard checks (schema, metadata, sorted unique states, well-formed states, -128 exactly
where a move is illegal, V = max/min of the legal Q, terminal rows, the initial state) cost one
pass over the rows. ``--deep`` also replays every legal move and checks Q against the child's V
plus the trick's points (Bellman consistency), which re-derives the whole solution.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numba as nb
import numpy as np

from forge.atomic import atomic_write_text
from forge.commandline import ArgumentParser, run_cli
from forge.digests import file_stamp
from forge.oracle.deal import deal
from forge.oracle.kernels import legal_mask
from forge.oracle.rules import ILLEGAL_Q, TOTAL_POINTS
from forge.oracle.shard import COLUMNS, Q_COLUMNS, SCHEMA, ShardError, read_shard, read_shard_info
from forge.oracle.solve import _deal_tables
from forge.oracle.state import (
    ALL_HANDS,
    HAND_MASK,
    LEADER_SHIFT,
    MASK_BITS,
    NO_PLAY,
    NO_PLAYS,
    PLAY_MASK,
    PLAY_SHIFTS,
    SEAT_MASK,
    STATE_BITS,
    TRICK_LEN_SHIFT,
    initial_state,
)

#: Names of the per-row checks, in the order the kernel counts them.
ROW_CHECKS = (
    "malformed state fields",
    "Q is not -128 exactly where the move is illegal",
    "V is not the max/min of the legal Q for the mover's team",
    "terminal row with V != 0",
    "V outside [-42, 42]",
)
DEEP_CHECKS = ("child state missing from the shard", "Q differs from child V plus trick points")


@nb.njit(cache=True, inline="always")
def _popcount(m):
    c = 0
    while m:
        c += m & 1
        m >>= 1
    return c


@nb.njit(cache=True)
def _check_rows(state, V, q, n, led, follow):
    """Count rows failing each of ROW_CHECKS and remember the first; also count terminals."""
    bad = np.zeros(len(ROW_CHECKS), dtype=np.int64)
    first = np.full(len(ROW_CHECKS), -1, dtype=np.int64)
    terminals = 0
    full = (1 << n) - 1
    for r in range(len(state)):
        s = state[r]
        leader = (s >> LEADER_SHIFT) & SEAT_MASK
        tlen = (s >> TRICK_LEN_SHIFT) & SEAT_MASK
        masks = (
            s & HAND_MASK,
            (s >> MASK_BITS) & HAND_MASK,
            (s >> (2 * MASK_BITS)) & HAND_MASK,
            (s >> (3 * MASK_BITS)) & HAND_MASK,
        )
        ok = (s >> STATE_BITS) == 0
        base = _popcount(masks[(leader + 3) & 3])  # the trick's last player has not played yet
        for pos in range(4):
            p = (leader + pos) & 3
            if (masks[p] & ~full) != 0:
                ok = False
            played = pos < tlen
            if _popcount(masks[p]) != base - played:
                ok = False
            if played and ((s >> PLAY_SHIFTS[pos]) & PLAY_MASK) >= n:
                ok = False
        for pos in range(3):
            play = (s >> PLAY_SHIFTS[pos]) & PLAY_MASK
            if (pos < tlen) == (play == NO_PLAY):
                ok = False
        codes = 0
        if not ok:
            codes |= 1
        else:
            mover = (leader + tlen) & 3
            follows = 0
            if tlen > 0:
                follows = follow[mover, led[leader, (s >> PLAY_SHIFTS[0]) & PLAY_MASK]]
            legal = legal_mask(masks[mover], follows)
            maximize = (mover & 1) == 0
            best = -1000 if maximize else 1000
            for i in range(7):
                is_legal = (legal >> i) & 1
                if is_legal == (q[i, r] == ILLEGAL_Q):
                    codes |= 2
                if is_legal:
                    v = np.int64(q[i, r])
                    if (maximize and v > best) or (not maximize and v < best):
                        best = v
            if legal == 0:
                terminals += 1
                if V[r] != 0:
                    codes |= 8
            elif best != V[r]:
                codes |= 4
        if V[r] < -TOTAL_POINTS or V[r] > TOTAL_POINTS:
            codes |= 16
        for c in range(len(ROW_CHECKS)):
            if (codes >> c) & 1:
                bad[c] += 1
                if first[c] < 0:
                    first[c] = r
    return bad, first, terminals


@nb.njit(cache=True)
def _check_children(state, V, q, bit, led, power, points):
    """Count (row, move) pairs whose child is missing or whose Q breaks Bellman's equation."""
    bad = np.zeros(2, dtype=np.int64)
    first = np.full(2, -1, dtype=np.int64)
    for r in range(len(state)):
        s = state[r]
        leader = (s >> LEADER_SHIFT) & SEAT_MASK
        tlen = (s >> TRICK_LEN_SHIFT) & SEAT_MASK
        mover = (leader + tlen) & 3
        for i in range(7):
            if q[i, r] == ILLEGAL_Q:
                continue
            masks = (s & ALL_HANDS) - bit[mover, i]
            gain = 0
            if tlen < 3:
                child = masks | (leader << LEADER_SHIFT) | ((tlen + 1) << TRICK_LEN_SHIFT)
                for pos in range(3):
                    play = (s >> PLAY_SHIFTS[pos]) & PLAY_MASK
                    if pos == tlen:
                        play = i
                    child |= play << PLAY_SHIFTS[pos]
            else:
                plays = (
                    (s >> PLAY_SHIFTS[0]) & PLAY_MASK,
                    (s >> PLAY_SHIFTS[1]) & PLAY_MASK,
                    (s >> PLAY_SHIFTS[2]) & PLAY_MASK,
                    np.int64(i),
                )
                suit = led[leader, plays[0]]
                best = -1
                winner = 0
                pts = 1
                for pos in range(4):
                    p = (leader + pos) & 3
                    pw = power[p, plays[pos], suit]
                    if pw > best:
                        best = pw
                        winner = p
                    pts += points[p, plays[pos]]
                gain = pts if (winner & 1) == 0 else -pts
                child = masks | (winner << LEADER_SHIFT) | np.int64(NO_PLAYS)
            j = np.searchsorted(state, child)
            code = -1
            if j >= len(state) or state[j] != child:
                code = 0
            elif np.int64(V[j]) + gain != q[i, r]:
                code = 1
            if code >= 0:
                bad[code] += 1
                if first[code] < 0:
                    first[code] = r
    return bad, first


def verify_shard(path: str | Path, deep: bool = False) -> list[str]:
    """Problems found in the shard at ``path`` (empty when it verifies)."""
    path = Path(path)
    try:
        info = read_shard_info(path)
        cols = read_shard(path)
    except ShardError as exc:
        return [str(exc)]
    problems = []
    for name in COLUMNS:
        want = SCHEMA.field(name).type.to_pandas_dtype()
        if cols[name].dtype != want:
            problems.append(f"column {name} has dtype {cols[name].dtype}, expected {np.dtype(want)}")
    if problems:
        return problems
    state, V = cols["state"], cols["V"]
    q = np.stack([cols[c] for c in Q_COLUMNS])
    if len(state) == 0:
        return ["shard has no rows"]
    steps = np.diff(state)
    if np.any(steps <= 0):
        r = int(np.argmax(steps <= 0))
        problems.append(f"states not sorted and unique (first at row {r + 1})")
    tables = _deal_tables(deal(info.seed, info.hand_size), info.decl_id)
    bad, first, terminals = _check_rows(state, V, q, info.hand_size, tables["led"], tables["follow"])
    problems += [f"{n} row(s): {name} (first at row {f})" for name, n, f in zip(ROW_CHECKS, bad, first) if n]
    if terminals == 0:
        problems.append("no terminal row")
    init = initial_state(info.hand_size)
    i = int(np.searchsorted(state, init))
    if i >= len(state) or state[i] != init:
        problems.append(f"initial state {init:#x} missing")
    if deep and not problems:
        bad, first = _check_children(
            state, V, q, tables["bit"], tables["led"], tables["power"], tables["points"]
        )
        problems += [f"{n} move(s): {name} (first at row {f})" for name, n, f in zip(DEEP_CHECKS, bad, first) if n]
    return problems


#: Per-folder record of shards that verified, by file identity: an unchanged file is not re-read.
MEMO = ".verified.json"


def _memo(folder: Path) -> dict[str, list[int]]:
    try:
        memo = json.loads((folder / MEMO).read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}  # a damaged memo only costs a re-read


def remember_verified(paths: list[Path]) -> None:
    """Record that these shards verify (or were just written by the solver), as they are now."""
    by_folder: dict[Path, list[Path]] = {}
    for p in paths:
        by_folder.setdefault(Path(p).parent, []).append(Path(p))
    for folder, members in by_folder.items():
        memo = _memo(folder)
        memo.update({p.name: file_stamp(p) for p in members if p.is_file()})
        atomic_write_text(folder / MEMO, json.dumps(memo, sort_keys=True), fsync=False)


def verify_once(path: str | Path) -> list[str]:
    """:func:`verify_shard`, skipped for a file unchanged (size, mtime, inode) since it last verified.

    Golden shards are checked before every iteration; re-reading gigabytes each time would cost
    more than the iteration's own work. The footer is read every time, so a file whose name is
    not its deal's is foreign even where a memo (an older version's) says it verified.
    """
    path = Path(path)
    if path.is_file() and _memo(path.parent).get(path.name) == file_stamp(path):
        try:
            read_shard_info(path)  # the footer still parses and names this deal
            return []
        except ShardError as exc:
            return [str(exc)]
    problems = verify_shard(path)
    if not problems:
        remember_verified([path])
    return problems


# ---------------------------------------------------------------------------------------------- command line
# ``python -m forge.oracle.verify FILE...`` (the CLI layer's verify command runs the same ``main``).

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
