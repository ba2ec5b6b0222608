"""A recorded iteration viewed again (04_evaluate with the flywheel idle): never "stale", never "runs again".

keep_shards: golden deletes an iteration's training shards once it is recorded; that is by design,
so its stages stay done. Once a later iteration rebuilt the shared dataset, the recorded result is
shown as recorded and the message says what changed, not that anything would run again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.loop import copy_after_one

from forge.flywheel import stages
from forge.flywheel.stages import iteration_status


def test_the_last_recorded_iteration_stays_done_after_its_shards_are_released(tiny_runs, tmp_path, capsys) -> None:
    ws = copy_after_one(tiny_runs, tmp_path / "ws")  # the shared snapshot stays as it is for other tests
    ctx = stages.context(ws, 1, no_wandb=True, progress=False, stage="evaluate")
    assert ctx.is_past and not ctx.shard(ctx.seeds[0]).exists()  # released by keep_shards: golden
    assert {s.stage: s.done for s in iteration_status(ctx)} == dict.fromkeys(
        ("generate", "tokenize", "train", "evaluate"), True)
    result = stages.evaluate.run(ctx)
    assert result.val["q_gap"] == ctx.state.entry(1).val["q_gap"]
    assert "stale" not in capsys.readouterr().out


def test_an_older_recorded_iteration_says_what_moved_on_not_what_would_run(tiny_runs, tmp_path, capsys) -> None:
    ws = Path(shutil.copytree(tiny_runs["ws"], tmp_path / "ws", symlinks=True))  # two iterations: the dataset is
    # iteration 2's now
    ctx = stages.context(ws, 1, no_wandb=True, progress=False, stage="evaluate")
    stages.evaluate.run(ctx)
    said = capsys.readouterr().out
    assert "recorded in history" in said and "nothing runs again" in said
    assert "runs again first" not in said and "tokenize: the tokenized dataset was rebuilt since" in said
