"""Oracle shard -> model-ready int8 arrays (spec: "Tokenized sample (format v1)").

One shard is tokenized at a time, without a Python loop over samples: the sampled rows are
picked first (the spec's sampling rule), only the row groups that hold them are decoded, and
every feature is computed for all samples at once with numpy. The feature code is a pure
function of (states, V, Q, hands, decl) so it can be checked against hand-worked states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forge.errors import InputError
from forge.ml.settings import SELECTIONS
from forge.oracle.deal import deal
from forge.oracle.rules import (
    COUNT,
    HIGH,
    ILLEGAL_Q,
    LOW,
    MAX_HAND,
    N_DECLS,
    N_PLAYERS,
    TRUMP_RANK,
)

# The shard module owns the file format: its columns, footer checks and error type are used here.
from forge.oracle.shard import COLUMNS, Q_COLUMNS, ShardError, read_shard_info
from forge.oracle.state import LEADER_SHIFT, MASK_BITS, NO_PLAY, PLAY_SHIFTS, STATE_BITS, TRICK_LEN_SHIFT

#: Bumped whenever any tokenized array changes meaning; cache entries carry it.
FORMAT_VERSION = 1
N_TOKENS = 32
N_FEATURES = 12
#: Token index of the first trick play (leader's); hand tokens are 1..28.
TRICK_TOKEN = 1 + N_PLAYERS * MAX_HAND
ARRAY_NAMES: tuple[str, ...] = ("tokens", "masks", "players", "teams", "values", "qvals", "legal", "targets")

# Feature indices (spec order).
F_HIGH, F_LOW, F_DOUBLE, F_COUNT, F_TRUMP, F_REL_OWNER, F_IS_MOVER, F_IS_PARTNER = range(8)
F_HELD, F_TYPE, F_DECL, F_REL_LEADER = range(8, 12)
#: Values each token feature takes (0 .. vocab-1), in feature order: high, low, double, count
#: class, trump rank, owner rel, is mover, is partner, held, token type, decl, leader rel. The
#: model sizes its embeddings from it and the store checks datasets against it.
FEATURE_VOCAB: tuple[int, ...] = (7, 7, 2, 3, 8, N_PLAYERS, 2, 2, 2, 8, N_DECLS, N_PLAYERS)


def tricks_played_of(tokens, masks):  # numpy arrays or torch tensors: (N, 32, 12) tokens, (N, 32) masks
    """Tricks completed before each sample's state (0 at the first lead), from its tokens alone:
    every hand holds ``hand_size - k`` dominoes at the start of trick k and each play of the trick
    in progress removes one, so held + plays so far = 4 * (hand_size - k). Integer sums widen to
    int64 in numpy and torch alike, so one function serves the views (numpy, no torch) and the
    evaluation (tensors)."""
    hand = slice(1, TRICK_TOKEN)
    held = tokens[:, hand, F_HELD].sum(1)
    plays = masks[:, TRICK_TOKEN:].sum(1)
    hand_size = masks[:, hand].sum(1) // N_PLAYERS
    return hand_size - (held + plays) // N_PLAYERS


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, memory_map=True)
    except (pa.ArrowException, OSError) as e:
        raise ShardError(f"{path}: not a readable parquet shard (truncated or not parquet?): {e}") from e


def _check_columns(path: Path, pf: pq.ParquetFile) -> None:
    schema = pf.schema_arrow
    wrong = [c for c in COLUMNS if not pa.types.is_integer(schema.field(c).type)]
    if wrong:
        raise ShardError(f"{path}: column(s) {', '.join(wrong)} are not integers")


#: Which of a shard's states training may sample (:data:`forge.ml.settings.SELECTIONS`; golden sets are
#: always "all"):
#: - "all": every state, the spec's sampling rule;
#: - "decisions": only states where a legal move can lose points (the mover's legal Q differ). Most
#:   states teach the policy nothing: a single legal move, or every legal move optimal (74% of the
#:   states of a full deal). Sampling among decisions spends every training step on a lesson; the
#:   value head then sees only such states too.
#: - "mixed": decisions for all but a :data:`MIXED_OTHERS` share of the samples, the rest drawn among
#:   the other states, so that the value and Q heads also learn the states the policy has nothing to
#:   learn from (on decisions alone, the value head carries the decisions' mean value, about +7.6
#:   points for the mover, to every other state: docs/time-to-quality.md).

#: The share of a "mixed" selection's samples drawn among the states that are not decisions.
MIXED_OTHERS = 0.25


def check_selection(selection: str) -> str:
    if selection not in SELECTIONS:
        raise InputError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    return selection


def sample_rows(rows: int | np.ndarray, max_samples: int, global_seed: int, seed: int, decl_id: int) -> np.ndarray:
    """Row indices per the spec's sampling rule, in sampling order (before dropping terminals).

    ``rows`` is the shard's row count, or the ascending indices of the rows eligible under a
    selection: the same rule then draws among those rows, by their position in that list.
    """
    eligible = None if isinstance(rows, (int, np.integer)) else np.asarray(rows, dtype=np.int64)
    n = int(rows) if eligible is None else len(eligible)
    if n > max_samples:
        rng = np.random.default_rng((global_seed, seed, decl_id))
        picked = rng.choice(n, size=max_samples, replace=False)
    else:
        picked = np.arange(n, dtype=np.int64)
    return picked if eligible is None else eligible[picked]


def mixed_rows(decisions: np.ndarray, n_rows: int, max_samples: int, global_seed: int, seed: int,
               decl_id: int) -> np.ndarray:
    """A "mixed" selection's rows: ``max_samples`` less a :data:`MIXED_OTHERS` share drawn among the
    ``decisions`` (ascending row indices), that share among the other rows, each by the spec's rule
    (:func:`sample_rows`); decisions first. Fewer others than their share leaves the rest to decisions."""
    others = np.setdiff1d(np.arange(n_rows, dtype=np.int64), decisions, assume_unique=True)
    n_others = min(len(others), int(round(max_samples * MIXED_OTHERS)))
    picked_decisions = sample_rows(decisions, max_samples - n_others, global_seed, seed, decl_id)
    return np.concatenate([picked_decisions, sample_rows(others, n_others, global_seed, seed, decl_id)
                           if n_others else np.zeros(0, dtype=np.int64)])


def q_spread(qvals: np.ndarray) -> np.ndarray:
    """Per row, the most points a legal move can lose against the best one (0: no choice matters;
    also 0 for terminal rows). ``qvals`` (N, 7) int8 in team-0 units, ILLEGAL_Q where illegal."""
    q = np.asarray(qvals, dtype=np.int16)
    legal = q != ILLEGAL_Q
    best = q.max(axis=1)  # ILLEGAL_Q is below every legal Q
    worst = np.where(legal, q, 127).min(axis=1)
    return np.where(legal.any(axis=1), best - worst, 0)


def is_decision(columns: list[np.ndarray]) -> np.ndarray:
    """``q_spread(qvals) > 0`` from the Q columns as they are read (int8, one array per local index),
    without stacking or widening them: a few int8 passes, several times faster than the (N, 7) int16
    route on a full deal's tens of millions of rows, which made choosing decisions the bulk of
    tokenizing.

    Subtracting 1 with int8 wrap-around sends ILLEGAL_Q (-128) to 127, above every legal Q, and the
    legal Q in [-42, 42] to Q - 1: so the minimum of the shifted columns is the worst legal Q less
    one (127 with no legal move), while the plain maximum is the best (ILLEGAL_Q is below every legal
    Q). A row decides something when best - 1 > worst - 1."""
    best = columns[0].copy()
    worst = (columns[0].view(np.uint8) - np.uint8(1)).view(np.int8)
    for col in columns[1:]:
        np.maximum(best, col, out=best)
        np.minimum(worst, (col.view(np.uint8) - np.uint8(1)).view(np.int8), out=worst)
    np.subtract(best.view(np.uint8), np.uint8(1), out=best.view(np.uint8))  # no legal move: 127, never above
    return best > worst


def decision_rows(path: Path, pf: pq.ParquetFile) -> np.ndarray:
    """Ascending indices of the shard's rows where a legal move can lose points, read a row group
    at a time (only the Q columns)."""
    found, start = [], 0
    for g in range(pf.metadata.num_row_groups):
        try:
            table = pf.read_row_group(g, columns=list(Q_COLUMNS))
        except (pa.ArrowException, OSError) as e:
            raise ShardError(f"{path}: cannot read row group {g} (truncated or corrupt?): {e}") from e
        found.append(np.flatnonzero(is_decision([_column(path, table, c) for c in Q_COLUMNS])) + start)
        start += table.num_rows
        del table
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise ShardError(f"{path}: column {name} has nulls")
    return col.to_numpy()


def read_rows(path: Path, pf: pq.ParquetFile, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Columns ``COLUMNS`` at ``rows`` (any order), decoding only row groups that hold a row."""
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    out = {c: np.empty(len(rows), dtype=np.int64 if c == "state" else np.int8) for c in COLUMNS}
    start = 0
    for g in range(pf.metadata.num_row_groups):
        stop = start + pf.metadata.row_group(g).num_rows
        lo, hi = np.searchsorted(srt, [start, stop])
        if hi > lo:
            try:
                table = pf.read_row_group(g, columns=list(COLUMNS))
            except (pa.ArrowException, OSError) as e:
                raise ShardError(f"{path}: cannot read row group {g} (truncated or corrupt?): {e}") from e
            local = srt[lo:hi] - start
            for c in COLUMNS:
                out[c][order[lo:hi]] = _column(path, table, c)[local]
            del table
        start = stop
    return out


def _domino_features(decl_id: int) -> np.ndarray:
    """(28, 5) int8: high, low, is double, count class, trump rank for every domino."""
    return np.stack([HIGH, LOW, HIGH == LOW, COUNT // 5, TRUMP_RANK[decl_id]], axis=1).astype(np.int8)


def _hand_template(hands: np.ndarray, decl_id: int) -> tuple[np.ndarray, np.ndarray]:
    """State-independent part of the 32 tokens, and the (28,) presence of hand slots."""
    n = hands.shape[1]
    template = np.zeros((N_TOKENS, N_FEATURES), dtype=np.int8)
    template[0, F_DECL] = decl_id
    present = np.zeros((N_PLAYERS, MAX_HAND), dtype=np.int8)
    present[:, :n] = 1
    dom = _domino_features(decl_id)
    for p in range(N_PLAYERS):  # 4 players x 5 features: a loop over layout, not over samples
        rows = slice(1 + MAX_HAND * p, 1 + MAX_HAND * p + n)
        template[rows, :5] = dom[hands[p]]
        template[rows, F_TYPE] = 1 + p
        template[rows, F_DECL] = decl_id
    return template, present.reshape(-1)


def check_states(states: np.ndarray, hand_size: int) -> np.ndarray:
    """Indices of rows that are not valid packed states of a game with this hand size."""
    hand_bits = np.int64((1 << hand_size) - 1)
    bad = (states >> STATE_BITS) != 0
    for p in range(N_PLAYERS):
        bad |= ((states >> (MASK_BITS * p)) & 0x7F & ~hand_bits) != 0
    tlen = (states >> TRICK_LEN_SHIFT) & 3
    for j, sh in enumerate(PLAY_SHIFTS):
        play = (states >> sh) & 7
        bad |= np.where(j < tlen, play >= hand_size, play != NO_PLAY)
    return np.flatnonzero(bad)


def featurize(
    states: np.ndarray, values: np.ndarray, qvals: np.ndarray, hands: np.ndarray, decl_id: int
) -> dict[str, np.ndarray]:
    """Format-v1 arrays for rows (states (N,), V (N,), Q (N, 7)); rows with no legal move dropped."""
    states = np.asarray(states, dtype=np.int64)
    qvals = np.asarray(qvals, dtype=np.int8).reshape(-1, MAX_HAND)
    legal = (qvals != ILLEGAL_Q).astype(np.int8)
    keep = legal.any(axis=1)
    states, qvals, legal = states[keep], qvals[keep], legal[keep]
    values = np.asarray(values, dtype=np.int8)[keep]
    n_samples, hand_size = len(states), hands.shape[1]

    leader = ((states >> LEADER_SHIFT) & 3).astype(np.int8)
    tlen = ((states >> TRICK_LEN_SHIFT) & 3).astype(np.int8)
    mover = (leader + tlen) & 3
    rel_leader = (leader - mover) & 3

    template, slot_present = _hand_template(hands, decl_id)
    tokens = np.empty((n_samples, N_TOKENS, N_FEATURES), dtype=np.int8)
    tokens[:] = template
    tokens[:, 0, F_REL_LEADER] = rel_leader

    # Hand tokens 1..28: token 1 + 7p + i is bit 7p + i of the state.
    owner = np.repeat(np.arange(N_PLAYERS, dtype=np.int8), MAX_HAND)
    rel = (owner[None, :] - mover[:, None]) & 3
    hand = tokens[:, 1:TRICK_TOKEN]
    hand[..., F_REL_OWNER] = rel * slot_present
    hand[..., F_IS_MOVER] = (rel == 0) * slot_present
    hand[..., F_IS_PARTNER] = (rel == 2) * slot_present
    hand[..., F_HELD] = (states[:, None] >> np.arange(N_PLAYERS * MAX_HAND)) & 1
    hand[..., F_REL_LEADER] = rel_leader[:, None] * slot_present

    # Trick tokens 29..31: the plays made so far, by position in the trick.
    pos = np.arange(3, dtype=np.int8)
    made = (pos[None, :] < tlen[:, None]).astype(np.int8)
    local = np.stack([(states >> sh) & 7 for sh in PLAY_SHIFTS], axis=1)
    padded = np.zeros((N_PLAYERS, NO_PLAY + 1), dtype=np.int64)
    padded[:, :hand_size] = hands
    played = padded[(leader[:, None] + pos[None, :]) & 3, local]
    trick = tokens[:, TRICK_TOKEN:]
    trick[..., :5] = _domino_features(decl_id)[played] * made[..., None]
    trick_rel = (pos[None, :] - tlen[:, None]) & 3  # (leader + j - mover) % 4
    trick[..., F_REL_OWNER] = trick_rel * made
    trick[..., F_IS_MOVER] = 0
    trick[..., F_IS_PARTNER] = (trick_rel == 2) * made
    trick[..., F_HELD] = 0
    trick[..., F_TYPE] = (5 + pos[None, :]) * made
    trick[..., F_DECL] = decl_id * made
    trick[..., F_REL_LEADER] = rel_leader[:, None] * made

    masks = np.empty((n_samples, N_TOKENS), dtype=np.int8)
    masks[:, 0] = 1
    masks[:, 1:TRICK_TOKEN] = slot_present
    masks[:, TRICK_TOKEN:] = made

    team1 = (mover & 1).astype(bool)
    best_max = np.argmax(qvals, axis=1)  # illegal -128 is below every legal Q (>= -42)
    best_min = np.argmin(np.where(legal.astype(bool), qvals, np.int8(127)), axis=1)
    targets = np.where(team1, best_min, best_max).astype(np.int8)
    return {
        "tokens": tokens,
        "masks": masks,
        "players": mover.astype(np.int8),
        "teams": (mover & 1).astype(np.int8),
        "values": values,
        "qvals": qvals,
        "legal": legal,
        "targets": targets,
    }


def tokenize_shard(
    path: str | Path, max_samples: int, global_seed: int, selection: str = "all"
) -> dict[str, np.ndarray]:
    """Sample up to ``max_samples`` rows of a shard and tokenize them (spec format v1), drawn
    among the rows ``selection`` allows (:data:`SELECTIONS`; "all" is the spec's rule).

    Deterministic in (shard, max_samples, global_seed, selection) alone. Raises ShardError,
    naming the file, for anything that is not a well-formed shard.
    """
    if max_samples < 1:
        raise InputError(f"max_samples must be positive, got {max_samples}")
    check_selection(selection)
    path = Path(path)
    info = read_shard_info(path)
    pf = _open(path)
    _check_columns(path, pf)
    if selection == "mixed":
        rows = mixed_rows(decision_rows(path, pf), info.rows, max_samples, global_seed, info.seed, info.decl_id)
    else:
        eligible = info.rows if selection == "all" else decision_rows(path, pf)
        rows = sample_rows(eligible, max_samples, global_seed, info.seed, info.decl_id)
    cols = read_rows(path, pf, rows)
    bad = check_states(cols["state"], info.hand_size)
    if len(bad):
        raise ShardError(f"{path}: row {int(rows[bad[0]])} is not a valid state for hand size "
                         f"{info.hand_size} (state={int(cols['state'][bad[0]])})")
    qvals = np.stack([cols[c] for c in Q_COLUMNS], axis=1)
    return featurize(cols["state"], cols["V"], qvals, deal(info.seed, info.hand_size), info.decl_id)

