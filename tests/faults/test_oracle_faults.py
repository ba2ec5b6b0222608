"""Oracle faults from issue 10, each reproduced as it was found: renamed shards, flipped metadata
bytes, and pool workers that outlived a killed parent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers.processes import wait_for

from forge.ml.tokenize import tokenize_shard
from forge.oracle.generate import generate
from forge.oracle.shard import ShardError, read_shard_info, to_table, write_shard
from forge.oracle.solve import solve
from forge.oracle.verify import remember_verified, verify_once, verify_shard

HAND = 3


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)


def _shards(out: Path, deals: list[tuple[int, int]]) -> dict[tuple[int, int], Path]:
    return {(s, d): write_shard(solve(s, d, HAND), out) for s, d in deals}


# --- a shard's metadata, not its name, says which deal it holds ---------------------------------


@pytest.mark.parametrize("source", [(6, 2), (5, 3)], ids=["other-seed", "other-declaration"])
def test_a_renamed_shard_is_foreign_to_every_reader(tmp_path: Path, source: tuple[int, int]) -> None:
    shards = _shards(tmp_path, [(5, 2), source])
    target = shards[5, 2]
    shutil.copyfile(shards[source], target)  # the other deal's shard under (5, 2)'s name

    problems = verify_shard(target, deep=True)
    assert problems and "foreign shard" in problems[0] and target.name in problems[0]
    res = _cli("forge.oracle.verify", "--deep", str(target))
    assert res.returncode == 1 and "FAIL" in res.stderr and "foreign shard" in res.stderr
    with pytest.raises(ShardError, match="foreign shard"):
        tokenize_shard(target, 10, 0)  # was tokenized under the wrong declaration


def test_a_memo_does_not_vouch_for_a_renamed_shard(tmp_path: Path) -> None:
    """A file the memo recorded as verified (as older versions did for renamed shards) is still checked."""
    shards = _shards(tmp_path, [(5, 2), (6, 2)])
    target = shards[5, 2]
    shutil.copyfile(shards[6, 2], target)
    remember_verified([target])
    problems = verify_once(target)
    assert problems and "foreign shard" in problems[0]


def test_generate_replaces_a_renamed_shard(tmp_path: Path) -> None:
    shards = _shards(tmp_path, [(5, 2), (6, 2)])
    shutil.copyfile(shards[6, 2], shards[5, 2])
    remember_verified([shards[5, 2]])  # even when a memo says it verified
    results = {(r.seed, r.decl_id): r for r in generate([(5, 2), (6, 2)], tmp_path, HAND, progress=False)}
    assert not results[5, 2].skipped and "foreign shard" in results[5, 2].note
    assert results[6, 2].skipped
    info = read_shard_info(shards[5, 2])
    assert (info.seed, info.decl_id, info.hand_size) == (5, 2, HAND)
    assert verify_shard(shards[5, 2], deep=True) == []


# --- one flipped byte in a shard's metadata -------------------------------------------------------


def _flip_arrow_schema_key(path: Path) -> None:
    """Turn the footer key ``ARROW:schema`` into non-UTF-8 bytes (same length: still parquet)."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"ARROW:schema")
    assert at > 0
    data[at + 1] = 0xFF
    path.write_bytes(bytes(data))


def _non_utf8_value(path: Path, sol) -> None:
    """The shard rewritten with one metadata value (``decl_name``) that is not UTF-8."""
    table = to_table(sol)
    meta = {**table.schema.metadata, b"decl_name": b"tw\xffos"}
    pq.write_table(table.replace_schema_metadata(meta), path)


@pytest.mark.parametrize("damage", ["key", "value"])
def test_non_utf8_metadata_names_the_file_and_is_regenerated(tmp_path: Path, damage: str) -> None:
    sol = solve(7, 4, HAND)
    bad = write_shard(sol, tmp_path)
    good = write_shard(solve(8, 4, HAND), tmp_path)
    _flip_arrow_schema_key(bad) if damage == "key" else _non_utf8_value(bad, sol)

    with pytest.raises(ShardError, match=bad.name):
        read_shard_info(bad)
    assert bad.name in verify_shard(bad)[0]

    # verify reports it and goes on to the next file, in one line each, without a traceback
    res = _cli("forge.oracle.verify", str(bad), str(good))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"FAIL {bad}" in res.stderr and f"ok   {good}" in res.stdout

    # generate regenerates it instead of aborting
    results = {(r.seed, r.decl_id): r for r in generate([(7, 4), (8, 4)], tmp_path, HAND, progress=False)}
    assert not results[7, 4].skipped and "did not verify" in results[7, 4].note
    assert results[8, 4].skipped
    assert verify_shard(bad) == []


# --- pool workers die with their parent -----------------------------------------------------------

GENERATE_SLOWLY = textwrap.dedent(
    """
    import sys
    from forge.oracle.generate import generate

    jobs = [(seed, 7) for seed in range(100, 112)]  # full deals: seconds each
    for _ in generate(jobs, sys.argv[1], workers=2, progress=False):
        pass
    """
)


def _proc_state(pid: int) -> str | None:
    """A process's state letter (``Z``: dead, not yet reaped), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _pool_workers(parent: int) -> list[int]:
    """Live children of ``parent`` that are multiprocessing spawn workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and _proc_state(int(entry.name)) not in (None, "Z"):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc are Linux's")
def test_pool_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", GENERATE_SLOWLY, str(tmp_path)], stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        workers = wait_for(lambda: len(_pool_workers(proc.pid)) >= 2 and _pool_workers(proc.pid), 120,
                           "two pool workers")
        assert proc.poll() is None, "the generate process ended before it could be killed"
        proc.kill()
        proc.wait()
        wait_for(lambda: all(_proc_state(pid) in (None, "Z") for pid in workers), 60,
                 f"workers {workers} to die with their parent")
    finally:
        proc.kill()
        for pid in workers:  # only on failure are any left: never leave them burning CPU
            if _proc_state(pid) not in (None, "Z"):
                os.kill(pid, signal.SIGKILL)
