"""Texas 42 rules as lookup tables: the single source of truth for every other module.

Everything here follows ``docs/rules.md``. The solver, the tokenizer and the play-out
evaluation import these tables; none of them restates a rule.
"""

from __future__ import annotations

import numpy as np

from forge.errors import InputError

N_DOMINOES = 28
N_PLAYERS = 4
MAX_HAND = 7
TOTAL_POINTS = 42
ILLEGAL_Q = -128

DECL_NAMES: tuple[str, ...] = (
    "blanks",
    "ones",
    "twos",
    "threes",
    "fours",
    "fives",
    "sixes",
    "doubles-trump",
    "doubles-suit",
    "notrump",
)
N_DECLS = len(DECL_NAMES)
DOUBLES_TRUMP, DOUBLES_SUIT, NOTRUMP = 7, 8, 9

#: Led-suit code for "the called suit"; 0..6 are pip suits.
CALLED = 7
N_SUITS = 8

#: Dominoes by id: id = high*(high+1)/2 + low.
DOMINOES: tuple[tuple[int, int], ...] = tuple((h, lo) for h in range(7) for lo in range(h + 1))


def domino_id(high: int, low: int) -> int:
    """Id of the domino showing ``high`` and ``low`` (in either order)."""
    if high < low:
        high, low = low, high
    return high * (high + 1) // 2 + low


def domino_name(d: int) -> str:
    h, lo = DOMINOES[d]
    return f"{h}-{lo}"


def count_points(d: int) -> int:
    h, lo = DOMINOES[d]
    if (h, lo) in ((5, 5), (6, 4)):
        return 10
    if h + lo == 5:
        return 5
    return 0


def parse_decl(text: str | int) -> int:
    """Declaration id from an id (0..9) or a name such as ``sixes`` or ``notrump``."""
    s = str(text).strip().lower()
    if s.isdigit() and 0 <= int(s) < N_DECLS:
        return int(s)
    if s in DECL_NAMES:
        return DECL_NAMES.index(s)
    choices = ", ".join(f"{i}={n}" for i, n in enumerate(DECL_NAMES))
    raise InputError(f"unknown declaration {text!r} (choose 0..9 or a name: {choices})")


def in_called_suit(d: int, decl: int) -> bool:
    h, lo = DOMINOES[d]
    if decl <= 6:
        return h == decl or lo == decl
    if decl in (DOUBLES_TRUMP, DOUBLES_SUIT):
        return h == lo
    return False


def has_trump_power(decl: int) -> bool:
    return decl <= DOUBLES_TRUMP


def led_suit(d: int, decl: int) -> int:
    """Suit a trick takes when ``d`` leads: CALLED, or the lead's high pip."""
    if decl != NOTRUMP and in_called_suit(d, decl):
        return CALLED
    return DOMINOES[d][0]


def follows(d: int, suit: int, decl: int) -> bool:
    """Whether ``d`` follows the led ``suit`` (CALLED or a pip 0..6)."""
    if suit == CALLED:
        return in_called_suit(d, decl)
    h, lo = DOMINOES[d]
    return (h == suit or lo == suit) and not in_called_suit(d, decl)


def _rank_in_pip_suit(d: int) -> int:
    h, lo = DOMINOES[d]
    return 50 if h == lo else h + lo


def trick_power(d: int, suit: int, decl: int) -> int:
    """Strength of ``d`` in a trick led in ``suit``: tier*100 + rank; higher wins, 0 never wins."""
    h, lo = DOMINOES[d]
    if has_trump_power(decl) and in_called_suit(d, decl):
        return 200 + (h if decl == DOUBLES_TRUMP else _rank_in_pip_suit(d))
    if follows(d, suit, decl):
        if suit == CALLED:  # the doubles suit of decl 8, ranked by pip value
            return 100 + h
        return 100 + _rank_in_pip_suit(d)
    return 0


def trump_rank(d: int, decl: int) -> int:
    """Position of ``d`` inside the called suit by trick rank (0 = highest); 7 outside it."""
    if decl == NOTRUMP or not in_called_suit(d, decl):
        return 7
    members = [x for x in range(N_DOMINOES) if in_called_suit(x, decl)]
    key = (lambda x: DOMINOES[x][0]) if decl in (DOUBLES_TRUMP, DOUBLES_SUIT) else _rank_in_pip_suit
    ordered = sorted(members, key=key, reverse=True)
    return ordered.index(d)


def _table(fn, *shape_ranges) -> np.ndarray:
    shape = tuple(len(r) for r in shape_ranges)
    out = np.zeros(shape, dtype=np.int16)
    for idx in np.ndindex(*shape):
        out[idx] = fn(*(r[i] for r, i in zip(shape_ranges, idx)))
    return out


_D, _S, _K = range(N_DOMINOES), range(N_SUITS), range(N_DECLS)

#: COUNT[d]: count points of domino d (0, 5 or 10).
COUNT = np.array([count_points(d) for d in _D], dtype=np.int8)
#: HIGH[d], LOW[d]: pips of domino d.
HIGH = np.array([DOMINOES[d][0] for d in _D], dtype=np.int8)
LOW = np.array([DOMINOES[d][1] for d in _D], dtype=np.int8)
#: LED_SUIT[decl, d]: suit led by d (0..6, or CALLED).
LED_SUIT = _table(lambda k, d: led_suit(d, k), _K, _D).astype(np.int8)
#: FOLLOWS[decl, d, suit]: 1 where d follows the led suit.
FOLLOWS = _table(lambda k, d, s: follows(d, s, k), _K, _D, _S).astype(np.int8)
#: POWER[decl, d, suit]: trick strength of d when ``suit`` was led.
POWER = _table(lambda k, d, s: trick_power(d, s, k), _K, _D, _S)
#: TRUMP_RANK[decl, d]: rank inside the called suit, 7 outside (and always 7 in notrump).
TRUMP_RANK = _table(lambda k, d: trump_rank(d, k), _K, _D).astype(np.int8)

for _t in (COUNT, HIGH, LOW, LED_SUIT, FOLLOWS, POWER, TRUMP_RANK):
    _t.setflags(write=False)


def team_of(player: int) -> int:
    return player & 1
