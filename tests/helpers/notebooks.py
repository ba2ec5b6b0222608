"""Notebooks as git stores them: through the nbstripout clean filter, configured as the README's main
command configures it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def filter_extra_keys() -> str:
    """The metadata the README's main command has the nbstripout filter strip besides its defaults."""
    main = next(line for line in (REPO / "README.md").read_text().splitlines() if "nbstripout --install" in line)
    found = re.search(r"git config filter\.nbstripout\.extrakeys (\S+)", main)
    assert found, "the README's main command must configure the filter's extra keys"
    return found.group(1)


def strip_as_committed(text: str) -> str:
    """A notebook as git's clean filter stores it, configured as the README's main command does."""
    return subprocess.run([sys.executable, "-m", "nbstripout", "--extra-keys", filter_extra_keys()], input=text,
                          capture_output=True, text=True, check=True).stdout


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def repo_with_filter(root: Path) -> Path:
    """A repository whose notebooks git filters as the README's main command sets it up."""
    root.mkdir()
    git(root, "init", "-q")
    for key, value in (("user.email", "t@example.com"), ("user.name", "t"),
                       ("filter.nbstripout.clean", f"{sys.executable} -m nbstripout"),
                       ("filter.nbstripout.smudge", "cat"), ("filter.nbstripout.required", "true"),
                       ("filter.nbstripout.extrakeys", filter_extra_keys())):
        git(root, "config", key, value)
    shutil.copy(REPO / ".gitattributes", root / ".gitattributes")
    return root
