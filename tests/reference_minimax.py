"""Independent brute-force Texas 42 oracle, written straight from ``docs/rules.md``.

It exists to check the fast solver, so it deliberately shares no code with the ``forge``
package: the deal, the rules, the packing and the search are all restated here, as plainly
as possible (memoized recursion over every reachable state), and only fit reduced games.
"""

from __future__ import annotations

import random

N_DOMINOES = 28
ILLEGAL = -128
NOT_YET = 7  # play field value "no play yet"
CALLED_SUIT = 7  # led-suit marker for "the called suit"; pip suits are 0..6
NOTRUMP_DECL = 9
DOUBLES_TRUMP_DECL = 7

#: PIPS[id] = (high, low), built from id = high*(high+1)/2 + low.
PIPS: dict[int, tuple[int, int]] = {
    high * (high + 1) // 2 + low: (high, low) for high in range(7) for low in range(high + 1)
}

Solution = dict[int, tuple[int, tuple[int, ...]]]


def count_of(d: int) -> int:
    """Count points: 5-5 and 6-4 are 10; 5-0, 4-1, 3-2 are 5; all else 0."""
    high, low = PIPS[d]
    if (high, low) in ((5, 5), (6, 4)):
        return 10
    if (high, low) in ((5, 0), (4, 1), (3, 2)):
        return 5
    return 0


def deal_hands(seed: int, hand_size: int) -> list[list[int]]:
    """Player p holds sorted(ids[7p : 7p + hand_size]) of a seeded shuffle of 0..27."""
    ids = list(range(N_DOMINOES))
    random.Random(seed).shuffle(ids)
    return [sorted(ids[7 * p : 7 * p + hand_size]) for p in range(4)]


def pack(masks: list[int] | tuple[int, ...], leader: int, trick_len: int, plays: tuple[int, ...]) -> int:
    """The spec's 41-bit layout: masks 0-27, leader 28-29, trick_len 30-31, plays 32-40."""
    s = masks[0] | masks[1] << 7 | masks[2] << 14 | masks[3] << 21
    s |= leader << 28 | trick_len << 30
    return s | plays[0] << 32 | plays[1] << 35 | plays[2] << 38


def unpack(s: int) -> tuple[list[int], int, int, tuple[int, int, int]]:
    """Inverse of :func:`pack`."""
    masks = [(s >> (7 * p)) & 0x7F for p in range(4)]
    plays = ((s >> 32) & 7, (s >> 35) & 7, (s >> 38) & 7)
    return masks, (s >> 28) & 3, (s >> 30) & 3, plays


class Rules:
    """Suit membership, following and trick ranking for one declaration."""

    def __init__(self, decl: int) -> None:
        if not 0 <= decl <= 9:
            raise ValueError(decl)
        self.decl = decl
        # Ranks are looked up on every trick the search resolves, so tabulate them once.
        self._rank = {(d, suit): self.rank(d, suit) for d in range(N_DOMINOES) for suit in range(8)}

    def in_called(self, d: int) -> bool:
        high, low = PIPS[d]
        if self.decl <= 6:
            return self.decl in (high, low)
        if self.decl in (7, 8):
            return high == low
        return False  # notrump has no called suit

    def led(self, lead: int) -> int:
        """Led suit of a trick whose first domino is ``lead``."""
        if self.decl != NOTRUMP_DECL and self.in_called(lead):
            return CALLED_SUIT
        return PIPS[lead][0]

    def follows(self, d: int, suit: int) -> bool:
        if suit == CALLED_SUIT:
            return self.in_called(d)
        return suit in PIPS[d] and not self.in_called(d)

    def rank(self, d: int, suit: int) -> tuple[int, int]:
        """(tier, rank inside the tier); compared as tuples, higher wins."""
        high, low = PIPS[d]
        pip_suit_rank = 100 if high == low else high + low  # double highest, then pip sum
        if self.decl <= DOUBLES_TRUMP_DECL and self.in_called(d):
            return (2, high if self.decl == DOUBLES_TRUMP_DECL else pip_suit_rank)
        if self.follows(d, suit):
            return (1, high if suit == CALLED_SUIT else pip_suit_rank)
        return (0, 0)

    def winner_position(self, trick: list[int]) -> int:
        """Position (0 = leader) of the winning play; ties go to the earlier play."""
        suit = self.led(trick[0])
        ranks = [self._rank[d, suit] for d in trick]
        best = 0
        for pos in range(1, len(trick)):
            if ranks[pos] > ranks[best]:
                best = pos
        return best


def reference_solve(seed: int, decl_id: int, hand_size: int) -> Solution:
    """Every reachable packed state (terminals too) -> (V, (q0..q6)), by plain minimax."""
    hands = deal_hands(seed, hand_size)
    rules = Rules(decl_id)
    memo: Solution = {}

    def value(s: int) -> int:
        hit = memo.get(s)
        if hit is not None:
            return hit[0]
        masks, leader, trick_len, plays = unpack(s)
        q = [ILLEGAL] * 7
        if not any(masks):
            assert trick_len == 0 and plays == (NOT_YET,) * 3, "terminal states start no trick"
            memo[s] = (0, tuple(q))
            return 0
        me = (leader + trick_len) % 4
        held = [i for i in range(hand_size) if masks[me] >> i & 1]
        legal = held
        if trick_len > 0:
            suit = rules.led(hands[leader][plays[0]])
            followers = [i for i in held if rules.follows(hands[me][i], suit)]
            if followers:
                legal = followers
        for i in legal:
            child_masks = list(masks)
            child_masks[me] &= ~(1 << i)
            if trick_len < 3:
                child_plays = list(plays)
                child_plays[trick_len] = i
                q[i] = value(pack(child_masks, leader, trick_len + 1, tuple(child_plays)))
            else:
                trick = [hands[(leader + k) % 4][plays[k]] for k in range(3)] + [hands[me][i]]
                winner = (leader + rules.winner_position(trick)) % 4
                points = 1 + sum(count_of(d) for d in trick)
                sign = 1 if winner % 2 == 0 else -1
                q[i] = sign * points + value(pack(child_masks, winner, 0, (NOT_YET,) * 3))
        legal_q = [q[i] for i in legal]
        v = max(legal_q) if me % 2 == 0 else min(legal_q)
        memo[s] = (v, tuple(q))
        return v

    full = (1 << hand_size) - 1
    value(pack([full] * 4, 0, 0, (NOT_YET,) * 3))  # recursion depth is at most 4 * hand_size + 1
    return memo
