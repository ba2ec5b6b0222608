"""The status snapshot's two faces: typed for the views (a misspelt field is an AttributeError, not a
blank), and ``status --json``'s plain data, whose keys scripts read (so its shape is pinned here);
and the history columns' metric labels, said once in the metric catalogue."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers.workspaces import failed_workspace

from forge.cli.flywheel import main
from forge.flywheel import progress, retention
from forge.flywheel.paths import Workspace
from forge.flywheel.records import Attempt
from forge.flywheel.state import load_state, save_state
from forge.flywheel.status import Snapshot, snapshot
from forge.ml.catalog import CATALOG
from forge.ui.text import HISTORY_COLUMNS, format_history, metric_column

#: ``status --json``'s keys, in order, at each level (the history's entries are the recorded ones).
JSON_KEYS = ["root", "status", "preset", "iteration", "total_seeds", "current", "stages", "running", "last_error",
             "next_action", "wandb", "primary_metric", "best_iteration", "history", "history_count", "disk",
             "disk_growth"]
CURRENT_KEYS = ["iteration", "seeds", "seed_range", "stage", "stages_completed", "progress", "started_at", "pid",
                "host", "heartbeat", "heartbeat_age_s", "notebooks", "modified", "by_hand", "attempts", "timings",
                "usage"]
ATTEMPT_KEYS = ["number", "stage", "error", "cell", "notebook", "at"]
STAGE_KEYS = ["stage", "state", "reasons", "fingerprint"]
RUNNING_KEYS = ["iteration", "stage", "by", "pid", "host", "started_at", "started", "phase", "done", "total",
                "detail", "finished_at", "ok", "updated_at", "elapsed_s", "active", "log_tail"]
#: What changes between two reads of the same workspace (clocks).
VOLATILE = {"heartbeat_age_s", "elapsed_s"}


def _steady(data: object) -> object:
    if isinstance(data, dict):
        return {k: _steady(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [_steady(v) for v in data]
    return data


def test_status_json_is_the_snapshots_plain_data_with_the_same_keys(tmp_path: Path, capsys) -> None:
    ws = failed_workspace(tmp_path / "ws")
    st = load_state(ws)
    st.current.attempts = [Attempt(number=1, stage="train", error="ValueError: boom", at="2025-01-01T00:05:00+00:00",
                                   cell=3, notebook="archive/iter-0003/attempt-1/03_train.ipynb")]
    save_state(ws, st)
    retention.record_disk(Workspace.at(ws), 1, total=100 * 2**20, at=1_000_000.0)
    retention.record_disk(Workspace.at(ws), 2, total=101 * 2**20, at=1_000_000.0 + 3600)
    with progress.StageProgress(Workspace.at(ws), 3, "train") as p:  # a stage running now (this process)
        p.update(phase="training", done=3, total=10, detail="loss 1.0", force=True)
        snap = snapshot(ws, disk=True)
        assert main(["--root", str(ws), "status", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
    data = snap.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON data: lists, not tuples; nothing needs default=str
    assert _steady(printed) == _steady(data)  # `status --json` prints it
    assert list(data) == JSON_KEYS and list(data["current"]) == CURRENT_KEYS
    assert [list(a) for a in data["current"]["attempts"]] == [ATTEMPT_KEYS]
    assert data["current"]["attempts"][0]["cell"] == 3 and data["current"]["seed_range"] == [8, 12]
    assert data["current"]["progress"] == "2/4 stages" and data["current"]["stage"] == "train"
    assert all(list(s) == STAGE_KEYS for s in data["stages"]) and len(data["stages"]) == 4
    assert list(data["running"]) == RUNNING_KEYS
    assert data["running"]["active"] is True and data["running"]["done"] == 3 and data["running"]["by"] == "hand"
    assert data["disk_growth"]["rate"]["bytes_per_iteration"] == pytest.approx(2**20)
    assert data["history"] == [h.to_dict() for h in st.history] and data["history_count"] == 2
    # the views read attributes: a misspelt one fails loudly, and a view cannot change what it shows
    assert snap.current.attempts[0].notebook.endswith("03_train.ipynb") and snap.running.phase == "training"
    with pytest.raises(AttributeError):
        _ = snap.current.stages  # noqa: B018 - the field is stages_completed
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.status = "ready"  # type: ignore[misc]
    assert isinstance(snap, Snapshot)


def test_history_columns_take_their_metric_labels_from_the_catalogue(monkeypatch) -> None:
    prefixes = {"val": "", "playout": "", "test": "test ", "delta_prev": "Δ "}
    metric_columns = [(label, path) for label, path in HISTORY_COLUMNS if path[0] in prefixes]
    assert len(metric_columns) >= 9  # accuracy, Q-gap, ..., test Q-gap, Δ Q-gap
    for label, (split, name) in metric_columns:
        assert label == prefixes[split] + CATALOG[name].label
    header = format_history([]).splitlines()[0].split("  ")
    assert CATALOG["blunder_rate"].label in [h.strip() for h in header]
    # a label changed in the catalogue is the column's label
    monkeypatch.setitem(CATALOG, "q_gap", dataclasses.replace(CATALOG["q_gap"], label="regret"))
    assert metric_column("test", "q_gap") == ("test regret", ("test", "q_gap"))
    assert metric_column("delta_prev", "q_gap")[0] == "Δ regret"
