"""Hand-worked rules cases for ``forge.oracle.rules`` (spec: Dominoes, Deal, Declarations, tricks).

Expected outcomes are written out by hand from ``docs/rules.md``; the package is only
asked for the answer under test. Domino ids in this file come from the spec's formula via
:func:`d`, not from the package.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from reference_minimax import Rules

from forge.errors import InputError
from forge.oracle import rules
from forge.oracle.deal import deal, train_decl
from forge.oracle.rules import CALLED, COUNT, FOLLOWS, LED_SUIT, POWER, TRUMP_RANK

BLANKS, ONES, TWOS, THREES, FOURS, FIVES, SIXES = range(7)
DOUBLES_TRUMP, DOUBLES_SUIT, NOTRUMP = 7, 8, 9


def d(name: str) -> int:
    """Domino id from a name like "6-4", by the spec's formula high*(high+1)/2 + low."""
    a, b = (int(x) for x in name.split("-"))
    high, low = max(a, b), min(a, b)
    return high * (high + 1) // 2 + low


def trick_winner(decl: int, plays: list[str]) -> int:
    """Position (0 = leader) winning a trick, from the package's LED_SUIT and POWER tables.

    Higher power wins strictly, so on equal power the earlier play keeps the trick.
    """
    ids = [d(p) for p in plays]
    suit = LED_SUIT[decl, ids[0]]
    best = 0
    for pos in range(1, len(ids)):
        if POWER[decl, ids[pos], suit] > POWER[decl, ids[best], suit]:
            best = pos
    return best


# --- dominoes, counts, deal, declarations ---------------------------------------------------


def test_domino_ids_follow_the_spec_formula() -> None:
    """Ids are fixed by the file format: 0 = 0-0, 1 = 1-0, 2 = 1-1, 3 = 2-0, ..., 27 = 6-6."""
    assert rules.domino_id(0, 0) == 0
    assert rules.domino_id(1, 0) == 1
    assert rules.domino_id(1, 1) == 2
    assert rules.domino_id(2, 0) == 3
    assert rules.domino_id(5, 5) == 20
    assert rules.domino_id(6, 4) == 25
    assert rules.domino_id(6, 6) == 27
    assert rules.domino_id(0, 1) == 1, "pips in either order name the same domino"
    assert rules.domino_id(4, 6) == 25
    assert rules.DOMINOES[0] == (0, 0)
    assert rules.DOMINOES[3] == (2, 0)
    assert rules.DOMINOES[25] == (6, 4)
    assert rules.DOMINOES[27] == (6, 6)
    assert len(rules.DOMINOES) == 28
    assert rules.domino_name(25) == "6-4"
    assert int(rules.HIGH[25]) == 6 and int(rules.LOW[25]) == 4


def test_count_dominoes() -> None:
    """5-5 and 6-4 are worth 10; 5-0, 4-1, 3-2 are worth 5; every other domino 0."""
    expected = {d("5-5"): 10, d("6-4"): 10, d("5-0"): 5, d("4-1"): 5, d("3-2"): 5}
    for x in range(28):
        assert rules.count_points(x) == expected.get(x, 0), rules.domino_name(x)
        assert int(COUNT[x]) == expected.get(x, 0), rules.domino_name(x)
    assert d("6-6") not in expected and rules.count_points(d("6-6")) == 0


def test_points_in_a_hand_total_42() -> None:
    """7 tricks worth 1 each plus 35 count points make the 42 of a full hand."""
    assert int(COUNT.sum()) == 35
    assert 7 + int(COUNT.sum()) == rules.TOTAL_POINTS == 42


def test_deal_seed_0_matches_the_spec() -> None:
    """The spec's known answer: seed 0 gives player 0 0-0, 2-0, 2-2, 3-1, 4-0, 4-4, 5-2."""
    hands = deal(0)
    assert hands.shape == (4, 7)
    names = ["0-0", "2-0", "2-2", "3-1", "4-0", "4-4", "5-2"]
    assert hands[0].tolist() == [d(n) for n in names]


@pytest.mark.parametrize("hand_size", [1, 3, 7])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_deal_is_the_spec_shuffle(seed: int, hand_size: int) -> None:
    """Player p holds sorted(ids[7p : 7p+n]) of random.Random(seed).shuffle(range(28))."""
    ids = list(range(28))
    random.Random(seed).shuffle(ids)
    hands = deal(seed, hand_size)
    assert hands.dtype == np.int8 and hands.shape == (4, hand_size)
    for p in range(4):
        assert hands[p].tolist() == sorted(ids[7 * p : 7 * p + hand_size])


def test_deal_rejects_bad_hand_sizes() -> None:
    """Hand sizes outside 1..7 are not games the oracle can model."""
    for bad in (0, 8, -1):
        with pytest.raises(ValueError):
            deal(0, bad)


@pytest.mark.parametrize(
    ("text", "decl"),
    [
        ("blanks", 0),
        ("ones", 1),
        ("twos", 2),
        ("threes", 3),
        ("fours", 4),
        ("fives", 5),
        ("sixes", 6),
        ("doubles-trump", 7),
        ("doubles-suit", 8),
        ("notrump", 9),
        ("  Sixes ", 6),
        ("NOTRUMP", 9),
        ("0", 0),
        ("9", 9),
        (6, 6),
    ],
)
def test_parse_decl_accepts_ids_and_names(text: str | int, decl: int) -> None:
    """Declarations are given by id or by the spec's name (case and spaces forgiven)."""
    assert rules.parse_decl(text) == decl


@pytest.mark.parametrize("bad", ["seven", "double", "doubles", "10", "-1", "", 10, -1, "six"])
def test_parse_decl_rejects_unknown(bad: str | int) -> None:
    """Anything that is not an id 0..9 or one of the ten names is an error, not a guess."""
    with pytest.raises(InputError, match="unknown declaration"):
        rules.parse_decl(bad)


def test_training_seeds_cycle_through_the_declarations() -> None:
    assert [train_decl(s) for s in (0, 6, 9, 10, 23, 1_000_007)] == [0, 6, 9, 0, 3, 7]
    for bad in (-1, 2.0, True):
        with pytest.raises(InputError, match="seed"):
            train_decl(bad)


# --- led suit and following -------------------------------------------------------------------


def test_led_suit_is_called_or_high_pip() -> None:
    """A called-suit lead leads the called suit; anything else leads its HIGH pip."""
    assert LED_SUIT[SIXES, d("6-1")] == CALLED
    assert LED_SUIT[SIXES, d("4-3")] == 4
    assert LED_SUIT[SIXES, d("4-4")] == 4
    assert LED_SUIT[ONES, d("3-1")] == CALLED, "3-1 is a one: it leads trumps, not threes"
    assert LED_SUIT[BLANKS, d("6-0")] == CALLED
    assert LED_SUIT[BLANKS, d("2-1")] == 2
    assert LED_SUIT[DOUBLES_TRUMP, d("0-0")] == CALLED
    assert LED_SUIT[DOUBLES_TRUMP, d("6-5")] == 6
    assert LED_SUIT[DOUBLES_SUIT, d("2-2")] == CALLED
    assert LED_SUIT[DOUBLES_SUIT, d("6-5")] == 6
    assert LED_SUIT[NOTRUMP, d("3-1")] == 3
    assert LED_SUIT[NOTRUMP, d("6-6")] == 6
    assert LED_SUIT[NOTRUMP, d("0-0")] == 0
    assert rules.led_suit(d("5-2"), FIVES) == CALLED
    assert rules.led_suit(d("5-2"), TWOS) == CALLED
    assert rules.led_suit(d("5-2"), SIXES) == 5


def test_following_a_pip_suit() -> None:
    """A domino follows pip suit s if it shows s and is not in the called suit."""
    # Sixes, fours led: 4-1 and 4-4 follow; 6-4 is a trump so it does not; 5-3 does not show a 4.
    assert FOLLOWS[SIXES, d("4-1"), 4] == 1
    assert FOLLOWS[SIXES, d("4-4"), 4] == 1
    assert FOLLOWS[SIXES, d("6-4"), 4] == 0
    assert FOLLOWS[SIXES, d("5-3"), 4] == 0
    # Fives, fours led: 5-4 is a trump, not a four.
    assert FOLLOWS[FIVES, d("5-4"), 4] == 0
    assert FOLLOWS[FIVES, d("4-0"), 4] == 1
    # The LOW pip of a domino follows too: 4-2 follows twos in sixes.
    assert FOLLOWS[SIXES, d("4-2"), 2] == 1
    # Doubles-trump: 6-6 is a trump, so it does not follow sixes; 6-1 does.
    assert FOLLOWS[DOUBLES_TRUMP, d("6-6"), 6] == 0
    assert FOLLOWS[DOUBLES_TRUMP, d("6-1"), 6] == 1
    # Notrump: no called suit, so the double follows its pip.
    assert FOLLOWS[NOTRUMP, d("6-6"), 6] == 1
    assert FOLLOWS[NOTRUMP, d("3-1"), 1] == 1
    assert rules.follows(d("6-4"), 4, SIXES) is False
    assert rules.follows(d("4-1"), 4, SIXES) is True


def test_following_the_called_suit() -> None:
    """When trumps are led, only called-suit dominoes follow."""
    assert FOLLOWS[SIXES, d("6-0"), CALLED] == 1
    assert FOLLOWS[SIXES, d("6-6"), CALLED] == 1
    assert FOLLOWS[SIXES, d("5-5"), CALLED] == 0
    assert FOLLOWS[BLANKS, d("4-0"), CALLED] == 1
    assert FOLLOWS[BLANKS, d("4-1"), CALLED] == 0
    assert FOLLOWS[DOUBLES_TRUMP, d("3-3"), CALLED] == 1
    assert FOLLOWS[DOUBLES_TRUMP, d("3-2"), CALLED] == 0


def test_doubles_suit_following() -> None:
    """Decl 8: doubles are a suit of their own; they follow a double lead and no pip suit."""
    assert FOLLOWS[DOUBLES_SUIT, d("5-5"), CALLED] == 1
    assert FOLLOWS[DOUBLES_SUIT, d("0-0"), CALLED] == 1
    assert FOLLOWS[DOUBLES_SUIT, d("5-4"), CALLED] == 0
    assert FOLLOWS[DOUBLES_SUIT, d("5-5"), 5] == 0
    assert FOLLOWS[DOUBLES_SUIT, d("6-6"), 6] == 0
    assert FOLLOWS[DOUBLES_SUIT, d("6-1"), 6] == 1


def test_notrump_has_no_called_suit() -> None:
    """In notrump no domino is in the called suit, so nothing follows CALLED."""
    assert not FOLLOWS[NOTRUMP, :, CALLED].any()
    assert not any(rules.in_called_suit(x, NOTRUMP) for x in range(28))
    assert (LED_SUIT[NOTRUMP] != CALLED).all()


# --- winning tricks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decl", "plays", "winner"),
    [
        # Pip trump (sixes): a trump beats the led suit, even its double.
        (SIXES, ["5-3", "5-1", "6-0", "5-5"], 2),
        (SIXES, ["4-4", "6-0", "4-3", "4-1"], 1),
        # Pip suit: the double is highest, then pip sum.
        (SIXES, ["5-3", "5-1", "5-5", "4-2"], 2),
        (SIXES, ["5-3", "5-4", "2-1", "0-0"], 1),
        (SIXES, ["5-1", "5-0", "5-2", "5-3"], 3),
        # Led suit is the HIGH pip: twos do not follow a 4-2 lead in sixes, so the leader wins.
        (SIXES, ["4-2", "2-2", "2-1", "3-3"], 0),
        # Trumps led: the double of trump is highest, then pip sum.
        (SIXES, ["6-2", "6-5", "6-6", "6-0"], 2),
        (SIXES, ["6-2", "6-5", "6-3", "6-0"], 1),
        (SIXES, ["6-4", "5-5", "6-1", "4-4"], 0),
        (ONES, ["1-0", "6-1", "1-1", "5-1"], 2),
        # Blanks: 0-0 is the top trump, 6-0 the next; a blank trumps a double lead.
        (BLANKS, ["3-2", "6-0", "0-0", "3-3"], 2),
        (BLANKS, ["3-3", "1-0", "3-2", "3-1"], 1),
        # Several trumps played off-suit: highest trump wins.
        (FIVES, ["4-4", "5-0", "5-3", "4-0"], 2),
        # Nobody follows or trumps: the lead wins; off-suit dominoes tie at "never wins".
        (SIXES, ["1-0", "3-2", "4-3", "5-5"], 0),
        (SIXES, ["2-0", "5-5", "4-4", "3-3"], 0),
        # Doubles-trump: doubles ranked by pip value; any double beats the led suit.
        (DOUBLES_TRUMP, ["0-0", "3-3", "6-5", "1-1"], 1),
        (DOUBLES_TRUMP, ["6-5", "6-4", "1-1", "6-6"], 3),
        (DOUBLES_TRUMP, ["6-5", "6-4", "1-1", "6-3"], 2),
        (DOUBLES_TRUMP, ["6-5", "0-0", "6-4", "5-4"], 1),
        (DOUBLES_TRUMP, ["5-2", "5-3", "5-4", "2-2"], 3),
        (DOUBLES_TRUMP, ["5-2", "5-3", "5-4", "5-0"], 2),
        # Doubles-suit: a double lead is followed by doubles ranked by pip value.
        (DOUBLES_SUIT, ["2-2", "6-6", "5-5", "3-3"], 1),
        (DOUBLES_SUIT, ["2-2", "6-5", "0-0", "4-4"], 3),
        (DOUBLES_SUIT, ["2-2", "6-5", "0-0", "1-0"], 0),
        # ... and a double has no power on a pip lead: 6-6 does not follow sixes.
        (DOUBLES_SUIT, ["6-5", "6-6", "6-1", "2-2"], 0),
        (DOUBLES_SUIT, ["6-1", "6-6", "6-5", "5-5"], 2),
        # Notrump: led suit = high pip, the double is highest, no trumps at all.
        (NOTRUMP, ["6-2", "6-5", "6-6", "6-4"], 2),
        (NOTRUMP, ["3-1", "1-1", "3-3", "3-2"], 2),
        (NOTRUMP, ["3-1", "1-1", "1-0", "2-1"], 0),
        (NOTRUMP, ["1-0", "6-6", "5-5", "6-5"], 0),
        (NOTRUMP, ["0-0", "6-0", "1-0", "6-6"], 0),
        (NOTRUMP, ["4-0", "6-4", "1-0", "6-6"], 1),
    ],
)
def test_trick_winner(decl: int, plays: list[str], winner: int) -> None:
    """Hand-worked tricks: the winning position follows the spec's tiers and ranks."""
    assert trick_winner(decl, plays) == winner


def test_equal_power_earliest_play_wins() -> None:
    """Dominoes that neither follow nor trump share the lowest power, below any lead."""
    for decl, lead, offs in [
        (SIXES, "1-0", ["3-2", "4-3", "5-5"]),
        (DOUBLES_SUIT, "6-5", ["6-6", "1-1", "4-3"]),
        (NOTRUMP, "2-1", ["6-6", "5-4", "3-3"]),
    ]:
        suit = LED_SUIT[decl, d(lead)]
        powers = {int(POWER[decl, d(o), suit]) for o in offs}
        assert len(powers) == 1, "off-suit dominoes are all equal"
        assert powers.pop() < POWER[decl, d(lead), suit]
        # A late off-suit play never displaces an earlier one.
        assert trick_winner(decl, [lead, *offs]) == 0


@pytest.mark.parametrize("decl", [DOUBLES_SUIT, NOTRUMP])
def test_no_trump_power_off_suit_never_wins(decl: int) -> None:
    """Without trump power, a domino that does not follow is below every possible lead."""
    for lead in range(28):
        suit = LED_SUIT[decl, lead]
        for x in range(28):
            if not FOLLOWS[decl, x, suit]:
                assert POWER[decl, x, suit] < POWER[decl, lead, suit], (lead, x)


@pytest.mark.parametrize("decl", range(8))
def test_trump_beats_every_non_trump(decl: int) -> None:
    """With trump power, the lowest trump beats the best non-trump in any led suit."""
    trumps = [x for x in range(28) if rules.in_called_suit(x, decl)]
    others = [x for x in range(28) if x not in trumps]
    assert len(trumps) == 7
    for suit in range(7):
        low_trump = min(int(POWER[decl, t, suit]) for t in trumps)
        high_other = max(int(POWER[decl, o, suit]) for o in others)
        assert low_trump > high_other, suit


def test_trump_rank_positions() -> None:
    """Rank inside the called suit, 0 = highest trick rank, 7 = outside (tokenizer feature 4)."""
    assert TRUMP_RANK[SIXES, d("6-6")] == 0
    assert TRUMP_RANK[SIXES, d("6-5")] == 1
    assert TRUMP_RANK[SIXES, d("6-4")] == 2
    assert TRUMP_RANK[SIXES, d("6-0")] == 6
    assert TRUMP_RANK[SIXES, d("5-5")] == 7
    assert TRUMP_RANK[BLANKS, d("0-0")] == 0
    assert TRUMP_RANK[BLANKS, d("6-0")] == 1
    assert TRUMP_RANK[BLANKS, d("1-0")] == 6
    assert TRUMP_RANK[DOUBLES_TRUMP, d("6-6")] == 0
    assert TRUMP_RANK[DOUBLES_TRUMP, d("0-0")] == 6
    assert TRUMP_RANK[DOUBLES_TRUMP, d("6-5")] == 7
    assert TRUMP_RANK[DOUBLES_SUIT, d("5-5")] == 1
    assert (TRUMP_RANK[NOTRUMP] == 7).all()


# --- cross-check against the independent reference rules ------------------------------------------


@pytest.mark.parametrize("decl", range(10))
def test_tables_agree_with_reference_rules(decl: int) -> None:
    """Every lead, follower and two-domino trick agrees with tests/reference_minimax.Rules."""
    ref = Rules(decl)
    for lead in range(28):
        suit = ref.led(lead)
        assert LED_SUIT[decl, lead] == suit, lead
        for x in range(28):
            assert bool(FOLLOWS[decl, x, suit]) == ref.follows(x, suit), (lead, x)
            if x == lead:
                continue
            pkg_second_wins = POWER[decl, x, suit] > POWER[decl, lead, suit]
            assert pkg_second_wins == (ref.winner_position([lead, x]) == 1), (lead, x)
