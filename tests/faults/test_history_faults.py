"""history.jsonl under kills: a kill mid-append leaves the earlier entries intact and a torn last line
that readers ignore and the next writer cuts off (kept aside, and said); a kill between the append and
the state.yaml write leaves an iteration that load finishes recording instead of losing or redoing it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forge.flywheel.history import TORN_FILE
from forge.flywheel.paths import HISTORY_FILE
from forge.flywheel.state import StateStore, load_state, save_state

FIXTURE = Path(__file__).parents[1] / "fixtures" / "state-v2"

#: A process that records iteration 7 (the fixture's iteration in progress) and is killed at ``WHERE``.
RECORD = """
import dataclasses, os, sys
import forge.flywheel.state as S
where = sys.argv[1]
store = S.StateStore(".")
cur = store.state.current
entry = dataclasses.replace(store.state.history[-1], iteration=cur.iteration, seeds=cur.seeds,
                            seed_range=cur.seed_range, total_seeds=store.state.total_seeds + len(cur.seeds))
if where == "mid-append":
    write = os.write
    os.write = lambda fd, data: (write(fd, bytes(data[: len(data) // 2])), os._exit(9))
else:  # after the append, before state.yaml says so
    S.atomic_write_text = lambda *a, **k: os._exit(9)
with store.edit() as st:
    st.history.append(entry)
    S.finish_recording(st, entry)
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE / "state.yaml", tmp_path / "state.yaml")
    save_state(tmp_path, load_state(tmp_path))  # migrated: history.jsonl holds iterations 1..6
    return tmp_path


def killed(ws: Path, where: str) -> None:
    res = subprocess.run([sys.executable, "-c", RECORD, where], cwd=ws, capture_output=True, text=True)
    assert res.returncode == -9 or res.returncode == 9, res.stderr


def test_a_kill_mid_append_leaves_earlier_entries_and_a_torn_line_that_is_cut_off(ws: Path, capsys) -> None:
    before = list(load_state(ws).history)
    good = (ws / HISTORY_FILE).read_bytes()
    killed(ws, "mid-append")
    raw = (ws / HISTORY_FILE).read_bytes()
    assert raw.startswith(good) and len(raw) > len(good) and not raw.endswith(b"\n")  # torn, as a kill leaves it
    state = load_state(ws)  # a reader: ignores the torn line, changes nothing
    assert list(state.history) == before and state.current.iteration == 7
    assert (ws / HISTORY_FILE).read_bytes() == raw
    store = StateStore(ws)  # a writer (the loop, retry): cuts it off, keeps its bytes, says so
    assert "cut off a torn last line" in capsys.readouterr().err
    assert (ws / HISTORY_FILE).read_bytes() == good and (ws / TORN_FILE).read_bytes() == raw[len(good):] + b"\n"
    cur = store.state.current
    import dataclasses

    from forge.flywheel.state import finish_recording

    entry = dataclasses.replace(before[-1], iteration=7, seeds=cur.seeds, seed_range=cur.seed_range, total_seeds=28)
    with store.edit() as st:  # recording goes on as if nothing happened
        st.history.append(entry)
        finish_recording(st, entry)
    assert list(load_state(ws).history) == [*before, entry]


def test_a_kill_between_the_append_and_state_yaml_finishes_recording_on_load(ws: Path) -> None:
    before = list(load_state(ws).history)
    killed(ws, "after-append")
    state = load_state(ws)
    assert [h.iteration for h in state.history] == [1, 2, 3, 4, 5, 6, 7]
    assert list(state.history)[:6] == before
    assert state.current is None and state.status == "ready" and state.next_seed == 28 and state.iteration == 8
    assert state.total_seeds == 28
    store = StateStore(ws)
    with store.edit():
        pass  # the next save writes what load worked out
    again = load_state(ws)
    assert again.current is None and len(again.history) == 7 and again.history.summary.entries == 7
