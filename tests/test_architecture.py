"""The layer order oracle -> ml -> flywheel -> ui -> cli, no import cycles, the engine's own layers and no
drawing below the ui (import-linter contracts in pyproject.toml), checked on the real import graph of
the installed package; and the dependencies import-linter cannot see: module names in strings."""

from __future__ import annotations

import json
import re
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
    assert "6 kept, 0 broken" in res.stdout


def lint_copy(tmp_path: Path, appended: dict[str, str]) -> subprocess.CompletedProcess:
    """import-linter on a copy of the package with ``appended`` lines added to its files (by path under forge/)."""
    pkg = tmp_path / "forge"
    shutil.copytree(REPO / "forge", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, line in appended.items():
        with (pkg / rel).open("a") as fh:
            fh.write(f"\n{line}  # noqa: E402,F401\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    return subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})


def test_the_contracts_catch_an_upward_import(tmp_path: Path) -> None:
    """A copy of the package with one forbidden import (oracle -> cli) breaks the layers contract."""
    res = lint_copy(tmp_path, {"oracle/rules.py": "import forge.cli.flywheel"})
    assert res.returncode != 0 and "forge.oracle.rules -> forge.cli.flywheel" in res.stdout


def test_the_contracts_catch_an_engine_layer_and_a_drawing_import(tmp_path: Path) -> None:
    """The state's records reaching up into the stages, and the engine importing matplotlib, each break a contract."""
    res = lint_copy(tmp_path, {"flywheel/records.py": "import forge.flywheel.stages.train",
                               "flywheel/status.py": "import matplotlib"})
    out = " ".join(res.stdout.split())
    assert res.returncode != 0
    assert "inside the engine: the loop and its views -> the stages -> the state and its records BROKEN" in out
    assert "forge.flywheel.records -> forge.flywheel.stages.train" in out
    assert "the engine draws nothing: presentation libraries are forge.ui's BROKEN" in out
    assert "forge.flywheel.status -> matplotlib" in out


def test_the_light_core_contract_catches_a_lazy_heavy_import(tmp_path: Path) -> None:
    """A configuration module reaching torch, even from inside a function, breaks the light-core contract."""
    res = lint_copy(tmp_path, {"flywheel/config.py": "def _heavy():\n    import forge.ml.model"})
    out = " ".join(res.stdout.split())
    assert res.returncode != 0 and "a light core" in out and "BROKEN" in out
    assert "forge.flywheel.config -> forge.ml.model" in out


#: What must stay out of the light core's process: each costs seconds to import on 2 cores.
HEAVY = ("torch", "lightning", "pyarrow", "polars")


def test_status_and_the_cli_parser_load_no_heavy_library(tmp_path: Path) -> None:
    """`status` and `--help` start from these modules; the contract above cannot see runtime imports
    through the stage registry, so this runs both, on a real workspace, and lists what the process loaded."""
    code = ("import sys\nfrom forge.flywheel.config import load_preset\n"
            "from forge.flywheel.state import new_state, save_state\n"
            "save_state('.', new_state(load_preset('quick'), 'light'))\n"
            "import forge.cli.flywheel as cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert cli.main(['status']) == 0\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


#: Notebooks whose kernels never train or load a model: every loop iteration starts the first two, and
#: torch with Lightning is seconds of CPU per kernel on 2 cores.
LIGHT_NOTEBOOKS = ("01_generate", "02_tokenize")


def test_the_generate_and_tokenize_notebooks_load_neither_torch_nor_lightning() -> None:
    """Their import lines, as the notebooks have them, run in a fresh process that then lists what it loaded."""
    lines = [line for name in LIGHT_NOTEBOOKS
             for cell in json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"]
             if cell["cell_type"] == "code"
             for line in "".join(cell["source"]).splitlines() if line.startswith(("import ", "from "))]
    assert any("forge.ui.views" in line for line in lines), lines  # the views are what could pull torch in
    code = "\n".join(["import sys", *lines, "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"])
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


#: Where a ``forge.cli`` name may appear below the CLI layer: the commands' names as a person types them,
#: which messages show (text, never run).
CLI_NAMES_ALLOWED = {("forge/commandline.py", 'FLYWHEEL = "python -m forge.cli.flywheel"'),
                     ("forge/commandline.py", 'TRAIN = "python -m forge.cli.train"')}
CLI_NAME = re.compile(r"forge[./]cli\b")


def cli_names(root: Path) -> list[tuple[str, str]]:
    """(file, line) of every ``forge.cli`` name in the package outside forge/cli (code, strings, comments
    and docstrings alike) and in the notebooks' code cells."""
    found = []
    for path in sorted((root / "forge").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("forge/cli/"):
            continue
        found += [(rel, line.strip()) for line in path.read_text().splitlines() if CLI_NAME.search(line)]
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                found += [(path.name, line.strip()) for line in source.splitlines() if CLI_NAME.search(line)]
    return found


def test_no_layer_below_the_cli_names_it_even_in_a_string(tmp_path: Path) -> None:
    """import-linter sees imports only: ``-m forge.cli.x`` in an argument list or a runpy call would hide a
    dependency on the CLI layer from it (and from a reader)."""
    assert [hit for hit in cli_names(REPO) if hit not in CLI_NAMES_ALLOWED] == []
    # the check sees a hop of the kind it forbids
    shutil.copytree(REPO / "forge", tmp_path / "forge", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    hop = 'CMD = [sys.executable, "-m", "forge.cli.flywheel", "--once"]'
    with (tmp_path / "forge" / "flywheel" / "loop.py").open("a") as fh:
        fh.write(f"\n{hop}\n")
    assert cli_names(tmp_path) == [*sorted(CLI_NAMES_ALLOWED), ("forge/flywheel/loop.py", hop)]


def test_no_stage_is_special_cased_outside_its_module() -> None:
    """Every fact about a stage lives in its module under forge/flywheel/stages/ (the registry): no code
    branches on a stage's name."""
    hits = [(p.relative_to(REPO).as_posix(), n) for p in sorted((REPO / "forge").rglob("*.py"))
            for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bstage(\.name)? ==", line)]
    assert hits == []


def test_tests_share_code_only_through_helpers() -> None:
    """A test module never imports another test module or conftest: shared test code is tests/helpers."""
    tests = REPO / "tests"
    found = []
    for path in sorted(tests.rglob("*.py")):
        if "helpers" in path.relative_to(tests).parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import)\s+(conftest|test_\w+|tests\.|faults\.)", line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, found
