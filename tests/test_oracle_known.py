"""The spec's known answer and the solver's structural guarantees on the full game."""

from __future__ import annotations

import numpy as np

from forge.oracle.deal import deal
from forge.oracle.rules import COUNT, domino_id
from forge.oracle.solve import solve
from forge.oracle.state import initial_state, unpack_state


def test_seed0_hand_matches_spec() -> None:
    names = [(0, 0), (2, 0), (2, 2), (3, 1), (4, 0), (4, 4), (5, 2)]
    assert deal(0)[0].tolist() == [domino_id(h, lo) for h, lo in names]


def test_known_answer_seed0_sixes(benchmark_deal) -> None:
    sol = benchmark_deal
    assert len(sol) == 14_675_274
    row = sol.lookup(initial_state())
    assert sol.V[row] == 4
    assert sol.q[:, row].tolist() == [-38, 4, 4, -6, -38, 4, -18]


def test_rows_sorted_unique_and_terminals_present(benchmark_deal) -> None:
    sol = benchmark_deal
    assert np.all(np.diff(sol.state) > 0)
    terminal = (sol.state & ((1 << 28) - 1)) == 0
    assert terminal.sum() >= 1
    assert np.all(sol.V[terminal] == 0) and np.all(sol.q[:, terminal] == -128)
    # the final point difference of every line of play has the parity of 42
    assert np.all((sol.V[terminal] % 2) == 0)


def test_trick_start_values_bounded_by_points_left(benchmark_deal) -> None:
    """At a trick start both teams split the points still to play: |V| <= R and V = R (mod 2)."""
    sol = benchmark_deal
    u = unpack_state(sol.state)
    starts = u.trick_len == 0
    hands = deal(0)
    left = np.zeros(len(sol.state), dtype=np.int64)
    for p in range(4):
        for i in range(7):
            held = (u.masks[p] >> i) & 1
            left += held * int(COUNT[hands[p, i]])
    left += np.bitwise_count(u.masks[0].astype(np.uint8)).astype(np.int64)  # one point per trick left
    v = sol.V[starts].astype(np.int64)
    assert np.all(np.abs(v) <= left[starts])
    assert np.all((v - left[starts]) % 2 == 0)
    assert sol.V.min() >= -42 and sol.V.max() <= 42


def test_solve_is_deterministic() -> None:
    a, b = solve(17, 3, 5), solve(17, 3, 5)
    assert a.state.tobytes() == b.state.tobytes()
    assert a.V.tobytes() == b.V.tobytes()
    assert a.q.tobytes() == b.q.tobytes()


def test_reduced_game_sizes() -> None:
    one = solve(5, 9, 1)
    # one trick: the start, three mid-trick states after forced plays, and one terminal
    assert len(one) == 5
    root = one.lookup(initial_state(1))
    assert one.q[0, root] == one.V[root] and abs(int(one.V[root])) >= 1
