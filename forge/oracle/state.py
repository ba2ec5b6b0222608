"""Packed int64 states (spec: "Packed state"). Works on Python ints and numpy arrays alike."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MASK_BITS = 7
HAND_MASK = (1 << MASK_BITS) - 1  # one player's remaining-hand mask
ALL_HANDS = (1 << (4 * MASK_BITS)) - 1  # the four masks together (bits 0-27)
LEADER_SHIFT = 28
TRICK_LEN_SHIFT = 30
SEAT_MASK = 0x3  # leader and trick length are 2-bit fields
PLAY_SHIFTS = (32, 35, 38)
PLAY_MASK = 0x7  # a play field is 3 bits
NO_PLAY = 7
#: The three play fields all NO_PLAY: what a fresh trick carries above leader and trick length.
NO_PLAYS = sum(NO_PLAY << sh for sh in PLAY_SHIFTS)
#: Bits a packed state may use (41); any bit above is not a state.
STATE_BITS = PLAY_SHIFTS[-1] + 3


class Unpacked(NamedTuple):
    masks: tuple  # four 7-bit remaining-hand masks (ints or arrays)
    leader: object
    trick_len: object
    plays: tuple  # local index played by leader, 2nd, 3rd; NO_PLAY where not yet


def pack_state(masks, leader, trick_len=0, plays=(NO_PLAY, NO_PLAY, NO_PLAY)):
    """Pack fields into the spec's int64 layout (Python ints, or numpy arrays that broadcast)."""
    fields = [(m, MASK_BITS * p) for p, m in enumerate(masks)]
    fields += [(leader, LEADER_SHIFT), (trick_len, TRICK_LEN_SHIFT), *zip(plays, PLAY_SHIFTS)]
    if any(isinstance(v, np.ndarray) for v, _ in fields):
        return sum(np.asarray(v, dtype=np.int64) << np.int64(sh) for v, sh in fields)
    return sum(int(v) << sh for v, sh in fields)


def unpack_state(state) -> Unpacked:
    masks = tuple((state >> (MASK_BITS * p)) & HAND_MASK for p in range(4))
    plays = tuple((state >> sh) & PLAY_MASK for sh in PLAY_SHIFTS)
    return Unpacked(masks, (state >> LEADER_SHIFT) & SEAT_MASK, (state >> TRICK_LEN_SHIFT) & SEAT_MASK, plays)


def mover(state):
    """Player to move: (leader + trick_len) % 4."""
    return (((state >> LEADER_SHIFT) & SEAT_MASK) + ((state >> TRICK_LEN_SHIFT) & SEAT_MASK)) & SEAT_MASK


def initial_state(hand_size: int = 7) -> int:
    full = (1 << hand_size) - 1
    return pack_state((full, full, full, full), 0, 0)
