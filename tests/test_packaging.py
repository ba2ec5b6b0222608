"""environment.yml and pyproject.toml must name the same dependencies (one list each, kept in step)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(d): d for d in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    conda = [d for d in env if isinstance(d, str)]
    pip = [d for block in env if isinstance(block, dict) for d in block.get("pip", [])]
    have = {_name(d): d.replace(" ", "") for d in conda + pip if _name(d) not in ("python", "pip")}
    assert set(have) == set(wanted)
    for name, spec in wanted.items():
        assert have[name].lower().replace("_", "-") == spec.replace(" ", "").lower().replace("_", "-"), name
