"""Shared fixtures: solved reduced deals are cheap; the full benchmark deal is solved once."""

from __future__ import annotations

import pytest

from forge.oracle.solve import Solution, solve


@pytest.fixture(scope="session")
def benchmark_deal() -> Solution:
    """Seed 0, sixes: the spec's known answer (about 15M states, ~1 s once compiled)."""
    return solve(0, 6)
