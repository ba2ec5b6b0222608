"""The layer order oracle -> ml -> flywheel -> ui -> cli, and no import cycles (import-linter contracts
in pyproject.toml), checked on the real import graph of the installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a test dependency: pip install -e '.[test]'"
    return subprocess.run([exe, "--no-cache", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    res = lint_imports()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout


def test_the_contracts_catch_an_upward_import(tmp_path: Path) -> None:
    """A copy of the package with one forbidden import (oracle -> cli) breaks the layers contract."""
    pkg = tmp_path / "forge"
    shutil.copytree(REPO / "forge", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with (pkg / "oracle" / "rules.py").open("a") as fh:
        fh.write("\nimport forge.cli.common  # noqa: E402,F401\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    res = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})
    assert res.returncode != 0 and "forge.oracle.rules -> forge.cli.common" in res.stdout
