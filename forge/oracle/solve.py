"""Exact solver: V and Q for every reachable state of one deal under one declaration.

The heavy lifting is in :mod:`forge.oracle.kernels`; this module builds the per-deal tables
from :mod:`forge.oracle.rules`, runs the passes level by level and returns sorted columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from forge.errors import InputError
from forge.oracle import kernels, rules
from forge.oracle.deal import check_hand_size, check_seed, deal
from forge.oracle.state import LEADER_SHIFT, NO_PLAYS, initial_state


@dataclass(frozen=True)
class Solution:
    """Every reachable state of a deal, sorted by packed state, with its V and Q row."""

    seed: int
    decl_id: int
    hand_size: int
    hands: np.ndarray  # (4, hand_size) domino ids
    state: np.ndarray  # int64 (N,), ascending
    V: np.ndarray  # int8 (N,)
    q: np.ndarray  # int8 (7, N): q[i] is the Q of the mover's local domino i, -128 illegal

    def __len__(self) -> int:
        return len(self.state)

    def lookup(self, state: int) -> int:
        """Row of ``state``; KeyError if it is not reachable."""
        row = int(np.searchsorted(self.state, state))
        if row >= len(self.state) or self.state[row] != state:
            raise KeyError(f"state {state:#x} is not reachable in this deal")
        return row

    def value(self, row: int) -> int:
        return int(self.V[row])

    def q_row(self, row: int) -> np.ndarray:
        """The mover's Q per local domino (int8, -128 illegal) at ``row``."""
        return self.q[:, row]

    def root(self) -> tuple[int, tuple[int, ...]]:
        """V and player 0's Q at the start of the hand."""
        row = self.lookup(initial_state(self.hand_size))
        return int(self.V[row]), tuple(int(x) for x in self.q[:, row])


def check_decl(decl_id: int) -> int:
    if isinstance(decl_id, bool) or not isinstance(decl_id, (int, np.integer)) or not 0 <= decl_id < rules.N_DECLS:
        raise InputError(f"declaration must be 0..{rules.N_DECLS - 1}, got {decl_id!r}")
    return int(decl_id)


def _mask_tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of n bits grouped by popcount (ascending), each mask's rank, and comb(n, c)."""
    by_pop = np.zeros((8, 35), dtype=np.int64)
    rank = np.zeros(kernels.MASK_VALUES, dtype=np.int64)
    fill = [0] * 8
    for m in range(1 << n):
        c = m.bit_count()
        by_pop[c, fill[c]] = m
        rank[m] = fill[c]
        fill[c] += 1
    return by_pop, rank, np.array([comb(n, c) for c in range(8)], dtype=np.int64)


def _deal_tables(hands: np.ndarray, decl_id: int) -> dict[str, np.ndarray]:
    """Rules specialised to this deal, indexed by (player, local index)."""
    n = hands.shape[1]
    bit = np.zeros((4, 7), dtype=np.int64)
    led = np.zeros((4, 7), dtype=np.int64)
    follow = np.zeros((4, rules.N_SUITS), dtype=np.int64)
    power = np.zeros((4, 7, rules.N_SUITS), dtype=np.int64)
    points = np.zeros((4, 7), dtype=np.int64)
    for p in range(4):
        for i in range(n):
            d = int(hands[p, i])
            bit[p, i] = 1 << (7 * p + i)
            led[p, i] = rules.LED_SUIT[decl_id, d]
            power[p, i] = rules.POWER[decl_id, d]
            points[p, i] = rules.COUNT[d]
            follow[p] |= rules.FOLLOWS[decl_id, d].astype(np.int64) << i
    return {"bit": bit, "led": led, "follow": follow, "power": power, "points": points}


def solve(seed: int, decl_id: int, hand_size: int = rules.MAX_HAND) -> Solution:
    """Solve one deal exactly; rows come out sorted by state without a global sort."""
    seed, decl_id, n = check_seed(seed), check_decl(decl_id), check_hand_size(hand_size)
    hands = deal(seed, n)
    t = _deal_tables(hands, decl_id)
    by_pop, rank, combs = _mask_tables(n)

    # Level k = tricks played; boundary states of level k hold c = n - k dominoes each.
    reach = [np.zeros(4 * int(combs[n - k]) ** 4, dtype=np.uint8) for k in range(n + 1)]
    reach[0][0] = 1  # every hand full (rank 0), player 0 leads
    hist = np.zeros((1 << n, kernels.N_HEADERS), dtype=np.int64)  # rows: player 3's trick-start mask
    for k in range(n):
        kernels.forward_level(
            n - k, by_pop, combs, rank, reach[k], reach[k + 1], hist,
            t["bit"], t["led"], t["follow"], t["power"],
        )
    terminal_header = NO_PLAYS >> LEADER_SHIFT  # a fresh trick's header, leader 0
    for leader in range(4):
        hist[0, terminal_header | leader] += int(reach[n][leader])

    per_header = hist.sum(axis=0)
    starts = np.cumsum(per_header) - per_header
    cursor = np.cumsum(hist, axis=0) - hist + starts
    total = int(per_header.sum())
    out_state = np.empty(total, dtype=np.int64)
    out_vq = np.empty((total, 8), dtype=np.int8)

    v_next = np.zeros(1, dtype=np.int8)
    for k in range(n, -1, -1):
        v_k = np.zeros(len(reach[k]), dtype=np.int8)
        kernels.backward_level(
            n - k, by_pop, combs, rank, reach[k], v_k, v_next, cursor, out_state, out_vq,
            t["bit"], t["led"], t["follow"], t["power"], t["points"],
        )
        v_next = v_k
    del reach, hist, cursor

    V = np.empty(total, dtype=np.int8)
    q = np.empty((7, total), dtype=np.int8)
    kernels.split_columns(out_vq, V, q)
    return Solution(seed, decl_id, n, hands, out_state, V, q)
