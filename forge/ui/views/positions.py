"""A game position a person can read: the four hands, the trick so far, the legal moves and the
oracle's Q per move, whether it comes from a shard row, a play-out or a tokenized sample.

A tokenized sample (spec "Tokenized sample (format v1)") holds everything needed to rebuild the
exact packed state: each hand token names its domino and whether it is still held, the trick
tokens name the plays so far, and the context token gives the leader relative to the mover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import polars as pl

from forge.ml.tokenize import F_DECL, F_HELD, F_HIGH, F_LOW, F_REL_LEADER, TRICK_TOKEN, tricks_played_of
from forge.oracle.play import legal_moves
from forge.oracle.rules import MAX_HAND, N_PLAYERS, domino_id, domino_name, team_of
from forge.oracle.state import MASK_BITS, NO_PLAY, TRICK_LEN_SHIFT, pack_state, unpack_state
from forge.ui.views.display import frame_html
from forge.ui.views.dominoes import BAD, BEST, GOOD, decl_label, hands_html, legend, player_label, tiles_row

#: Dominoes still held in a 7-bit hand mask.
_POPCOUNT = np.array([bin(m).count("1") for m in range(1 << MASK_BITS)], dtype=np.int64)


def tricks_played(states: np.ndarray | int, hand_size: int) -> np.ndarray | int:
    """Tricks completed before each packed state (0 at the first lead, ``hand_size`` at the end).

    Every hand holds ``hand_size - k`` dominoes at the start of trick k, and each play of the
    trick in progress removes one: held + plays so far = 4 * (hand_size - k).
    """
    s = np.asarray(states, dtype=np.int64)
    held = sum(_POPCOUNT[(s >> (MASK_BITS * p)) & 0x7F] for p in range(N_PLAYERS))
    plays = (s >> TRICK_LEN_SHIFT) & 3
    out = hand_size - (held + plays) // N_PLAYERS
    return int(out) if np.ndim(states) == 0 else out


def tricks_played_expr(hand_size: int, state: str = "state") -> pl.Expr:
    """:func:`tricks_played` as a polars expression, for lazy scans over whole shards."""
    held = (pl.col(state) & ((1 << (MASK_BITS * N_PLAYERS)) - 1)).bitwise_count_ones().cast(pl.Int64)
    return (hand_size - (held + trick_plays_expr(state)) // N_PLAYERS).alias("tricks played")


def trick_plays_expr(state: str = "state") -> pl.Expr:
    """Plays made so far in the trick in progress (0: the trick is about to be led)."""
    return ((pl.col(state) // (1 << TRICK_LEN_SHIFT)) & 3).alias("plays")


def sample_tricks_played(tokens: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The same count for tokenized samples: (N, 32, 12) tokens and (N, 32) masks (the evaluation's
    own per-depth count, :func:`forge.ml.tokenize.tricks_played_of`)."""
    return np.asarray(tricks_played_of(np.asarray(tokens), np.asarray(masks)), dtype=np.int64)


def mover_sign(player: int) -> int:
    """+1 where the mover's team maximises team-0 Q (team 0), -1 where it minimises (team 1)."""
    return 1 - 2 * team_of(player)


@dataclass(frozen=True)
class Board:
    """One position: the deal, the declaration, the packed state and the oracle's answer there."""

    hands: np.ndarray  # (4, n) domino ids
    decl_id: int
    state: int
    q: np.ndarray  # (7,) oracle Q in team-0 points, ILLEGAL_Q where illegal
    value: int  # oracle V in team-0 points

    @property
    def hand_size(self) -> int:
        return int(self.hands.shape[1])

    @property
    def leader(self) -> int:
        return int(unpack_state(self.state).leader)

    @property
    def mover(self) -> int:
        f = unpack_state(self.state)
        return (int(f.leader) + int(f.trick_len)) % N_PLAYERS

    @property
    def trick(self) -> list[tuple[int, int]]:
        """The current trick's plays so far: (player, domino id)."""
        f = unpack_state(self.state)
        out = []
        for k in range(int(f.trick_len)):
            p = (int(f.leader) + k) % N_PLAYERS
            out.append((p, int(self.hands[p, int(f.plays[k])])))
        return out

    @property
    def held(self) -> np.ndarray:
        """(4, n) booleans: still in the hand."""
        masks = unpack_state(self.state).masks
        return np.array([[bool(int(masks[p]) >> i & 1) for i in range(self.hand_size)] for p in range(N_PLAYERS)])

    @property
    def tricks_played(self) -> int:
        return tricks_played(self.state, self.hand_size)

    @property
    def legal(self) -> list[int]:
        return legal_moves(self.state, self.hands, self.decl_id)

    def mover_q(self) -> dict[int, int]:
        """Q of each legal move from the mover's side (higher is better for whoever moves)."""
        sign = mover_sign(self.mover)
        return {i: sign * int(self.q[i]) for i in self.legal}

    @property
    def best(self) -> list[int]:
        """The oracle's optimal moves (all of them, ties included)."""
        mq = self.mover_q()
        top = max(mq.values())
        return [i for i, v in mq.items() if v == top]

    def regret(self, move: int) -> int:
        """Points the mover gives up by playing ``move`` instead of a best move."""
        mq = self.mover_q()
        return max(mq.values()) - mq[move]


def board_at(solution: object, state: int) -> Board:
    """The board of ``state`` in a solved deal (a Solution, or ShardRows reading a shard)."""
    row = solution.lookup(state)
    return Board(solution.hands, int(solution.decl_id), int(state), np.asarray(solution.q_row(row)),
                 int(solution.value(row)))


def decode_sample(arrays: Mapping[str, np.ndarray], i: int) -> Board:
    """Rebuild the position of tokenized sample ``i`` (format v1) from its token arrays."""
    tokens, masks = np.asarray(arrays["tokens"][i]), np.asarray(arrays["masks"][i])
    mover = int(arrays["players"][i])
    decl_id = int(tokens[0, F_DECL])
    leader = (mover + int(tokens[0, F_REL_LEADER])) % N_PLAYERS
    slots = 1 + np.arange(N_PLAYERS * MAX_HAND).reshape(N_PLAYERS, MAX_HAND)
    hand_size = int(masks[slots[0]].sum())
    hands = np.array([[domino_id(int(tokens[t, F_HIGH]), int(tokens[t, F_LOW])) for t in slots[p, :hand_size]]
                      for p in range(N_PLAYERS)], dtype=np.int8)
    held = [sum(int(tokens[t, F_HELD]) << i for i, t in enumerate(slots[p, :hand_size])) for p in range(N_PLAYERS)]
    plays = []
    for k in range(int(masks[TRICK_TOKEN:].sum())):
        t = tokens[TRICK_TOKEN + k]
        p = (leader + k) % N_PLAYERS
        played = np.flatnonzero(hands[p] == domino_id(int(t[F_HIGH]), int(t[F_LOW])))
        if len(played) != 1:
            raise ValueError(f"sample {i}: trick play {k} is not a domino of player {p}'s hand")
        plays.append(int(played[0]))
    state = pack_state(held, leader, len(plays), plays + [NO_PLAY] * (3 - len(plays)))
    board = Board(hands, decl_id, state, np.asarray(arrays["qvals"][i]).astype(np.int64), int(arrays["values"][i]))
    if board.mover != mover:
        raise ValueError(f"sample {i}: tokens say player {board.mover} moves, the sample says {mover}")
    return board


def q_table(board: Board, model_move: int | None = None, model_probs: Sequence[float] | None = None,
            model_q: Sequence[float] | None = None) -> pl.DataFrame:
    """One row per legal move: oracle Q (team 0 and the mover's view), regret, marks; with the
    model's choice probability and predicted Q when given (mover's view, points)."""
    legal, best = board.legal, set(board.best)
    mq = board.mover_q()
    data: dict[str, list] = {
        "#": legal,
        "domino": [domino_name(int(board.hands[board.mover, i])) for i in legal],
        "Q team 0": [int(board.q[i]) for i in legal],
        "Q mover": [mq[i] for i in legal],
        "regret": [board.regret(i) for i in legal],
    }
    if model_probs is not None:
        data["model p"] = [round(float(model_probs[i]), 3) for i in legal]
    if model_q is not None:
        data["model Q"] = [round(float(model_q[i]), 1) for i in legal]
    marks = []
    for i in legal:
        tags = (["best"] if i in best else []) + (["model"] if i == model_move else [])
        marks.append(" + ".join(tags))
    data["mark"] = marks
    return pl.DataFrame(data)


def board_html(board: Board, title: str = "", model_move: int | None = None,
               model_probs: Sequence[float] | None = None, model_q: Sequence[float] | None = None,
               css_class: str = "forge-position") -> str:
    """The position drawn: header, four hands (legal moves outlined, best in blue, a model's
    mistaken move in red), the trick so far, and the Q table."""
    mover, legal, best = board.mover, board.legal, set(board.best)
    outlines = {(mover, i): GOOD for i in legal}
    outlines.update({(mover, i): BEST for i in best})
    if model_move is not None and model_move not in best:
        outlines[(mover, model_move)] = BAD
    mq = board.mover_q()
    captions = {(mover, i): f"#{i} Q{mq[i]:+d}" for i in legal}
    k = board.tricks_played
    header = (f"declaration <b>{escape(decl_label(board.decl_id))}</b> · trick {min(k + 1, board.hand_size)} of "
              f"{board.hand_size} · leader {escape(player_label(board.leader))} · "
              f"<b>{escape(player_label(mover))} to move</b> · V {board.value:+d} for team 0 "
              f"({mover_sign(mover) * board.value:+d} for the mover)")
    trick = board.trick
    trick_html = (tiles_row([d for _, d in trick], [f"P{p}" + (" led" if j == 0 else "") for j, (p, _) in
                                                     enumerate(trick)], board.decl_id)
                  if trick else "<i>no play yet: the mover leads</i>")
    model = ""
    if model_move is not None:
        lost = board.regret(model_move)
        verdict = "a best move" if lost == 0 else f"loses {lost} point{'s' if lost != 1 else ''}"
        model = (f'<div>model plays <b>#{model_move} {domino_name(int(board.hands[mover, model_move]))}</b> '
                 f'({verdict}); oracle best: {", ".join(f"#{i}" for i in sorted(best))}</div>')
    table = frame_html(q_table(board, model_move, model_probs, model_q), "forge-qtable",
                       ["#eef4fd" if i in best else None for i in legal])
    head = f"<div><b>{escape(title)}</b></div>" if title else ""
    hands = hands_html(board.hands, board.decl_id, held=board.held, mover=mover, outlines=outlines, captions=captions)
    return (f'<div class="{css_class}" style="font:13px/1.5 system-ui,sans-serif;border:1px solid #ddd;'
            f'border-radius:6px;padding:6px 10px;margin:6px 0">{head}<div>{header}</div>'
            f"{hands}"
            f'<div style="display:flex;align-items:center;gap:8px">trick so far: {trick_html}</div>'
            f"{model}{table}{legend()}</div>")

