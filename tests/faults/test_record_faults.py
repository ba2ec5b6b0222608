"""A record nobody can quietly falsify (issue 24, part 4): each kind of silent wrong record the
fault-injection round found, reproduced, and the recoveries and bounds it listed.

Kinds: (1) a config edit mid-run used but not recorded; (2) golden shards with changed values kept;
(3) other starting weights recorded as "started from iteration N"; (4) a stage result edited before
it is recorded; (5) token arrays changed together with their manifest; (6) a trained seed put into
a golden set; (7) seeds trained twice counted twice. The slow ones run a real tiny iteration on a
copy of the ``tiny_runs`` workspace and compare with its untampered reference run; its loop runs in
this process, its stages in-process (tests/helpers/inprocess.py): what is faulted here is the record,
not how a notebook runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.inprocess import run_in_process
from helpers.loop import cli, edit_state, one_line_error, state
from helpers.numerics import assert_same_metrics
from helpers.workspaces import tiny_workspace

from forge.flywheel.config import ConfigError, config_from_dict, load_preset
from forge.flywheel.context import context
from forge.flywheel.history import seeds_counted
from forge.flywheel.lock import Heartbeat
from forge.flywheel.loop import Loop, _history_entry, retry, run_loop
from forge.flywheel.paths import Workspace
from forge.flywheel.records import Current
from forge.flywheel.state import BrokenStateFile, StateStore, begin_iteration, load_state, save_state

STAGES = ("generate", "tokenize", "train", "evaluate")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tiny_workspace(tmp_path, "records")


def copy_of(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(src, dest, symlinks=True)
    return dest


def rewind(ws: Path, seeds: list[int] | None = None) -> dict:
    """The state just before the loop recorded the last iteration (all its stages finished): its history
    entry back into ``current``, as a loop killed at that moment leaves it. Returns the removed entry."""
    st = load_state(ws)
    entries = list(st.history)
    entry = entries[-1]
    cur = Current(iteration=entry.iteration, seeds=seeds or entry.seeds, seed_range=entry.seed_range,
                  stages_completed=list(STAGES), started_at=entry.started_at, timings=dict(entry.timings),
                  notebooks=dict(entry.notebooks), fingerprints=dict(entry.fingerprints),
                  provenance=dict(entry.provenance))
    if entry.digests:  # what the loop vouched for when the stages finished
        cur.digests = {k: v for k, v in entry.digests.items() if k.startswith("result.")}
        cur.config = entry.config
    st.history = entries[:-1]  # written whole by the save, as the history before that iteration
    st.current, st.status = cur, "ready"
    save_state(ws, st)
    return entry.to_dict()


# ---------------------------------------------------------------------------------------------- kind 1


def test_kind1_a_config_edit_mid_run_is_recorded_as_used_and_applies_next_iteration(ws: Path) -> None:
    """The stage (a notebook in the loop's kernel: a fresh load of state.yaml) reads the config the
    record says the iteration ran with; the edit is kept, applies from the next iteration, and is said."""
    store = StateStore(ws)
    with store.edit() as st:
        begin_iteration(st)
    edit_state(ws, lambda d: d["config"].update(lr=0.002))  # a person edits state.yaml while a stage runs
    used = context(ws).config.training.lr  # what the stage reads
    Heartbeat(store).beat()  # the heartbeat writes its own file, never state.yaml: the edit stays as written
    with store.edit():  # the loop's next write of state.yaml (a stage boundary) notices it
        pass
    on_disk = load_state(ws)
    assert on_disk.config_of(on_disk.iteration).training.lr == used == 3e-4  # the record and the stage agree
    assert context(ws).config.training.lr == used  # a stage after the heartbeat too
    assert on_disk.config.training.lr == 0.002  # the edit is not lost: it applies from the next iteration
    notes = store.take_notices()
    assert len(notes) == 1 and "lr 0.0003 -> 0.002" in notes[0] and "applies from iteration 2" in notes[0]
    with store.edit() as st:
        st.current = None
        begin_iteration(st, [4, 5, 6, 7])
    assert context(ws).config.training.lr == 0.002


# ---------------------------------------------------------------------------------------------- kind 2


@pytest.mark.slow
def test_kind2_golden_shards_with_changed_values_are_solved_again(tiny_runs, tmp_path: Path) -> None:
    """A golden val shard's Q values changed so that every legal move is optimal (each legal Q set to V),
    its parquet metadata kept: the shard still verifies (V is the best Q, illegal moves hold -128), so only
    its pinned digest tells. The next iteration solves it again and scores what the untampered run did."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forge.oracle.rules import ILLEGAL_Q
    from forge.oracle.shard import Q_COLUMNS, WRITE_OPTIONS
    from forge.oracle.verify import verify_shard

    ws = copy_of(tiny_runs["after_one"], tmp_path)
    shard = ws / "data" / "golden-h3" / "seed_00000900_decl_0.parquet"
    table = pq.read_table(shard)
    v = table.column("V").to_numpy()
    forged = table
    for name in Q_COLUMNS:
        q = table.column(name).to_numpy()
        forged = forged.set_column(forged.schema.get_field_index(name), forged.schema.field(name),
                                   [pa.array(np.where(q == ILLEGAL_Q, q, v).astype(np.int8))])
    assert not forged.equals(table)
    pq.write_table(forged, shard, **WRITE_OPTIONS)
    assert pq.read_schema(shard).metadata == table.schema.metadata and verify_shard(shard) == []
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    assert_same_metrics(state(ws)["history"][-1]["val"], state(tiny_runs["ws"])["history"][-1]["val"])
    said = (ws / "archive" / "iter-0002" / "01_generate.ipynb").read_text()  # what the stage printed
    assert "seed_00000900_decl_0.parquet is not the golden shard pinned" in said


def test_kind2_golden_sets_are_pinned_and_a_change_is_a_new_series(tiny_runs) -> None:
    from forge.flywheel import integrity

    st = load_state(tiny_runs["ws"])
    assert st.golden is not None and st.golden.series == 1 and st.golden.since == 1
    assert len(st.golden.shards) == 40 and set(st.golden.splits) == {"val", "test"}
    other = config_from_dict({**st.config.to_dict(), "golden_val_seeds": [903, 904, 905]})
    assert integrity.same_series(st.history, st.config) == st.history
    assert integrity.same_series(st.history, other) == []  # never compared with another set's scores


# ---------------------------------------------------------------------------------------------- kind 3


@pytest.mark.slow
def test_kind3_other_starting_weights_are_refused(tiny_runs, tmp_path: Path) -> None:
    """Iteration 1's weights replaced by another run's: iteration 2 does not train from them (nor record
    that it started from iteration 1)."""
    ws = copy_of(tiny_runs["after_one"], tmp_path)
    shutil.copyfile(tiny_runs["ws"] / "runs" / "iter-0002" / "model.ckpt", ws / "runs" / "iter-0001" / "model.ckpt")
    code, said, _ = run_in_process(ws)
    assert code == 1, said
    st = state(ws)
    assert len(st["history"]) == 1 and st["status"] == "failed"
    assert st["last_error"].startswith("train: ")
    assert "runs/iter-0001/model.ckpt has sha256" in st["last_error"] and "iteration 1 recorded" in st["last_error"]
    assert not (ws / "runs" / "iter-0002" / "model.ckpt").exists()


def test_kind3_a_missing_weights_hash_is_an_error(tiny_runs, tmp_path: Path) -> None:
    from forge.flywheel import integrity

    ws = copy_of(tiny_runs["after_one"], tmp_path)
    entry = load_state(ws).history[-1]
    ckpt = ws / entry.checkpoint
    integrity.check_start(Workspace.at(ws), entry, ckpt)  # the real weights pass
    entry.digests.pop(integrity.CHECKPOINT)
    integrity.check_start(Workspace.at(ws), entry, ckpt)  # from its train result (recorded before history held it)
    result = ws / "runs" / "iter-0001" / "results" / "train.json"
    data = json.loads(result.read_text())
    del data["outputs"]["sha256"]
    result.write_text(json.dumps(data))
    with pytest.raises(integrity.IntegrityError, match="recorded no sha256 of its weights"):
        integrity.check_start(Workspace.at(ws), entry, ckpt)


# ---------------------------------------------------------------------------------------------- kind 4


@pytest.mark.slow
def test_kind4_a_result_edited_before_it_is_recorded_is_run_again(tiny_runs, tmp_path: Path) -> None:
    """The loop stopped with every stage of iteration 2 finished, the evaluate result then edited
    ("new best", q_gap 0): the resumed loop runs evaluate again and records what it really scores."""
    ws = copy_of(tiny_runs["ws"], tmp_path)
    removed = rewind(ws)
    path = ws / "runs" / "iter-0002" / "results" / "evaluate.json"
    data = json.loads(path.read_text())
    data["val"]["q_gap"], data["is_best"] = 0.0, True
    path.write_text(json.dumps(data, indent=2))
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    entry = state(ws)["history"][-1]
    assert entry["iteration"] == 2 and entry["is_best"] == removed["is_best"]
    assert_same_metrics(entry["val"], removed["val"])
    assert "  evaluate  runs again: runs/iter-0002/results/evaluate.json changed" in "\n".join(said)
    assert (path.parent / "evaluate.json.changed").is_file()  # the edited one is kept, for review


def test_kind4_an_edited_result_is_never_recorded(tiny_runs, tmp_path: Path) -> None:
    ws = copy_of(tiny_runs["ws"], tmp_path)
    rewind(ws)
    path = ws / "runs" / "iter-0002" / "results" / "evaluate.json"
    data = json.loads(path.read_text())
    data["val"]["q_gap"] = 0.0  # a perfect score, written in by hand
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(Exception, match="evaluate.json changed since the evaluate stage finished"):
        _history_entry(Workspace.at(ws), load_state(ws))


# ---------------------------------------------------------------------------------------------- kind 5


@pytest.mark.slow
def test_kind5_token_arrays_changed_with_their_manifest_are_rebuilt(tiny_runs, tmp_path: Path) -> None:
    """The golden val split's Q values shuffled and the manifest's checksum updated to match: the next
    iteration tokenizes it again from the golden shards and scores what the untampered run scored."""
    from forge.digests import sha256_file

    ws = copy_of(tiny_runs["after_one"], tmp_path)
    data = ws / "data" / "tokens" / "dataset"
    qvals = np.load(data / "val" / "qvals.npy")
    np.save(data / "val" / "qvals.npy", np.roll(qvals, 1, axis=0))
    # the manifest names its sources by absolute path: as if the workspace had not been copied here
    manifest = json.loads((data / "manifest.json").read_text().replace(str(tiny_runs["after_one"]), str(ws)))
    manifest["splits"]["val"]["checksums"]["qvals"] = "sha256:" + sha256_file(data / "val" / "qvals.npy")
    (data / "manifest.json").write_text(json.dumps(manifest))
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    assert_same_metrics(state(ws)["history"][-1]["val"], state(tiny_runs["ws"])["history"][-1]["val"])
    said = (ws / "archive" / "iter-0002" / "02_tokenize.ipynb").read_text()  # what the stage printed
    assert "val/qvals.npy is not the recorded one" in said


def test_kind5_evaluation_refuses_golden_arrays_that_are_not_the_pinned_ones(tiny_runs, tmp_path: Path) -> None:
    from forge.flywheel import integrity

    ws = copy_of(tiny_runs["ws"], tmp_path)
    st = load_state(ws)
    data = ws / "data" / "tokens" / "dataset"
    assert integrity.split_problem(data, "val", st.golden.splits["val"]) is None
    qvals = np.load(data / "val" / "qvals.npy")
    np.save(data / "val" / "qvals.npy", np.roll(qvals, 1, axis=0))
    problem = integrity.split_problem(data, "val", st.golden.splits["val"], whose="pinned golden val")
    assert problem is not None and "val/qvals.npy is not the pinned golden val one" in problem


# ---------------------------------------------------------------------------------------------- kind 6


def test_kind6_a_trained_seed_cannot_enter_the_golden_sets(ws: Path) -> None:
    entry = {"iteration": 1, "seeds": [0, 1, 2, 3], "seed_range": [0, 4], "total_seeds": 4,
             "val": {"q_gap": 0.5}}
    edit_state(ws, lambda d: d.update(history=[entry]))
    assert load_state(ws).history[0].seeds == [0, 1, 2, 3]
    edit_state(ws, lambda d: d["config"].update(golden_val_seeds=[2, 900]))
    before = (ws / "state.yaml").read_bytes()
    for args in (("status",), ("--once",)):
        one_line_error(cli(*args, cwd=ws), "config.evaluation.golden_val_seeds", "already trained on (2)")
    assert (ws / "state.yaml").read_bytes() == before


# ---------------------------------------------------------------------------------------------- kind 7


def test_kind7_a_seed_trained_twice_counts_once(tiny_runs, tmp_path: Path) -> None:
    """Iteration 2 trained (``--seed-range 0:4``) on iteration 1's seeds: 4 seeds trained, not 8."""
    ws = copy_of(tiny_runs["ws"], tmp_path)
    rewind(ws, seeds=[0, 1, 2, 3])
    st = load_state(ws)
    assert _history_entry(Workspace.at(ws), st).total_seeds == 4

    assert seeds_counted(st.history, [4, 5]) == 6


# ---------------------------------------------------------------------------------------------- recoveries


def test_after_broken_yaml_the_error_does_not_ask_to_copy_the_backup(ws: Path) -> None:
    """A stage read state.yaml while it was broken; the loop (which holds the state) writes it again:
    last_error says so, and no longer tells the user to restore the backup by hand."""
    store = StateStore(ws)
    with store.edit() as st:
        begin_iteration(st)
    (ws / "state.yaml").write_text("status: [broken\n")
    with pytest.raises(BrokenStateFile) as err:
        load_state(ws)  # what the stage's notebook saw
    assert "cp " in str(err.value)
    loop = Loop(Workspace.at(ws), store, runner=None)  # type: ignore[arg-type] - recording a failure runs nothing
    # told by the exception's type, not its words: another error quoting them is kept as it was
    loop.fail("train", f"cell 2: ValueError: {err.value}", error="ValueError")
    assert load_state(ws).last_error == f"train: cell 2: ValueError: {err.value}"
    with store.edit() as st:
        st.status = "running"
    (ws / "state.yaml").write_text("status: [broken\n")
    loop.fail("train", f"cell 2: {type(err.value).__name__}: {err.value}", error=type(err.value).__name__)
    after = load_state(ws)  # written again, valid
    assert after.status == "failed"
    assert "cp " not in after.last_error and "retry" in after.last_error
    assert "written state.yaml again" in after.last_error
    assert err.value.problem in after.last_error


def test_temp_copies_of_the_state_left_by_a_kill_are_removed(ws: Path) -> None:
    edit_state(ws, lambda d: d.update(status="done"))
    temps = [ws / ".state.yaml.k1ll3d.tmp", ws / ".state.yaml.bak.x9_a.tmp"]
    for t in temps:
        t.write_text("half a state")
        os.utime(t, (time.time() - 3600, time.time() - 3600))
    other = ws / ".notes.txt.tmp"
    other.write_text("not ours")
    assert run_loop(ws, say=lambda m: None) == 0
    assert not any(t.exists() for t in temps) and other.exists()


def test_a_stale_upstream_result_is_called_stale_not_missing(tiny_runs, tmp_path: Path) -> None:
    """tokenize's result exists, but its config changed (an edit at a stage start): the train stage says
    tokenize is stale and must run again, not that it has no result."""
    from forge.flywheel.stages import train
    from forge.flywheel.stages.base import StageOrderError

    ws = copy_of(tiny_runs["ws"], tmp_path)
    rewind(ws)
    (ws / "runs" / "iter-0002" / "results" / "train.json").unlink()
    edit_state(ws, lambda d: (d["config"].update(global_seed=7), (d["current"] or {}).pop("config", None)))
    with pytest.raises(StageOrderError) as err:
        train.run(context(ws))
    assert "the tokenize result is stale (" in str(err.value) and "has no result" not in str(err.value)


# ---------------------------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("field, value, says", [
    ("lr", 1e300, "config.training.lr must be at most 1e+12"),
    ("seeds_per_iter", 1_000_000, "config.data.seeds_per_iter must be at most 100,000"),
    ("epochs", 1_000_000, "config.training.epochs must be at most 10,000"),
    ("train_seconds", 1e-9, "config.training.train_seconds must be at least 1"),
    ("accelerator", "/tmp/evil", "config.hardware.accelerator must be a name"),
    ("strategy", "../x.py", "config.hardware.strategy must be a name"),
    ("golden_val_seeds", [900, 2**64], "config.evaluation.golden_val_seeds[1] must be at most"),
])
def test_config_values_are_bounded_at_load_with_the_field_named(ws: Path, field: str, value, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        config_from_dict({**load_preset("tiny").to_dict(), field: value})
    edit_state(ws, lambda d: d["config"].update({field: value}))
    one_line_error(cli("status", cwd=ws), says, "state.yaml")


def test_seeds_are_bounded_and_retry_does_not_repeat_a_bad_one(ws: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    one_line_error(cli("init", "--preset", "tiny", "--wandb-group", "g", "--start-seed", str(2**64), cwd=fresh),
                   "--start-seed must be 0..")
    assert not (fresh / "state.yaml").exists()
    edit_state(ws, lambda d: d.update(next_seed=2**64, status="failed"))
    for args in (("retry",), ("--once",)):
        one_line_error(cli(*args, cwd=ws), "next_seed")
    one_line_error(cli("--once", "--seed-range", f"{2**64}:{2**64 + 4}", cwd=fresh), "--seed-range")


def test_init_takes_only_preset_names_from_the_presets_folder(tmp_path: Path) -> None:
    outside = tmp_path / "evil.yaml"
    outside.write_text(yaml.safe_dump(load_preset("tiny").to_dict()))
    for name in (str(outside.with_suffix("")), "../../../" + str(outside.with_suffix("")).lstrip("/"), "x/../tiny"):
        one_line_error(cli("init", "--preset", name, "--wandb-group", "g", cwd=tmp_path), "unknown preset")
    assert not (tmp_path / "state.yaml").exists()


@pytest.mark.slow
def test_a_corrupt_token_cache_entry_is_rebuilt_without_a_manual_delete(tiny_runs, tmp_path: Path) -> None:
    """Iteration 3 replays iteration 2's deals, whose shards were released (keep_shards: golden) and whose
    tokens come from the cache: one entry corrupt, the deal is solved and tokenized again."""
    from forge.ml.store import entry_path

    ws = copy_of(tiny_runs["ws"], tmp_path)
    shards = json.loads((ws / "runs" / "iter-0002" / "results" / "generate.json").read_text())["outputs"]["shards"]
    rel, sha = next((r, s) for r, s in shards.items() if "golden" not in r)
    assert not (ws / rel).exists()  # released once recorded
    entry = entry_path(Workspace.at(ws).token_cache, sha, 64, 0)
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    edit_state(ws, lambda d: d["config"].update(retention="keep"))  # the rebuilt entry stays to be looked at
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    assert state(ws)["history"][-1]["iteration"] == 3 and entry.is_file()


def test_a_corrupt_token_dataset_makes_tokenize_run_again_naming_the_file(tiny_runs, tmp_path: Path) -> None:
    """A split's array damaged after tokenize finished: tokenize is stale, naming the file (``retry``
    resumes there and builds the split again), rather than train failing until someone deletes it."""
    from forge.digests import DigestMemo
    from forge.flywheel.stages import tokenize
    from forge.flywheel.stages.fingerprint import viewed

    ws = copy_of(tiny_runs["ws"], tmp_path)
    rewind(ws)
    tokens = ws / "data" / "tokens" / "dataset" / "train" / "tokens.npy"
    ctx = context(ws)
    result = tokenize.STAGE.read(ctx.ws, 2)
    memo = DigestMemo(ctx.ws.digests)
    assert tokenize.STAGE.intact(viewed(ctx, tokenize.STAGE), result, memo) is None
    raw = bytearray(tokens.read_bytes())
    raw[-1] ^= 1
    tokens.write_bytes(bytes(raw))
    why = tokenize.STAGE.intact(viewed(ctx, tokenize.STAGE), result, memo)
    assert why is not None and why.startswith("data/tokens/dataset/train/tokens.npy is not the recorded one")


@pytest.mark.slow
def test_a_token_cache_entry_with_a_damaged_array_is_named_and_retry_rebuilds_it(tiny_runs, tmp_path: Path) -> None:
    """The entry's header reads, but an array fails its CRC: the failure names the entry (not the released
    shard) and removes it, and `retry` then solves the deal again, with no file deleted by hand."""
    from forge.ml.store import entry_path

    ws = copy_of(tiny_runs["ws"], tmp_path)
    shards = json.loads((ws / "runs" / "iter-0002" / "results" / "generate.json").read_text())["outputs"]["shards"]
    rel, sha = next((r, s) for r, s in shards.items() if "golden" not in r)
    entry = entry_path(Workspace.at(ws).token_cache, sha, 64, 0)
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # inside the tokens array (the first and largest member)
    entry.write_bytes(bytes(raw))
    edit_state(ws, lambda d: d["config"].update(retention="keep"))  # the rebuilt entry stays to be looked at
    code, said, _ = run_in_process(ws)
    assert code == 1, said
    st = state(ws)
    assert st["last_error"].startswith("tokenize: ") and f"{entry}: corrupt token-cache entry" in st["last_error"]
    assert not entry.exists()
    retry(ws)
    code, said, _ = run_in_process(ws)
    assert code == 0, said
    assert state(ws)["history"][-1]["iteration"] == 3 and entry.is_file()
