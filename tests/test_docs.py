"""The README is the front door and docs/ the manual: every page is linked from the README, no relative
link (or image) in them or the notebooks points at a file that is not there or outside the project (a
clone has nothing beside it), and the rules are the project's own account."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: ``[text](target)`` and ``![alt](target)``; targets with a scheme (http:, mailto:) are not files.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documents() -> list[Path]:
    return [*pages(), *sorted((REPO / "notebooks").glob("*.ipynb"))]


def relative_links(page: Path) -> list[str]:
    targets = [m.group(1) for m in LINK.finditer(page.read_text())]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_every_relative_link_resolves_inside_the_project() -> None:
    broken = []
    for doc in documents():
        for target in relative_links(doc):
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not (path.is_relative_to(REPO) and path.exists()):
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
        broken += [f"{doc.relative_to(REPO)} names {x}" for x in re.findall(r"`(\.\./[^`]+)`", doc.read_text())]
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(REPO / t.split("#", 1)[0]).resolve() for t in relative_links(REPO / "README.md")}
    missing = [p.name for p in pages()[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_readme_stays_a_front_door() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("see [the rules](docs/nowhere.md), [a site](https://example.org) and ![x](pic.png)\n")
    assert relative_links(page) == ["docs/nowhere.md", "pic.png"]


def test_the_rules_are_the_projects_own() -> None:
    rules = (REPO / "docs" / "rules.md").read_text()
    for fact in ("14,675,274", "Q = [-38, +4, +4, -6, -38, +4, -18]", "seed_{seed:08d}_decl_{decl_id}.parquet",
                 "numpy.random.default_rng((global_seed, seed, decl_id))", "(32, 12)"):
        assert fact in rules
