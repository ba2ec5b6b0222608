"""Every notebook in notebooks/ executed headless (FORGE_HEADLESS=1), its static panel and sections checked.

The status notebook runs against the prepared failed workspace from its notebooks/ folder, so its
default root is found one level up; the stage notebooks run in order by hand on a copy of the shared
tiny run after iteration 1 (its iteration 2; conftest's ``stage_notebooks_by_hand``, made once per
test run and also recorded by the loop in tests/test_flywheel_loop.py), each showing the panel first
and then the work it did. On the loop's own run (``tiny_runs``' first iteration, ``--once`` from a
fresh ``init``) the archived notebooks must show the same sections, and ``05_explore`` (never run by
the loop) then runs there, its widgets falling back to their defaults.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers.by_hand_notebooks import STAGE_FILES
from helpers.loop import copy_after_one
from helpers.workspaces import FAILED, failed_workspace

from forge.flywheel.state import save_state

# one xdist worker runs them all: their module-scoped runs are made once, not once per worker
pytestmark = [pytest.mark.notebooks, pytest.mark.xdist_group("notebooks-headless")]

REPO = Path(__file__).resolve().parents[1]
BOOKS = REPO / "notebooks"
STAGE_BOOKS = STAGE_FILES
EXPLORE = "05_explore"
COMPARE = "06_compare"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: What each notebook must show after its stage: markers of its views (CSS classes in its HTML outputs).
SECTIONS = {
    "01_generate": ("forge-deal", "forge-qtable"),
    "02_tokenize": ("forge-decoded-sample", "forge-qtable"),
    "03_train": (),
    "04_evaluate": ("forge-comparison", "forge-blunders", "forge-playout", "forge-trick"),
    EXPLORE: ("forge-playout", "forge-trick", "forge-query"),
    COMPARE: ("forge-compare-workspaces", "forge-compare", "forge-compare-metrics", "forge-compare-decl",
              "forge-compare-depth", "forge-config-diff"),
}


class _ByClass(HTMLParser):
    """Text inside each element whose class starts with ``forge-`` (nested text included)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, str | None]] = []
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img"):
            return
        cls = dict(attrs).get("class") or ""
        name = cls if cls.startswith("forge-") else None
        if name:
            self.text.setdefault(name, "")
        self.open.append((tag, name))

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, name in self.open:
            if name:
                self.text[name] += data


def forge_fields(html: str) -> dict[str, str]:
    parser = _ByClass()
    parser.feed(html)
    return {k: " ".join(v.split()) for k, v in parser.text.items()}


def html_outputs(nb: Any) -> list[dict[str, Any]]:
    return [o["data"] for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]


def check_shows_the_work(name: str, nb: Any) -> None:
    """At least one figure, every section marker of ``name``, no error and no widget (headless)."""
    outputs = html_outputs(nb)
    assert any("image/png" in d for d in outputs), f"{name} shows no figure"
    panels = [d for d in outputs if 'class="forge-panel"' in d.get("text/html", "")]
    assert len(panels) == 1, f"{name} shows the status panel {len(panels)} times"
    shown = " ".join(d.get("text/html", "") for d in outputs)
    for marker in SECTIONS[name]:
        assert f'class="{marker}"' in shown, f"{name} does not show {marker}"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    assert not any(WIDGET_MIME in d for d in outputs)
    headings = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert len(headings) >= 3, f"{name} is not in sections (markdown headings)"


def panel_of(nb: Any) -> dict[str, str]:
    """The fields of the (first) panel the notebook displayed, from its static text/html."""
    panels = [d["text/html"] for d in html_outputs(nb) if 'class="forge-panel"' in d.get("text/html", "")]
    assert panels, "the notebook displayed no status panel"
    return forge_fields(panels[0])


def execute(book: Path, out: Path, cwd: Path, parameters: dict[str, Any] | None = None) -> Any:
    import papermill as pm

    from forge.flywheel.runner import ensure_kernel

    pm.execute_notebook(str(book), str(out), parameters=parameters or {}, kernel_name=ensure_kernel(),
                        cwd=str(cwd), progress_bar=False)
    return nbformat.read(out, as_version=4)


@pytest.fixture(scope="module")
def headless():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORGE_HEADLESS", "1")
        mp.setenv("TQDM_DISABLE", "1")
        yield


@pytest.fixture(scope="module")
def stage_runs(stage_notebooks_by_hand: dict) -> dict[str, Any]:
    """The four stage notebooks as executed by hand, in order, on one workspace (one iteration)."""
    return {name: nbformat.read(path, as_version=4) for name, path in stage_notebooks_by_hand["executed"].items()}


@pytest.fixture(scope="module")
def looped(tiny_runs, tmp_path_factory) -> Path:
    """One tiny iteration run by the loop from scratch, as a user would start it (`flywheel init`, then
    `flywheel --once`): the shared run's snapshot after iteration 1, copied."""
    return copy_after_one(tiny_runs, tmp_path_factory.mktemp("looped") / "ws")


def test_every_notebook_is_covered_and_committed_clean() -> None:
    names = sorted(p.stem for p in BOOKS.glob("*.ipynb"))
    assert names == ["00_status", *STAGE_BOOKS, EXPLORE, COMPARE]  # a new notebook needs a headless check here
    for name in names:
        nb = nbformat.read(BOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        ids = [c.get("id") for c in nb.cells]
        assert all(ids) and len(set(ids)) == len(ids), f"{name}: every cell needs its own id"
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, f"{name} is committed with outputs"
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "root =" in params[0].source
        if name in STAGE_BOOKS:
            assert "force = False" in params[0].source


def test_status_notebook_shows_the_prepared_state(headless, tmp_path: Path) -> None:
    ws = failed_workspace(tmp_path / "ws")
    (ws / "notebooks").mkdir()
    nb = execute(BOOKS / "00_status.ipynb", tmp_path / "00_status.out.ipynb", ws / "notebooks")
    fields = panel_of(nb)
    assert fields["forge-badge"] == FAILED["status"]
    assert fields["forge-iteration"] == FAILED["iteration"]
    assert fields["forge-stage"] == FAILED["stage"]
    assert fields["forge-error"] == FAILED["error"]
    assert fields["forge-total-seeds"] == "8"
    history = fields["forge-history"]
    for value in FAILED["accuracies"] + FAILED["q_gaps"]:
        assert value in history
    html = next(d["text/html"] for d in html_outputs(nb) if 'class="forge-panel"' in d.get("text/html", ""))
    assert f"group {FAILED['group']}" in html
    # root=None found the workspace above notebooks/; headless, the buttons become commands
    commands = [forge_fields(d["text/html"]) for d in html_outputs(nb) if "forge-commands" in d.get("text/html", "")]
    assert commands and f"python -m forge.cli.flywheel --once --root {ws.resolve()}" in commands[0]["forge-commands"]
    assert not any(WIDGET_MIME in d for d in html_outputs(nb))


def test_status_notebook_without_a_workspace_says_how_to_make_one(headless, tmp_path: Path) -> None:
    nb = execute(BOOKS / "00_status.ipynb", tmp_path / "out.ipynb", tmp_path)
    shown = " ".join(d.get("text/html", "") for d in html_outputs(nb))
    assert "no usable workspace" in shown and "state.yaml not found" in shown
    assert f"init --preset quick --wandb-group NAME --root {tmp_path.resolve()}" in shown


@pytest.mark.parametrize("name", STAGE_BOOKS)
def test_stage_notebook_shows_the_panel_first(stage_runs: dict[str, Any], name: str) -> None:
    nb = stage_runs[name]
    first_output = next(c for c in nb.cells if c.cell_type == "code" and c.outputs)
    first_html = [o["data"].get("text/html", "") for o in first_output.outputs if "data" in o]
    assert 'class="forge-panel"' in first_html[0]  # at the top, before the stage's work
    fields = panel_of(nb)
    # stepping through by hand records nothing in state.yaml, so every panel shows the same state: the
    # workspace after iteration 1, its iteration 2 next
    assert fields["forge-badge"] == "ready"
    assert fields["forge-iteration"] == "2" and fields["forge-total-seeds"] == "4"
    assert "python -m forge.cli.flywheel" in fields["forge-next"] and "runs iteration 2 (seeds 4..7)" in fields[
        "forge-next"]
    assert "forge-error" not in fields
    assert not any(WIDGET_MIME in d for d in html_outputs(nb))


@pytest.mark.parametrize("name", STAGE_BOOKS)
def test_stage_notebook_shows_its_work(stage_runs: dict[str, Any], name: str) -> None:
    check_shows_the_work(name, stage_runs[name])


def test_train_notebook_says_which_epoch_it_kept_and_how_fast_it_trained(stage_runs: dict[str, Any]) -> None:
    nb = stage_runs["03_train"]

    def shown(marker: str) -> str:
        cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
        return " ".join(o["data"].get("text/html", "") for o in cell.outputs if "data" in o)

    assert "lowest val Q-gap" in shown("kept_html") and "forge-val-note" in shown("kept_html")
    # the live curve watched the steps (headless it measures, it does not draw)
    assert "samples / s (training steps)" in shown("throughput_frame")


@pytest.mark.parametrize("name", STAGE_BOOKS)
def test_archived_notebooks_show_the_work(looped: Path, name: str) -> None:
    archived = looped / "archive" / "iter-0001" / f"{name}.ipynb"
    assert archived.is_file(), f"the loop archived no {archived.name}"
    check_shows_the_work(name, nbformat.read(archived, as_version=4))


def test_explore_notebook_runs_headless_with_its_parameters(headless, looped: Path, tmp_path: Path) -> None:
    deal = "seed_00000950_decl_3.parquet"  # a golden test deal of the tiny preset, not the default first one
    nb = execute(BOOKS / f"{EXPLORE}.ipynb", tmp_path / f"{EXPLORE}.ipynb", looped,
                 {"root": str(looped), "deal": deal, "moves": "1"})
    check_shows_the_work(EXPLORE, nb)
    shown = " ".join(d.get("text/html", "") for d in html_outputs(nb))
    assert "play-out: seed 950 · threes" in shown and "model (team 0) vs oracle (team 1)" in shown
    assert "after moves 1" in shown


def test_compare_notebook_runs_headless_on_two_workspaces(headless, looped: Path, tmp_path: Path) -> None:
    """06_compare on the looped workspace and a variant of it (its state.yaml with another learning rate:
    the comparison reads only the records)."""
    import dataclasses

    from forge.flywheel.config import config_from_dict
    from forge.flywheel.state import load_state

    variant = tmp_path / "variant"
    variant.mkdir()
    state = load_state(looped)
    state.config = config_from_dict({**state.config.to_dict(), "lr": 1e-3})
    state.history = [dataclasses.replace(h, config=state.config) if h.iteration == 1 else h for h in state.history]
    save_state(variant, state)
    nb = execute(BOOKS / f"{COMPARE}.ipynb", tmp_path / f"{COMPARE}.ipynb", looped,
                 {"root": str(looped), "others": [str(variant)], "a": "1", "b": "variant:1"})
    check_shows_the_work(COMPARE, nb)
    fields = forge_fields(" ".join(d.get("text/html", "") for d in html_outputs(nb)))
    assert "A: ws · iteration 1 (best)" in fields["forge-compare"] and "B: variant · iteration 1 (best)" in fields[
        "forge-compare"]
    assert fields["forge-config-diff"] == "configABlr0.00030.001"  # the one difference (cells: no spaces)
    assert "val Q-gap after 0 tricks" in fields["forge-compare-depth"]  # recorded by the evaluate stage
    assert "variant" in fields["forge-compare-workspaces"] and "lr" in fields["forge-variant-config"]
