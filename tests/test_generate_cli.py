"""The generate and verify commands as a user runs them: real processes, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forge.errors import InputError
from forge.oracle.generate import generate
from forge.oracle.shard import read_shard_info, shard_name
from forge.oracle.verify import verify_shard


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1", "--decl", "1"], "non-negative"),
        (["--seed-range", "5:3", "--decl", "1"], "reversed"),
        (["--seed-range", "3:3", "--decl", "1"], "empty"),
        (["--seed-range", "x", "--decl", "1"], "A:B"),
        (["--seed", "1", "--decl", "spades"], "unknown declaration 'spades'"),
        (["--seed", "1", "--decl", "12"], "unknown declaration '12'"),
        (["--seed", "1", "--decl", "1", "--hand-size", "0"], "hand size must be 1..7"),
        (["--seed", "1", "--decl", "1", "--hand-size", "8"], "hand size must be 1..7"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    res = run("forge.oracle.generate", *args, "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run("forge.oracle.generate", "--seed", "1", "--decl", "1", "--hand-size", "2", "--out", str(blocker / "x"))
    assert res.returncode == 2 and "cannot write to output folder" in res.stderr
    assert "Traceback" not in res.stderr


def test_parallel_generation_then_skip_then_repair(tmp_path: Path) -> None:
    out = tmp_path / "shards"
    args = ["forge.oracle.generate", "--seed-range", "0:3", "--decl", "sixes,notrump", "--hand-size", "3"]
    res = run(*args, "--out", str(out), "--workers", "2")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert names == sorted(shard_name(s, d) for s in range(3) for d in (6, 9))
    assert "6 shard(s) written, 0 kept" in res.stdout
    assert "shard/s" in res.stderr or "s/shard" in res.stderr  # the progress bar
    for p in out.glob("*.parquet"):
        assert verify_shard(p) == [] and read_shard_info(p).hand_size == 3

    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    damaged = out / shard_name(1, 9)
    damaged.write_bytes(damaged.read_bytes()[:100])
    res = run(*args, "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "1 shard(s) written, 5 kept" in res.stdout
    assert "did not verify" in res.stderr and shard_name(1, 9) in res.stderr
    assert verify_shard(damaged) == []
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    assert {n for n in before if before[n] != after[n]} == {shard_name(1, 9)}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_show_qvals_prints_known_answer(tmp_path: Path) -> None:
    res = run("forge.oracle.generate", "--seed", "0", "--decl", "sixes", "--out", str(tmp_path), "--show-qvals")
    assert res.returncode == 0, res.stderr
    assert "14,675,274 states" in res.stdout
    assert "V = +4" in res.stdout
    assert "0-0: -38  2-0: +4  2-2: +4  3-1: -6  4-0: -38  4-4: +4  5-2: -18" in res.stdout


def test_hand_size_mismatch_regenerates(tmp_path: Path) -> None:
    assert run("forge.oracle.generate", "--seed", "4", "--decl", "0", "--hand-size", "2", "--out", str(tmp_path),
               "--quiet").returncode == 0
    res = run("forge.oracle.generate", "--seed", "4", "--decl", "0", "--hand-size", "3", "--out", str(tmp_path),
              "--quiet")
    assert res.returncode == 0 and "1 shard(s) written" in res.stdout
    assert read_shard_info(tmp_path / shard_name(4, 0)).hand_size == 3


def test_verify_command(tmp_path: Path) -> None:
    assert run("forge.oracle.generate", "--seed", "2", "--decl", "7", "--hand-size", "3", "--out", str(tmp_path),
               "--quiet").returncode == 0
    good = tmp_path / shard_name(2, 7)
    foreign = tmp_path / "foreign.parquet"
    foreign.write_bytes(b"PAR1 definitely not parquet")
    res = run("forge.oracle.verify", str(good), "--deep")
    assert res.returncode == 0 and res.stdout.startswith("ok")
    res = run("forge.oracle.verify", str(good), str(foreign), str(tmp_path / "missing.parquet"))
    assert res.returncode == 1
    assert "FAIL" in res.stderr and "foreign.parquet" in res.stderr and "missing.parquet: no such shard" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "jobs, kwargs, message",
    [
        ([(-1, 0)], {}, "seed must be a non-negative integer"),
        ([(1, 10)], {}, "declaration must be 0..9"),
        ([(1, 0)], {"hand_size": 8}, "hand size must be 1..7"),
        ([(1, 0)], {"workers": 0}, "workers must be a positive integer"),
        ([(1, 0)], {"executor": "dask"}, "executor must be one of local, ray"),
        ([(1, 0)], {"ray_address": "127.0.0.2:6379"}, "needs the ray executor"),
        ([(1, 0)], {"executor": "ray", "workers": 2}, "workers applies to the local executor"),
    ],
)
def test_the_library_raises_input_errors_before_any_work(tmp_path: Path, jobs, kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        list(generate(jobs, tmp_path / "out", progress=False, **kwargs))
    assert not (tmp_path / "out").exists()


def test_the_oracle_layer_never_imports_the_command_line_layer() -> None:
    code = ("import sys, forge.oracle.generate, forge.oracle.verify; "
            "print(sorted(m for m in sys.modules if m.startswith('forge.cli')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_the_commands_also_run_from_forge_cli(tmp_path: Path) -> None:
    res = run("forge.cli.generate", "--seed", "3", "--decl", "doubles-suit", "--hand-size", "2", "--out",
              str(tmp_path), "--quiet")
    assert res.returncode == 0 and "1 shard(s) written" in res.stdout, res.stderr
    res = run("forge.cli.verify", str(tmp_path / shard_name(3, 8)))
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr
