"""The README is the front door and docs/ the manual: every page is linked from the README, and no
relative link (or image) in either points at a file that is not there."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: ``[text](target)`` and ``![alt](target)``; targets with a scheme (http:, mailto:) are not files.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    targets = [m.group(1) for m in LINK.finditer(page.read_text())]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_every_relative_link_resolves() -> None:
    broken = [f"{page.relative_to(REPO)} -> {target}" for page in pages() for target in relative_links(page)
              if not (page.parent / target.split("#", 1)[0]).exists()]
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
