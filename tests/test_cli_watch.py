"""The loop's terminal is never silent for a whole stage, and ends by saying where to look next."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.processes import wait_for

from forge.cli.watch import StageLines, next_steps
from forge.flywheel.config import load_preset
from forge.flywheel.paths import Workspace
from forge.flywheel.progress import StageProgress
from forge.flywheel.state import new_state, save_state


def test_a_running_stage_says_it_started_and_how_far_it_got(tmp_path: Path) -> None:
    save_state(tmp_path, new_state(load_preset("tiny"), "watch"))
    ws = Workspace.at(tmp_path)
    said: list[str] = []
    with StageLines(tmp_path, said.append, every=0.3, poll=0.05):
        with StageProgress(ws, 1, "generate") as progress:
            wait_for(lambda: any("generate  started" in s for s in said), 10, "the stage's first line")
            progress.update("solving deals", 2, 4, force=True)
            wait_for(lambda: any("solving deals, 2/4" in s for s in said), 10, "a progress line")
    assert sum("started" in s for s in said) == 1  # one start line per stage, then progress lines


def test_the_loop_ends_by_saying_where_to_look(tiny_runs) -> None:
    log = str(tiny_runs["log"])
    # a stage is announced before its result line. The watcher polls the stage's progress file once a
    # second, and that file lives only while the stage's work runs inside its kernel (its recorded
    # ``seconds``): a tiny stage's work can be over between two polls (train's took 0.6 s on a loaded
    # machine), so only a stage whose work outlived two polls must have been announced
    first = log[:log.index("iteration 1 done")]
    announced = [s for s in ("generate", "tokenize", "train", "evaluate") if f"  {s:9s} started" in first]
    results = Workspace.at(tiny_runs["ws"]).run_dir(1) / "results"
    for stage in ("generate", "tokenize", "train", "evaluate"):
        seconds = json.loads((results / f"{stage}.json").read_text())["seconds"]
        assert seconds < 2.5 or stage in announced, (stage, seconds, first)
    books = {"generate": "01_generate", "tokenize": "02_tokenize", "train": "03_train", "evaluate": "04_evaluate"}
    for stage in announced:
        assert first.index(f"  {stage:9s} started") < first.index(f"-> archive/iter-0001/{books[stage]}.ipynb")
    assert "look at:" in log and "python -m forge.cli.flywheel status" in log
    assert "archive/index.html" in log and "jupyter lab --config=jupyter_server_config.py --notebook-dir=" in log
    assert "00_status.ipynb" in log
    text = next_steps(tiny_runs["ws"])
    assert str(Path(tiny_runs["ws"]) / "archive" / "index.html") in text
