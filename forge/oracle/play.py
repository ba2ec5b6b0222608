"""Stepping a single game state by the rules, for play-outs and checks outside the solver.

The solver walks millions of states in bulk; this module moves one state at a time with plain
Python ints, the tables of ``forge.oracle.rules`` and the solver's own rule of play
(:func:`forge.oracle.kernels.legal_mask`), so its answers are easy to trust.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from forge.oracle.kernels import legal_mask
from forge.oracle.rules import COUNT, FOLLOWS, LED_SUIT, N_PLAYERS, POWER, team_of
from forge.oracle.state import ALL_HANDS, NO_PLAY, pack_state, unpack_state


class Step(NamedTuple):
    child: int  # packed state after the play
    points: int  # points the play scored, signed in team-0 units (0 unless it completed a trick)


def _held(mask: int, n: int) -> list[int]:
    return [i for i in range(n) if mask >> i & 1]


def _lead_suit(fields, hands: np.ndarray, decl_id: int) -> int:
    leader = int(fields.leader)
    return int(LED_SUIT[decl_id, hands[leader, int(fields.plays[0])]])


def legal_moves(state: int, hands: np.ndarray, decl_id: int) -> list[int]:
    """Local indices the player to move may play (the rule itself: :func:`kernels.legal_mask`)."""
    state = int(state)
    f = unpack_state(state)
    player = (int(f.leader) + int(f.trick_len)) % N_PLAYERS
    n = hands.shape[1]
    follow = 0
    if int(f.trick_len) > 0:
        suit = _lead_suit(f, hands, decl_id)
        follow = sum(1 << i for i in range(n) if FOLLOWS[decl_id, hands[player, i], suit])
    return _held(int(legal_mask(int(f.masks[player]), follow)), n)


def play(state: int, local_index: int, hands: np.ndarray, decl_id: int) -> Step:
    """Play the mover's local domino ``local_index``; resolve the trick if this is its 4th play."""
    state = int(state)
    f = unpack_state(state)
    leader, trick_len = int(f.leader), int(f.trick_len)
    player = (leader + trick_len) % N_PLAYERS
    masks = [int(m) for m in f.masks]
    if not masks[player] >> local_index & 1:
        raise ValueError(f"player {player} does not hold local domino {local_index}")
    masks[player] &= ~(1 << local_index)
    plays = [int(p) for p in f.plays]
    if trick_len < 3:
        plays[trick_len] = local_index
        return Step(pack_state(masks, leader, trick_len + 1, plays), 0)
    played = [int(hands[(leader + k) % N_PLAYERS, i]) for k, i in enumerate([*plays, local_index])]
    suit = int(LED_SUIT[decl_id, played[0]])
    power = [int(POWER[decl_id, d, suit]) for d in played]
    winner = (leader + power.index(max(power))) % N_PLAYERS  # index() keeps the earliest on ties
    points = 1 + sum(int(COUNT[d]) for d in played)
    child = pack_state(masks, winner, 0, (NO_PLAY, NO_PLAY, NO_PLAY))
    return Step(child, points if team_of(winner) == 0 else -points)


def child_state(state: int, local_index: int, hands: np.ndarray, decl_id: int) -> int:
    """Packed state after the mover plays ``local_index`` (spec: "Packed state")."""
    return play(state, local_index, hands, decl_id).child


def is_terminal(state: int) -> bool:
    return int(state) & ALL_HANDS == 0  # every hand mask empty
