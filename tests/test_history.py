"""The history in history.jsonl: old state.yaml files migrate keeping every value, lines are compact,
and the views' pages read only the lines they show."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from forge.flywheel.config import config_from_dict
from forge.flywheel.history import HistoryError
from forge.flywheel.paths import HISTORY_FILE
from forge.flywheel.state import load_state, save_state

FIXTURE = Path(__file__).parent / "fixtures" / "state-v2"


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE / "state.yaml", tmp_path / "state.yaml")
    return tmp_path


def test_a_version_2_state_migrates_and_keeps_every_value(v2: Path) -> None:
    original = yaml.safe_load((FIXTURE / "state.yaml").read_text())
    assert original["version"] == 2 and len(original["history"]) == 6
    state = load_state(v2)
    save_state(v2, state)
    assert (v2 / "state.yaml.v2.bak").read_bytes() == (FIXTURE / "state.yaml").read_bytes()
    written = yaml.safe_load((v2 / "state.yaml").read_text())
    assert written["version"] == 3 and written["history"]["entries"] == 6 and written["history"]["best_iteration"]
    again = load_state(v2)
    # every value of every entry; fields added since the fixture was recorded read as their defaults
    expected = [{"digests": {}, "usage": {}, **h, "config": config_from_dict(h["config"]).flat()}
                for h in original["history"]]
    assert [h.to_dict() for h in again.history] == expected
    assert dataclasses.asdict(again.current) == {"config": None, "digests": {}, "usage": {}, **original["current"]}
    for key in ("status", "next_seed", "next_action", "wandb", "config"):
        want = original[key] if key != "config" else config_from_dict(original[key]).to_dict()  # new fields: defaults
        assert json.dumps(getattr(again, key) if key != "config" else again.config.to_dict()) == json.dumps(want)
    assert again.config_of(3).training.lr == 0.0003
    assert again.config_of(4).training.lr == 0.0002 and again.config_of(4).training.epochs == 3
    # compact: the configuration once, then what changed; a delta_best equal to delta_prev not repeated
    lines = [json.loads(line) for line in (v2 / HISTORY_FILE).read_text().splitlines()]
    assert ["config" in line for line in lines] == [True] + [False] * 5
    assert [sorted(line.get("config_changes", {})) for line in lines] == [[], [], [], ["epochs", "lr"], [], []]
    assert ["provenance" in line or "provenance_changes" in line for line in lines] == [True] + [False] * 5
    assert "delta_best" not in lines[1]  # iteration 2: its best was iteration 1, its previous too
    # what is left is each iteration's own record (its metrics, mostly)
    assert (v2 / HISTORY_FILE).stat().st_size < 0.7 * len(yaml.safe_dump(original["history"], width=100))


def test_the_views_pages_read_only_the_lines_they_show(v2: Path) -> None:
    save_state(v2, load_state(v2))
    path = v2 / HISTORY_FILE
    lines = path.read_bytes().split(b"\n")
    lines[0] = b"{" + b"x" * (len(lines[0]) - 1)  # the first line unreadable, its length kept
    path.write_bytes(b"\n".join(lines))
    state = load_state(v2)
    assert len(state.history) == 6 and state.total_seeds == 24
    assert [h.iteration for h in state.history.tail(3)] == [4, 5, 6]
    assert state.history[-1].iteration == 6 and state.entry(3).iteration == 3
    assert state.config_of(3).training.lr == 0.0003
    assert state.history.best().iteration == state.history.summary.best_iteration
    from forge.flywheel.status import snapshot

    snap = snapshot(v2, page=5)
    assert [h["iteration"] for h in snap.history] == [2, 3, 4, 5, 6] and snap.history_count == 6
    with pytest.raises(HistoryError, match=r"history.jsonl line 1: not a JSON line"):
        list(state.history)  # what no page does


def test_pages_read_backwards_across_a_configuration_first_recorded_midway(v2: Path) -> None:
    """Entries migrated from version 1 have no configuration; the first one recorded after them does."""
    state = load_state(v2)
    entries = list(state.history)
    entries[:2] = [dataclasses.replace(h, config=None) for h in entries[:2]]
    state.history = entries
    save_state(v2, state)
    lines = [json.loads(line) for line in (v2 / HISTORY_FILE).read_text().splitlines()]
    assert "config" in lines[0] and "config" in lines[2]
    for n in range(1, 7):  # every page from the end, read backwards, is what a forward read gives
        assert load_state(v2).history.tail(n) == entries[-n:]
    assert list(load_state(v2).history) == entries


def test_the_heartbeat_never_rewrites_state_yaml(v2: Path) -> None:
    """A beat writes its own small file; state.yaml (and its history) stays as it was, and readers see the beat."""
    from forge.flywheel.lock import Heartbeat, heartbeat_age
    from forge.flywheel.paths import HEARTBEAT_FILE
    from forge.flywheel.state import StateStore, begin_iteration

    save_state(v2, load_state(v2))
    store = StateStore(v2)
    with store.edit() as st:
        st.current = None
        begin_iteration(st)
    before = (v2 / "state.yaml").stat()
    Heartbeat(store).beat()
    after = (v2 / "state.yaml").stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    beat = json.loads((v2 / HEARTBEAT_FILE).read_text())
    assert beat["iteration"] == 7 and beat["pid"] == store.state.current.pid
    seen = load_state(v2)
    assert seen.current.heartbeat == beat["at"] and heartbeat_age(seen, v2) < 60
