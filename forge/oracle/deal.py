"""Deterministic deals: the same seed gives the same hands on every machine (spec: "Deal")."""

from __future__ import annotations

import random

import numpy as np

from forge.oracle.rules import MAX_HAND, N_DOMINOES, N_PLAYERS


def check_hand_size(hand_size: int) -> int:
    if isinstance(hand_size, bool) or not isinstance(hand_size, (int, np.integer)) or not 1 <= hand_size <= MAX_HAND:
        raise ValueError(f"hand size must be 1..{MAX_HAND}, got {hand_size!r}")
    return int(hand_size)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def deal(seed: int, hand_size: int = MAX_HAND) -> np.ndarray:
    """Hands as a (4, hand_size) int8 array of domino ids; row p is player p's sorted hand."""
    seed, hand_size = check_seed(seed), check_hand_size(hand_size)
    ids = list(range(N_DOMINOES))
    random.Random(seed).shuffle(ids)
    hands = [sorted(ids[7 * p : 7 * p + hand_size]) for p in range(N_PLAYERS)]
    return np.array(hands, dtype=np.int8)
