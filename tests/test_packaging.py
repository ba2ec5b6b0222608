"""environment.yml and pyproject.toml must name the same dependencies (one list each, kept in step)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from helpers.notebooks import strip_all_as_committed

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


def _committed_notebooks() -> dict[str, str]:
    """Each tracked notebook as it would be committed (git's index), or as on disk outside a checkout."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout.strip():
        return {p.name: p.read_text() for p in sorted((REPO / "notebooks").glob("*.ipynb"))}
    out = {}
    for name in listed.stdout.split():
        shown = subprocess.run(["git", "show", f":{name}"], cwd=REPO, capture_output=True, text=True, check=True)
        out[name] = shown.stdout
    return out


def test_committed_notebooks_carry_no_outputs() -> None:
    """CI fails on a committed notebook with outputs or execution counts (the nbstripout filter strips them)."""
    import json

    books = _committed_notebooks()
    assert len(books) >= 5
    for name, text in books.items():
        nb = json.loads(text)
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, name
            assert cell.get("id"), f"{name}: every cell needs an id (JupyterLab adds one and marks it modified)"


def test_notebooks_are_filtered_by_nbstripout() -> None:
    attributes = (REPO / ".gitattributes").read_text()
    assert "notebooks/*.ipynb filter=nbstripout" in attributes


@pytest.mark.slow
def test_committed_notebooks_are_what_the_filter_writes() -> None:
    """A fresh clone that ran the README's main command (nbstripout --install, then the loop) shows
    a clean `git status` only if every committed notebook is already the clean filter's output."""
    committed = _committed_notebooks()
    for name, stripped in strip_all_as_committed(committed).items():
        assert stripped == committed[name], f"{name}: commit it through the filter (git add --renormalize)"


@pytest.mark.slow
def test_a_notebook_saved_by_jupyterlab_is_clean_for_git() -> None:
    """What JupyterLab writes on save (outputs, counts, its kernelspec name, the kernel's language_info
    with its Python version) strips back to the committed notebook: opening and saving a notebook
    leaves `git status` clean. (tests/test_browser.py saves them from a real JupyterLab too.)"""
    import json

    committed, saved = _committed_notebooks(), {}
    for name, text in committed.items():
        nb = json.loads(text)
        assert nb["metadata"] == {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                                 "name": "python3"}}, name  # as JupyterLab names it
        nb["metadata"]["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3},
                                           "file_extension": ".py", "mimetype": "text/x-python", "name": "python",
                                           "nbconvert_exporter": "python", "pygments_lexer": "ipython3",
                                           "version": "3.11.7"}
        for k, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                cell["execution_count"] = k
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran\n"]}]
        saved[name] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    for name, stripped in strip_all_as_committed(saved).items():
        assert stripped == committed[name], name


def test_the_presets_table_matches_the_preset_files() -> None:
    """docs/flywheel.md's presets table restates templates/presets: every value in it must be the file's."""
    from forge.flywheel.config import load_preset, preset_names

    lines = (REPO / "docs" / "flywheel.md").read_text().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| preset |"))
    keys = [c.strip().strip("`") for c in lines[head].strip("|").split("|")][1:]
    rows = {}
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(keys, cells[1:], strict=False))
    assert sorted(rows) == preset_names()
    for name, row in rows.items():
        cfg = load_preset(name).flat()
        checked = [k for k in row if k in cfg]
        assert len(checked) >= 8, row  # the table's keys are config fields, by name
        for key in checked:
            want = cfg[key]
            assert row[key] == want or _cell_value(row[key]) == want, (name, key, row[key], want)


def _cell_value(text: str) -> object:
    """A table cell as written for people: ``all`` or ``-`` is null, ``50,000`` an int, ``3e-4`` a float
    (a text value such as ``train_states: all`` matches as written)."""
    if text in ("all", "-"):
        return None
    plain = text.replace(",", "")
    for kind in (int, float):
        try:
            return kind(plain)
        except ValueError:
            pass
    return text


def test_committed_state_is_a_fresh_flywheel_of_its_preset() -> None:
    """A clone's first `flywheel --once` starts from state.yaml as committed: a fresh flywheel whose
    config is exactly its preset's today (a preset edit must be followed by `init --force` here)."""
    import shutil
    import tempfile

    from forge.flywheel.config import load_preset
    from forge.flywheel.state import load_state

    with tempfile.TemporaryDirectory() as fresh:
        shutil.copy(REPO / "state.yaml", Path(fresh) / "state.yaml")
        st = load_state(fresh)
    assert (st.status, st.current, st.history, st.next_seed, st.last_error) == ("ready", None, [], 0, None)
    assert st.config.to_dict() == load_preset(st.config.preset).to_dict()
