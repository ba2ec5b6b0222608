"""Shard files: round trip, atomic writes, rejection of foreign files, and the verifier's teeth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forge.ml.tokenize import tokenize_shard
from forge.oracle import shard as shard_mod
from forge.oracle.shard import (
    ShardError,
    read_shard,
    read_shard_info,
    read_solution,
    shard_bytes,
    shard_name,
    shard_path,
    to_table,
    write_shard,
    write_shard_bytes,
)
from forge.oracle.shard_rows import ShardRows
from forge.oracle.solve import solve
from forge.oracle.state import initial_state
from forge.oracle.verify import verify_shard


@pytest.fixture(scope="module")
def small():
    return solve(3, 8, 4)


def test_name_and_round_trip(tmp_path: Path, small) -> None:
    path = write_shard(small, tmp_path)
    assert path.name == shard_name(3, 8) == "seed_00000003_decl_8.parquet"
    info = read_shard_info(path)
    assert (info.seed, info.decl_id, info.hand_size, info.rows) == (3, 8, 4, len(small))
    meta = pq.read_schema(path).metadata
    assert meta[b"seed"] == b"3" and meta[b"decl_id"] == b"8" and meta[b"hand_size"] == b"4"
    cols = read_shard(path)
    assert list(cols) == ["state", "V"] + [f"q{i}" for i in range(7)]
    assert cols["state"].dtype == np.int64 and cols["V"].dtype == np.int8
    back = read_solution(path)
    assert np.array_equal(back.state, small.state) and np.array_equal(back.q, small.q)
    assert verify_shard(path, deep=True) == []


def test_same_shard_twice_gives_identical_column_bytes(tmp_path: Path) -> None:
    a = read_shard(write_shard(solve(11, 2, 5), tmp_path / "a"))
    b = read_shard(write_shard(solve(11, 2, 5), tmp_path / "b"))
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name


def test_shard_bytes_land_as_the_file_write_shard_writes(tmp_path: Path, small) -> None:
    """Shards solved elsewhere (Ray) travel as bytes: written here they must be the same file."""
    data = shard_bytes(small)
    landed = write_shard_bytes(data, tmp_path / "remote", small.seed, small.decl_id)
    assert landed.read_bytes() == write_shard(small, tmp_path / "local").read_bytes()
    with pytest.raises(ShardError, match="foreign shard"):  # another deal's bytes never land
        write_shard_bytes(data, tmp_path / "wrong", small.seed + 1, small.decl_id)
    with pytest.raises(ShardError, match="not a readable parquet"):
        write_shard_bytes(data[: len(data) // 2], tmp_path / "wrong", small.seed, small.decl_id)
    assert not (tmp_path / "wrong").exists() or not any((tmp_path / "wrong").iterdir())


def test_crash_mid_write_leaves_nothing(tmp_path: Path, small, monkeypatch) -> None:
    real = pq.write_table

    def dying_write(table, where, **kw):
        real(table.slice(0, 10), where, **kw)  # some bytes reach the disk, then we die
        raise KeyboardInterrupt

    monkeypatch.setattr(shard_mod.pq, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        write_shard(small, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_foreign_and_truncated_files_are_rejected(tmp_path: Path, small) -> None:
    text = tmp_path / "notes.parquet"
    text.write_text("hello")
    with pytest.raises(ShardError, match="notes.parquet: not a readable parquet"):
        read_shard_info(text)

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), other)
    with pytest.raises(ShardError, match="missing column"):
        read_shard_info(other)

    nometa = tmp_path / "nometa.parquet"
    pq.write_table(to_table(small).replace_schema_metadata({}), nometa)
    with pytest.raises(ShardError, match="metadata 'seed'"):
        read_shard_info(nometa)

    good = write_shard(small, tmp_path)
    data = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="cut.parquet"):
        read_shard_info(cut)
    assert verify_shard(cut) and "cut.parquet" in verify_shard(cut)[0]


def _corrupt(tmp_path: Path, small, name: str, mutate) -> Path:
    table = to_table(small)
    cols = {c: table.column(c).to_numpy().copy() for c in table.column_names}
    mutate(cols)
    path = tmp_path / name
    arrays = [pa.array(cols[c]) for c in table.column_names]
    pq.write_table(pa.Table.from_arrays(arrays, schema=table.schema), path)
    return path


def test_verifier_catches_each_kind_of_damage(tmp_path: Path, small) -> None:
    legal_rows = np.flatnonzero(small.q[0] != -128)
    r = int(legal_rows[len(legal_rows) // 2])

    def illegal_gets_value(c):
        c["q6"][np.flatnonzero(c["q6"] == -128)[0]] = 0

    def legal_gets_minus128(c):
        c["q0"][r] = -128

    def wrong_v(c):
        c["V"][r] += 2

    def unsorted(c):
        c["state"][[5, 6]] = c["state"][[6, 5]]

    def bad_state_bits(c):
        c["state"][r] |= 1 << 45

    cases = {
        "illegal.parquet": (illegal_gets_value, "-128 exactly where"),
        "legal.parquet": (legal_gets_minus128, "-128 exactly where"),
        "wrongv.parquet": (wrong_v, "max/min of the legal Q"),
        "unsorted.parquet": (unsorted, "not sorted"),
        "bits.parquet": (bad_state_bits, "malformed state"),
    }
    for name, (mutate, expect) in cases.items():
        problems = verify_shard(_corrupt(tmp_path, small, name, mutate))
        assert any(expect in p for p in problems), (name, problems)


def test_deep_check_catches_value_that_is_locally_consistent(tmp_path: Path, small) -> None:
    """Shift V and all legal Q of one row together: only Bellman consistency can notice."""
    legal = small.q != -128
    r = int(np.flatnonzero(legal.any(axis=0))[7])

    def shift_row(c):
        c["V"][r] += 2
        for i in range(7):
            if c[f"q{i}"][r] != -128:
                c[f"q{i}"][r] += 2

    path = _corrupt(tmp_path, small, "shifted.parquet", shift_row)
    assert verify_shard(path) == []
    problems = verify_shard(path, deep=True)
    assert any("child V plus trick points" in p for p in problems), problems


def test_missing_initial_state_is_reported(tmp_path: Path, small) -> None:
    table = to_table(small)
    keep = np.ones(len(small), dtype=bool)
    keep[small.lookup(initial_state(4))] = False
    rows = str(int(keep.sum())).encode()
    trimmed = table.filter(pa.array(keep)).replace_schema_metadata({**table.schema.metadata, b"rows": rows})
    path = tmp_path / "noinit.parquet"
    pq.write_table(trimmed, path)
    assert any("initial state" in p for p in verify_shard(path))


def test_verify_once_rereads_only_changed_files(tmp_path: Path, small, monkeypatch) -> None:
    from forge.oracle import verify as verify_mod

    path = write_shard(small, tmp_path)
    calls = []
    real = verify_mod.verify_shard
    monkeypatch.setattr(verify_mod, "verify_shard", lambda p, deep=False: calls.append(p) or real(p, deep))
    assert verify_mod.verify_once(path) == [] and len(calls) == 1
    assert verify_mod.verify_once(path) == [] and len(calls) == 1  # unchanged: not read again
    damaged = _corrupt(tmp_path, small, "x.parquet", lambda c: c["V"].__setitem__(3, c["V"][3] + 2))
    damaged.replace(path)  # same name, new content
    assert verify_mod.verify_once(path) and len(calls) == 2


#: The smallest full deal found (2.3M states, ~0.1 s to solve): doubles-suit keeps trees small.
SMALL_FULL_DEAL = (31, 8)


def _write_like_the_reference_oracle(sol, folder: Path) -> Path:
    """As the public reference oracle writes a shard: the spec's columns in sorted order,
    pyarrow's default writer options (snappy), and only ``seed`` and ``decl_id`` as metadata."""
    columns = {"state": sol.state.astype(np.int64), "V": sol.V.astype(np.int8)}
    columns |= {f"q{i}": sol.q[i].astype(np.int8) for i in range(7)}
    table = pa.table(columns).replace_schema_metadata({b"seed": str(sol.seed).encode(),
                                                       b"decl_id": str(sol.decl_id).encode()})
    path = shard_path(folder, sol.seed, sol.decl_id)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")
    return path


def test_reference_oracle_shards_are_full_games_that_tokenize_like_ours(tmp_path: Path) -> None:
    sol = solve(*SMALL_FULL_DEAL)
    ref = _write_like_the_reference_oracle(sol, tmp_path / "reference")
    ours = write_shard(sol, tmp_path / "forge")
    assert set(pq.read_schema(ref).metadata) == {b"seed", b"decl_id"}

    info = read_shard_info(ref)
    assert (info.seed, info.decl_id, info.hand_size, info.rows) == (*SMALL_FULL_DEAL, 7, len(sol))
    assert verify_shard(ref) == []
    rows = ShardRows(ref)
    assert rows.hand_size == 7 and len(rows) == len(sol)
    root = rows.lookup(initial_state())
    assert (rows.value(root), tuple(int(x) for x in rows.q_row(root))) == sol.root()

    theirs, mine = tokenize_shard(ref, 3000, global_seed=5), tokenize_shard(ours, 3000, global_seed=5)
    assert len(mine["targets"]) > 2000
    for name in mine:
        assert np.array_equal(theirs[name], mine[name]), name


def test_a_stated_hand_size_is_checked(tmp_path: Path, small) -> None:
    table = to_table(small)
    for bad in (b"0", b"8", b"seven", b"\xd9\xa3"):  # the last is an Arabic-Indic digit three
        path = tmp_path / "hand.parquet"
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"hand_size": bad}), path)
        with pytest.raises(ShardError, match="hand.parquet.*hand_size"):
            read_shard_info(path)


@pytest.mark.parametrize("memo", ["[]", "{not json", "\xff"])
def test_a_damaged_verified_memo_only_costs_a_reread(tmp_path: Path, small, memo: str) -> None:
    from forge.oracle import verify as verify_mod

    path = write_shard(small, tmp_path)
    (tmp_path / verify_mod.MEMO).write_text(memo, encoding="latin-1")
    assert verify_mod.verify_once(path) == []
    assert verify_mod.verify_once(path) == []  # and the memo is whole again
