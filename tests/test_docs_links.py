"""The project's documents point only at files the project holds: a clone has nothing outside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "notebooks").glob("*.ipynb"))]


def test_every_relative_link_resolves_inside_the_project() -> None:
    for doc in DOCS:
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(REPO) and path.exists(), f"{doc.name}: dead link {target}"
        outside = re.findall(r"`(\.\./[^`]+)`", text)
        assert not outside, f"{doc.name} refers to files outside the project: {outside}"


def test_the_rules_are_the_projects_own() -> None:
    rules = (REPO / "docs" / "rules.md").read_text()
    for fact in ("14,675,274", "Q = [-38, +4, +4, -6, -38, +4, -18]", "seed_{seed:08d}_decl_{decl_id}.parquet",
                 "numpy.random.default_rng((global_seed, seed, decl_id))", "(32, 12)"):
        assert fact in rules
    assert "docs/rules.md" in (REPO / "README.md").read_text()
