"""Reviewing iterations: one rule for "best" in every view, units and meanings, side-by-side comparison,
and the archive's notes and by-hand bookkeeping, on prepared histories (no training needed).

The prepared history is the case that went wrong before: iteration 1 was best when recorded
(``is_best``), iteration 2 beat it on val Q-gap (the primary metric) but got worse on another
tracked metric (flagged), iteration 3 is worse than 2 and flagged. Iteration 2 alone is the best,
highlighted green with its flag beside it, in the CLI, the panel, the archive index and the
comparison views.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from helpers.workspaces import reviewed_entry, reviewed_history, reviewed_workspace

from forge.errors import InputError
from forge.flywheel import by_hand, progress
from forge.flywheel.archive_header import HEADER_TAG, add_header
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import failing_cell
from forge.flywheel.stages.base import StageResult
from forge.flywheel.status import snapshot
from forge.ui.archive_index import write_index
from forge.ui.metric_info import column_info, info
from forge.ui.render import ROW_BEST, history_table, panel_html
from forge.ui.text import HISTORY_COLUMNS, format_archive, format_text
from forge.ui.views import compare


def rows_of(html: str) -> dict[int, str]:
    """Each history row's opening tag, by iteration (its first cell)."""
    return {int(m.group(2)): m.group(1) for m in re.finditer(r"(<tr[^>]*>)<td[^>]*>(\d+)</td>", html)}


def row_html(html: str, iteration: int) -> str:
    """The whole row of ``iteration``."""
    return re.search(rf"<tr[^>]*><td[^>]*>{iteration}</td>.*?</tr>", html, re.S).group(0)


# ---------------------------------------------------------------------------------------------- best


def test_the_best_iteration_is_the_one_with_the_best_primary_metric_and_keeps_its_flag(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    snap = snapshot(ws)
    assert snap.best_iteration == 2  # not 1, which was best when it was recorded

    # CLI status: one "*", on iteration 2, which also carries its "!"
    def marks(text: str) -> dict[int, str]:
        rows = [line.split() for line in text.splitlines() if re.match(r"\s*\d+\s+\d+\.\.\d+", line)]
        return {int(r[0]): r[-1] if set(r[-1]) <= {"*", "!"} else "" for r in rows}

    assert marks(format_text(snap)) == {1: "", 2: "*!", 3: "!"}
    assert marks(format_archive(ws)) == {1: "", 2: "*!", 3: "!"}  # CLI archive: the same marks

    # the panel's history: green row for 2 only, with the orange flag beside it
    html = history_table(snap.history, ws, ws / "notebooks", snap.best_iteration)
    rows = rows_of(html)
    assert 'class="forge-best forge-flagged"' in rows[2] and f"background:{ROW_BEST}" in rows[2]
    assert "forge-best" not in rows[1] and "forge-best" not in rows[3] and "forge-flagged" in rows[3]
    assert html.count('class="forge-best-badge"') == 1 and html.count('class="forge-flag"') == 2
    assert 'title="val value MAE 9.5000 points is worse than the best iteration&#x27;s (iteration 1' in html

    # the archive index: the same rule
    index = write_index(ws).read_text()
    rows = rows_of(index)
    assert "forge-best" in rows[2] and "forge-best" not in rows[1] and "forge-best" not in rows[3]
    assert index.count('class="forge-best-badge"') == 1


def test_a_single_iteration_is_the_best_and_none_is_marked_without_history(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "one", [reviewed_entry(1, 0.6, 8.0, True, [])])
    assert snapshot(ws).best_iteration == 1
    empty = reviewed_workspace(tmp_path / "none", [])
    snap = snapshot(empty)
    assert snap.best_iteration is None and "forge-best" not in panel_html(snap)


# ---------------------------------------------------------------------------------------------- units


def test_every_history_column_and_compared_metric_has_a_unit_and_a_meaning(tmp_path: Path) -> None:
    for label, path in HISTORY_COLUMNS:
        col = column_info(path)
        assert col.meaning, label
        if path[0] in ("val", "test", "playout", "delta_prev"):
            assert col.unit, label  # (durations: the column is named "minutes")
    for _split, name in compare.METRIC_ROWS:
        assert info(name).unit and info(name).meaning, name
    assert info("q_gap/depth3").label == "Q-gap after 3 tricks" and info("q_gap/notrump").unit == "points / move"
    assert info("playout_points_lost").unit == "points / hand"
    snap = snapshot(reviewed_workspace(tmp_path / "ws"))
    text = format_text(snap)
    assert "points / hand" in text and "play-out lost: golden test play-outs:" in text
    html = panel_html(snap)
    assert ">points / hand</span>" in html and "what the columns mean" in html


# ---------------------------------------------------------------------------------------------- links


def test_panel_links_resolve_from_the_notebook_and_a_snapshot_has_none(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    (ws / "archive" / "index.html").write_text("<html></html>")
    snap = snapshot(ws)
    live = panel_html(snap, base=ws / "notebooks")
    hrefs = re.findall(r'href="([^"]+)"', live)
    assert "../archive/iter-0002/03_train.html" in hrefs  # the HTML export, from notebooks/
    assert "../state.yaml" in hrefs and "../archive/index.html" in hrefs
    for href in hrefs:
        assert (ws / "notebooks" / href).resolve().exists(), href
    archived = panel_html(snap, base=ws / "notebooks", links=False)
    assert "href=" not in archived.split("forge-legend")[0] and "a snapshot, not kept up to date" in archived
    # a workspace file opens where the panel is (JupyterLab: a tab of the same JupyterLab), styled as a link
    anchors = re.findall(r"<a [^>]*>", live)
    assert anchors and all("text-decoration:underline" in a for a in anchors)
    assert not [a for a in anchors if 'target="_blank"' in a]  # no W&B URL here: every one is in the workspace


def test_every_archived_notebook_links_back_to_the_index(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="", traceback=[])]
    for where in (archive / "iter-0003" / "03_train.ipynb", archive / "iter-0003" / "attempt-2" / "03_train.ipynb"):
        where.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, where)
        add_header(where, archive, ["iteration 3", "stage train", "run by the loop"])
        add_header(where, archive, ["iteration 3", "stage train", "run by the loop"])  # again: still one note
        got = nbformat.read(where, as_version=4)
        notes = [c for c in got.cells if HEADER_TAG in c.metadata.get("tags", [])]
        assert len(notes) == 1 and got.cells[0] is notes[0]
        link = re.search(r"\]\(([^)]+)\)", notes[0].source).group(1)
        assert (where.parent / link).resolve() == (archive / "index.html").resolve()
        assert failing_cell(where)[0] == 1  # the note is not a cell of the source notebook


# ---------------------------------------------------------------------------------------------- by hand


def test_a_by_hand_result_names_its_notebook_only_where_the_kernel_knows_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(progress.LOOP_ENV, raising=False)
    monkeypatch.delenv(progress.SESSION_ENV, raising=False)
    assert (progress.ran_by(), progress.ran_in()) == ("hand", None)  # papermill, a script
    monkeypatch.setenv(progress.SESSION_ENV, str(tmp_path / "notebooks" / "03_train.ipynb"))  # JupyterLab
    assert progress.ran_in() == str((tmp_path / "notebooks" / "03_train.ipynb").resolve())
    monkeypatch.setenv(progress.LOOP_ENV, "1")
    assert (progress.ran_by(), progress.ran_in()) == ("loop", None)

    ws = Workspace.at(tmp_path)
    book = tmp_path / "notebooks" / "03_train.ipynb"
    result = StageResult(fingerprint="0123456789abcdef", ran_by="hand", ran_in=str(book), seconds=12.3)
    assert by_hand.user_notebook(ws, result.model_copy(update={"ran_in": None}))[0] is None
    assert "is gone" in by_hand.user_notebook(ws, result)[1]
    book.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("stages.train.run(ctx)")])
    nbformat.write(nb, book)  # opened, never run or saved since
    assert "does not show this result" in by_hand.user_notebook(ws, result)[1]
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<td>0123456789abcdef</td>"})]
    nbformat.write(nb, book)
    assert by_hand.user_notebook(ws, result) == (book, "")
    assert by_hand.took(result) == "the stage's work took 12.3 s"
    # recorded with who ran it and where, read back the same (and without them, as before: None)
    assert StageResult.from_json(result.to_json()) == result
    assert json.loads(result.to_json())["ran_in"] == str(book)
    assert StageResult.from_json('{"seconds": 1.0}').ran_by is None


# ---------------------------------------------------------------------------------------------- compare


def test_two_iterations_side_by_side(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    runs = compare.load_runs([ws])
    assert [r.label for r in runs] == ["ws · iteration 1", "ws · iteration 2 (best)", "ws · iteration 3"]
    a, b = compare.default_pair(runs)
    assert (a.iteration, b.iteration) == (2, 3)  # the best against the latest
    assert compare.pick(runs, "1").iteration == 1 and compare.pick(runs, "ws:3") is runs[2]
    with pytest.raises(InputError, match="ws:1, ws:2, ws:3"):
        compare.pick(runs, "7")

    frame = {r["metric"]: r for r in compare.metrics_frame(a, b).iter_rows(named=True)}
    gap = frame["val Q-gap"]
    assert (gap["A"], gap["B"], gap["better"], gap["unit"]) == (0.50, 0.55, "A", "points / move")
    assert gap["B − A"] == pytest.approx(0.05)
    assert frame["val accuracy"]["better"] == "B" and frame["play-out lost"]["better"] == "B"  # 9 < 10 points
    assert "val q_mae" not in frame and "val Q MAE" not in frame  # neither recorded it
    decl = compare.breakdown_frame(a, b, compare.DECL_ROWS)
    assert decl["metric"].to_list() == ["val Q-gap, sixes", "val Q-gap, notrump"]
    depth = {r["metric"]: r for r in compare.breakdown_frame(a, b, compare.DEPTH_ROWS).iter_rows(named=True)}
    assert depth["val Q-gap after 0 tricks"]["A"] == pytest.approx(1.5) and len(depth) == 2
    diff = compare.config_diff(a, b)
    assert diff.to_dicts() == [{"config": "lr", "A": "0.0003", "B": "0.001"}]
    html = compare.pair_html(a, b)
    for css in ("forge-compare-metrics", "forge-compare-decl", "forge-compare-depth", "forge-config-diff"):
        assert f'class="{css}"' in html
    fig = compare.breakdown_figure(a, b)
    assert [ax.get_title() for ax in fig.axes] == ["val Q-gap by declaration", "val Q-gap by trick depth"]
    trends = compare.trend_figure(runs)
    assert len([ax for ax in trends.axes if ax.lines]) == 6  # every tracked metric

    # with the states each figure is over (recorded since): an empty depth is shown, a thin one gets no verdict
    counted = []
    for i, gap in ((1, 0.6), (2, 0.5)):
        entry = reviewed_entry(i, gap, 8.0, i == 2, [])
        entry.val.update({"n/depth0": 0, "n/depth1": 5, "n/depth2": 400, "q_gap/depth2": gap, "n/notrump": 4000,
                          "n/sixes": 4000})
        del entry.val["q_gap/depth0"]
        counted.append(entry)
    a, b = compare.load_runs([reviewed_workspace(tmp_path / "counted", counted)])
    depth = {r["metric"]: r for r in compare.breakdown_frame(a, b, compare.DEPTH_ROWS).iter_rows(named=True)}
    assert list(depth) == ["val Q-gap after 0 tricks", "val Q-gap after 1 trick", "val Q-gap after 2 tricks"]
    assert depth["val Q-gap after 0 tricks"]["note"] == "A: no states; B: no states"
    assert (depth["val Q-gap after 1 trick"]["A states"], depth["val Q-gap after 1 trick"]["better"]) == (5, "")
    assert depth["val Q-gap after 1 trick"]["note"] == "A: too few states; B: too few states"
    assert (depth["val Q-gap after 2 tricks"]["B states"], depth["val Q-gap after 2 tricks"]["better"]) == (400, "B")
    fig = compare.breakdown_figure(a, b)
    assert "400" in [t.get_text() for t in fig.axes[1].texts] and any(p.get_hatch() for p in fig.axes[1].patches)
    page = compare.index_data([a, b])  # the archive index redraws a picked pair with the same counts
    assert page["runs"][0]["values"]["val"]["n/depth1"] == 5 and page["min_states"] == 100

    old_entry = reviewed_entry(1, 0.6, 8.0, True, [], depth=False)
    old = compare.load_runs([reviewed_workspace(tmp_path / "old", [old_entry])])[0]
    assert "not recorded for these iterations" in compare.pair_html(old, old)


def test_variants_run_side_by_side_in_two_workspaces(tmp_path: Path) -> None:
    first = reviewed_workspace(tmp_path / "base")
    second = reviewed_workspace(tmp_path / "lr-1e-3", [reviewed_entry(1, 0.45, 8.0, True, [], lr=1e-3, epochs=3),
                                              reviewed_entry(2, 0.47, 8.5, False, [], lr=1e-3, epochs=3)])
    runs = compare.load_runs([first, "../lr-1e-3"])  # the others relative to the first workspace
    assert compare.workspaces(runs) == ["base", "lr-1e-3"]
    a, b = compare.default_pair(runs)
    assert (a.workspace, a.iteration, b.workspace, b.iteration) == ("base", 2, "lr-1e-3", 1)  # each one's best
    assert compare.pick(runs, "lr-1e-3:2").root == second.resolve()
    summary = {r["workspace"]: r for r in compare.workspaces_frame(runs).iter_rows(named=True)}
    assert summary["base"]["best iteration"] == 2 and summary["lr-1e-3"]["best val Q-gap"] == 0.45
    assert summary["lr-1e-3"]["iterations"] == 2 and summary["base"]["latest iteration"] == 3
    # the latest iterations of both ran at lr 1e-3; only the epochs differ
    assert compare.variant_config(runs).to_dicts() == [{"config": "epochs", "base": "2", "lr-1e-3": "3"}]
    html = compare.workspaces_html(runs)
    assert 'class="forge-variant-config"' in html and "points / move" in html
    with pytest.raises(InputError, match="named twice"):
        compare.load_runs([first, first])


def test_the_index_compares_any_two_iterations(tmp_path: Path) -> None:
    ws = reviewed_workspace(tmp_path / "ws")
    page = write_index(ws).read_text()
    data = json.loads(re.search(r'id="forge-compare-data">(.*?)</script>', page, re.S).group(1))
    assert [r["iteration"] for r in data["runs"]] == [1, 2, 3]
    assert data["runs"][1]["values"]["val"]["q_gap/depth0"] == pytest.approx(1.5)
    assert data["runs"][2]["config"]["lr"] == 1e-3
    metrics = data["sections"][0]["rows"]
    assert {"label": "val Q-gap", "unit": "points / move", "better": "lower"}.items() <= metrics[0].items()
    # the default pair is drawn without script: the best (A) against the latest (B)
    assert re.search(r'<option value="1" selected>ws · iteration 2 \(best\)</option>', page)
    assert re.search(r'<option value="2" selected>ws · iteration 3</option>', page)
    assert 'class="forge-compare-metrics"' in page and 'class="forge-trends"' in page
    # links open in place (JupyterLab's HTML viewer blocks new windows) and resolve from archive/
    for href in re.findall(r'<a href="([^"#]+)"', page):
        assert (ws / "archive" / href).resolve().exists(), href
    assert 'target="_blank"' not in page.split("forge-history")[1].split("</table>")[0]
    assert "forge-by-hand" in row_html(page, 3) and "forge-by-hand" not in row_html(page, 2)


def test_flags_titles_and_the_history_legend_read_well(tmp_path: Path) -> None:
    from forge.ui.loop_hooks import page_title
    from forge.ui.metric_info import flag_text
    from forge.ui.plots import history_figure
    from forge.ui.render import mark_cell

    raw = "playout playout_points_lost 59.0000 is worse than the best (iteration 2: 41.0000)"
    readable = flag_text(raw)
    assert readable == ("play-out lost 59.0000 points / hand is worse than the best iteration's (iteration 2: "
                        "41.0000 points / hand; lower is better)")
    _, marks = mark_cell({"iteration": 3, "flags": [raw]}, None)
    assert "play-out lost 59.0000 points / hand" in marks and "playout_points_lost" not in marks
    assert flag_text("something else") == "something else"
    assert page_title(tmp_path / "archive" / "iter-0003" / "03_train.ipynb") == "03_train · iteration 3"
    # the legend lies outside both axes (inside, it covered the accuracy points)
    fig = history_figure([h.to_dict() for h in reviewed_history()], 2)
    fig.canvas.draw()
    legend = fig.axes[0].get_legend().get_window_extent()
    assert not any(legend.overlaps(ax.get_window_extent()) for ax in fig.axes)
    assert legend.y0 >= 0  # and inside the picture
