"""Deterministic deals: the same seed gives the same hands on every machine (spec: "Deal")."""

from __future__ import annotations

import random

import numpy as np

from forge.errors import InputError
from forge.oracle.rules import MAX_HAND, N_DECLS, N_DOMINOES, N_PLAYERS


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_hand_size(hand_size: int) -> int:
    if not _is_int(hand_size) or not 1 <= hand_size <= MAX_HAND:
        raise InputError(f"hand size must be 1..{MAX_HAND}, got {hand_size!r}")
    return int(hand_size)


def check_seed(seed: int) -> int:
    if not _is_int(seed) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def train_decl(seed: int) -> int:
    """The declaration a training seed is played under: one per seed, cycling through all ten."""
    return check_seed(seed) % N_DECLS


def deal(seed: int, hand_size: int = MAX_HAND) -> np.ndarray:
    """Hands as a (4, hand_size) int8 array of domino ids; row p is player p's sorted hand."""
    seed, hand_size = check_seed(seed), check_hand_size(hand_size)
    ids = list(range(N_DOMINOES))
    random.Random(seed).shuffle(ids)
    hands = [sorted(ids[7 * p : 7 * p + hand_size]) for p in range(N_PLAYERS)]
    return np.array(hands, dtype=np.int8)
