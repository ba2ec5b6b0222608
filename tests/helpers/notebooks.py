"""Notebooks as git stores them: through the nbstripout clean filter, configured as the README's main
command configures it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
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


def strip_all_as_committed(texts: dict[str, str]) -> dict[str, str]:
    """Each of ``texts`` (notebooks by name) as git's clean filter stores it, from ONE run of the filter's
    program: nbstripout given the notebooks as files with ``--textconv`` writes each one stripped to
    stdout, through the same function as the clean filter's stdin to stdout (one interpreter start and
    import, not one per notebook)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k, text in enumerate(texts.values()):
            files.append(Path(tmp) / f"{k}.ipynb")
            files[-1].write_text(text, encoding="utf-8")
        out = subprocess.run([sys.executable, "-m", "nbstripout", "--textconv", "--extra-keys", filter_extra_keys(),
                              *map(str, files)], capture_output=True, text=True, check=True).stdout
    stripped, at, decoder = [], 0, json.JSONDecoder()
    for _ in texts:  # one JSON document and its newline per notebook, in order
        _, end = decoder.raw_decode(out, at)
        end += out[end:end + 1] == "\n"
        stripped.append(out[at:end])
        at = end
    assert at == len(out), "nbstripout wrote more than one document per notebook"
    return dict(zip(texts, stripped, strict=True))


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
