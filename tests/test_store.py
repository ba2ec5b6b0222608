"""Tokenized store and ``python -m forge.cli.tokenize`` on real shards of small solved games."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import forge.ml.store as store
from forge.cli.tokenize import main
from forge.commandline import run_cli
from forge.ml.store import StoreError, build_dataset, load_split, read_manifest, verify_split
from forge.ml.tokenize import ARRAY_NAMES, tokenize_shard
from forge.oracle.shard import ShardError, write_shard
from forge.oracle.solve import solve

K, G = 300, 5
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shards(tmp_path) -> dict[str, Path]:
    """Four real shards (hand size 4: ~10^3-10^4 rows, more than K) named a..d."""
    out = tmp_path / "shards"
    games = {"a": (1, 6), "b": (2, 7), "c": (3, 8), "d": (4, 9)}
    return {name: write_shard(solve(seed, decl, hand_size=4), out) for name, (seed, decl) in games.items()}


def _build(split_map, out, **kw):
    kw.setdefault("cache_dir", out.parent / "cache")
    return build_dataset(split_map, out, K, G, progress=False, **kw)


def _concat(paths):
    parts = [tokenize_shard(p, K, G) for p in paths]
    return {n: np.concatenate([p[n] for p in parts]) for n in ARRAY_NAMES}


def _assert_split(out: Path, split: str, paths) -> None:
    got, want = load_split(out, split), _concat(paths)
    for n in ARRAY_NAMES:
        assert got[n].dtype == np.int8
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)


def test_build_writes_manifest_and_mmapped_splits(shards, tmp_path):
    out = tmp_path / "ds"
    stats = _build({"train": [shards["b"], shards["a"]], "val": [shards["c"]]}, out)
    manifest = read_manifest(out)
    assert (manifest["format_version"], manifest["global_seed"], manifest["samples_per_shard"]) == (1, G, K)
    train = manifest["splits"]["train"]
    assert [s["path"] for s in train["sources"]] == [str(shards["b"]), str(shards["a"])]  # caller's order
    src = train["sources"][1]
    assert (src["seed"], src["decl_id"], src["hand_size"]) == (1, 6, 4)
    assert src["rows"] == pq.ParquetFile(shards["a"]).metadata.num_rows > K
    assert 0 < src["samples"] <= K and len(src["sha256"]) == 64
    assert train["count"] == sum(s["samples"] for s in train["sources"]) == stats.counts["train"]
    assert set(train["checksums"]) == set(ARRAY_NAMES) and verify_split(out, "train") == []
    arrays = load_split(out, "train")
    assert all(isinstance(a, np.memmap) and a.shape[0] == train["count"] for a in arrays.values())
    _assert_split(out, "train", [shards["b"], shards["a"]])
    _assert_split(out, "val", [shards["c"]])
    # real oracle rows: the target's Q is V, and V is the mover's best legal Q
    q, t, v = arrays["qvals"].astype(int), arrays["targets"], arrays["values"]
    np.testing.assert_array_equal(q[np.arange(len(t)), t], v)
    assert arrays["legal"][np.arange(len(t)), t].all()


def test_adding_a_shard_tokenizes_only_that_shard(shards, tmp_path):
    out = tmp_path / "ds"
    first = _build({"train": [shards["a"], shards["b"]], "val": [shards["c"]]}, out)
    assert sorted(first.tokenized) == sorted([shards["a"], shards["b"], shards["c"]])
    val_file = out / "val" / "tokens.npy"
    val_inode = val_file.stat().st_ino

    again = _build({"train": [shards["a"], shards["b"], shards["d"]], "val": [shards["c"]]}, out)
    assert again.tokenized == [shards["d"]]
    assert sorted(again.cached) == sorted([shards["a"], shards["b"], shards["c"]])
    assert again.hashed == [shards["d"]]  # the others are known by path + stat
    assert (again.splits_written, again.splits_unchanged) == (["train"], ["val"])
    assert val_file.stat().st_ino == val_inode
    _assert_split(out, "train", [shards["a"], shards["b"], shards["d"]])

    same = _build({"train": [shards["a"], shards["b"], shards["d"]], "val": [shards["c"]]}, out)
    assert (same.tokenized, same.hashed, same.splits_written) == ([], [], [])


def test_samples_do_not_depend_on_company_or_order(shards, tmp_path):
    one = _build({"train": [shards["a"], shards["b"], shards["c"]]}, tmp_path / "one" / "ds")
    two = _build({"val": [shards["c"]], "train": [shards["b"], shards["d"], shards["a"]]}, tmp_path / "two" / "ds")
    assert one.cache_dir != two.cache_dir
    first, second = load_split(tmp_path / "one" / "ds", "train"), load_split(tmp_path / "two" / "ds", "train")
    counts = {s["path"]: s["samples"] for s in read_manifest(tmp_path / "one" / "ds")["splits"]["train"]["sources"]}
    na, nb = counts[str(shards["a"])], counts[str(shards["b"])]
    nd = read_manifest(tmp_path / "two" / "ds")["splits"]["train"]["sources"][1]["samples"]
    for n in ARRAY_NAMES:  # a: first in one, last in two; b: second in one, first in two
        np.testing.assert_array_equal(first[n][:na], second[n][nb + nd :])
        np.testing.assert_array_equal(first[n][na : na + nb], second[n][:nb])
    np.testing.assert_array_equal(load_split(tmp_path / "two" / "ds", "val")["tokens"], first["tokens"][na + nb :])


def test_changed_shard_is_tokenized_again(shards, tmp_path, caplog):
    out = tmp_path / "ds"
    _build({"train": [shards["a"], shards["b"]]}, out)
    other = write_shard(solve(1, 6, hand_size=3), tmp_path / "other")
    shards["a"].write_bytes(other.read_bytes())  # same name and deal, new content
    with caplog.at_level(logging.WARNING):
        stats = _build({"train": [shards["a"], shards["b"]]}, out)
    assert stats.tokenized == [shards["a"]]
    assert any(str(shards["a"]) in r.message and "changed" in r.message for r in caplog.records)
    _assert_split(out, "train", [shards["a"], shards["b"]])
    assert read_manifest(out)["splits"]["train"]["sources"][0]["hand_size"] == 3


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("v*/*/*.npz"))


def test_stale_or_broken_cache_entries_are_never_used(shards, tmp_path, caplog):
    out, cache = tmp_path / "ds", tmp_path / "cache"
    _build({"train": [shards["a"]], "val": [shards["b"]]}, out)
    entry_a = store.entry_path(cache, store.file_sha256(shards["a"]), K, G)
    entry_b = store.entry_path(cache, store.file_sha256(shards["b"]), K, G)
    assert _entries(cache) == sorted([entry_a, entry_b])
    # entry a claims another format version; entry b is cut short
    with np.load(entry_a) as z:
        data = {n: z[n] for n in z.files}
    meta = json.loads(str(data["meta"]))
    data["meta"] = np.array(json.dumps({**meta, "format_version": 0}))
    data["tokens"] = np.zeros_like(data["tokens"])  # would poison the split if used
    np.savez(entry_a, **data)
    entry_b.write_bytes(entry_b.read_bytes()[:5000])
    with caplog.at_level(logging.WARNING):
        stats = _build({"train": [shards["a"]], "val": [shards["b"]], "test": [shards["c"]]}, out)
    assert sorted(stats.tokenized) == sorted([shards["a"], shards["b"], shards["c"]])
    messages = " ".join(r.message for r in caplog.records)
    assert f"{entry_a}: stale cache entry (format_version=0" in messages
    assert f"{entry_b}: unreadable cache entry" in messages
    _assert_split(out, "train", [shards["a"]])
    _assert_split(out, "val", [shards["b"]])
    assert json.loads(str(np.load(entry_a)["meta"]))["format_version"] == 1


def test_crash_mid_write_leaves_no_partial_entry_or_split(shards, tmp_path, monkeypatch):
    out, cache = tmp_path / "ds", tmp_path / "cache"
    _build({"train": [shards["a"]]}, out)
    before = {n: np.array(a) for n, a in load_split(out, "train").items()}

    def dying_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an entry")
        raise KeyboardInterrupt

    monkeypatch.setattr(store.np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        _build({"train": [shards["a"], shards["b"]]}, out)
    assert len(_entries(cache)) == 1 and not list(cache.rglob("*.tmp"))
    monkeypatch.undo()

    def dying_copy(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "_read_entry", lambda path, expect, arrays: dying_copy() if arrays else None)
    with pytest.raises(OSError, match="disk full"):
        _build({"train": [shards["a"], shards["b"]]}, out)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == [store.VERIFIED, "manifest.json", "train"]  # no temp split
    for n, a in load_split(out, "train").items():
        np.testing.assert_array_equal(a, before[n])


def _fake_shard(path: Path, drop_meta: str | None = None) -> Path:
    meta = {"seed": "9", "decl_id": "1", "hand_size": "7"}
    meta.pop(drop_meta, None)
    cols = {"state": pa.array([0], pa.int64()), "V": pa.array([0], pa.int8())}
    cols |= {f"q{i}": pa.array([0], pa.int8()) for i in range(7)}
    pq.write_table(pa.table(cols).replace_schema_metadata(meta), path)
    return path


def test_a_bad_shard_fails_the_build_before_any_work(shards, tmp_path):
    bad = _fake_shard(tmp_path / "seed_00000009_decl_1.parquet", drop_meta="decl_id")
    with pytest.raises(ShardError, match=f"{bad}.*decl_id"):
        _build({"train": [shards["a"], bad]}, tmp_path / "ds")
    assert _entries(tmp_path / "cache") == [] and not (tmp_path / "ds" / "manifest.json").exists()


@pytest.mark.parametrize(
    "splits, message",
    [
        (lambda s: {"train": [s["a"]], "val": [s["a"]]}, "in splits 'train' and 'val'"),
        (lambda s: {"train": [s["a"], s["b"], s["a"]]}, "twice in split 'train'"),
        (lambda s: {"train": [s["a"]], "val": []}, "split 'val' has no shards"),
        (lambda s: {"../up": [s["a"]]}, "bad split name"),
    ],
)
def test_bad_requests(shards, tmp_path, splits, message):
    with pytest.raises(StoreError, match=message):
        _build(splits(shards), tmp_path / "ds")


def test_same_content_under_two_names_is_refused(shards, tmp_path):
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(shards["a"].read_bytes())
    with pytest.raises(StoreError, match="same content"):
        _build({"train": [shards["a"]], "val": [copy]}, tmp_path / "ds")


def test_load_split_errors_and_default_cache(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset directory"):
        load_split(tmp_path / "nowhere", "train")
    out = tmp_path / "data" / "tokenized"
    stats = build_dataset({"train": [shards["a"]]}, out, K, G, progress=False)
    assert stats.cache_dir == tmp_path / "data" / "cache" and _entries(stats.cache_dir)
    with pytest.raises(FileNotFoundError, match=r"no split 'val' \(have: train\)"):
        load_split(out, "val")
    (out / "train" / "legal.npy").unlink()
    with pytest.raises(FileNotFoundError, match="legal.npy"):
        load_split(out, "train")


# ------------------------------------------------------------------ CLI


def test_cli_builds_named_splits(shards, tmp_path, capsys):
    src = shards["a"].parent
    out = tmp_path / "ds"
    argv = ["--input", str(src), "--output", str(out), "--samples-per-shard", str(K), "--global-seed", str(G),
            "--split", "train=seed_0000000[12]_*", "--split", "val=seed_00000003_*", "--no-progress"]
    assert run_cli(main, argv) == 0
    assert "tokenized 3 shard(s), 0 from cache" in capsys.readouterr().out
    _assert_split(out, "train", [shards["a"], shards["b"]])
    _assert_split(out, "val", [shards["c"]])
    assert run_cli(main, argv) == 0
    assert "tokenized 0 shard(s), 3 from cache" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "train=*.csv"], "no .parquet files match"),
        (["--split", "train"], "expected NAME=GLOB"),
        (["--split", "train=*_decl_[67]*", "--split", "val=*_decl_7*"], "matches both split 'train' and 'val'"),
        (["--samples-per-shard", "0"], "must be at least 1"),
        (["--output", "{input}"], "must not be the --input folder"),
    ],
)
def test_cli_user_mistakes_are_one_line(shards, tmp_path, capsys, extra, message):
    src = str(shards["a"].parent)
    extra = [src if a == "{input}" else a for a in extra]
    rc = run_cli(main, ["--input", src, "--output", str(tmp_path / "ds"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_shard_as_a_subprocess(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    bad = _fake_shard(src / "seed_00000009_decl_1.parquet", drop_meta="decl_id")
    res = subprocess.run([sys.executable, "-m", "forge.cli.tokenize", "--input", str(src), "--output",
                          str(tmp_path / "ds")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and str(bad) in res.stderr and "decl_id" in res.stderr
    res = subprocess.run([sys.executable, "-m", "forge.cli.tokenize", "--input", str(tmp_path / "nope"),
                          "--output", str(tmp_path / "ds")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such folder" in res.stderr


def test_per_split_sample_counts(shards, tmp_path):
    """Golden splits are sampled at their own rate; changing one split's rate rebuilds only it."""
    out, cache = tmp_path / "ds", tmp_path / "cache"
    split_map = {"train": [shards["a"], shards["b"]], "val": [shards["c"]]}
    build_dataset(split_map, out, {"train": K, "val": 40}, G, cache_dir=cache, progress=False)
    manifest = read_manifest(out)
    assert manifest["samples_per_shard"] == {"train": K, "val": 40}
    assert manifest["splits"]["val"]["samples_per_shard"] == 40
    assert manifest["splits"]["val"]["count"] == len(tokenize_shard(shards["c"], 40, G)["targets"]) <= 40
    _assert_split(out, "train", [shards["a"], shards["b"]])
    train_inode = (out / "train" / "tokens.npy").stat().st_ino
    again = build_dataset(split_map, out, {"train": K, "val": 60}, G, cache_dir=cache, progress=False)
    assert again.tokenized == [shards["c"]] and again.splits_written == ["val"]
    assert (out / "train" / "tokens.npy").stat().st_ino == train_inode
    with pytest.raises(StoreError, match="no samples-per-shard count for split"):
        build_dataset(split_map, out, {"train": K}, G, cache_dir=cache, progress=False)


def test_each_array_file_is_verified_once_per_change(shards, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    _build({"train": [shards["a"]], "val": [shards["b"]]}, out)
    hashed: list[str] = []
    real = store.file_sha256
    monkeypatch.setattr(store, "file_sha256", lambda p: hashed.append(Path(p).name) or real(p))
    load_split(out, "train")
    assert sorted(hashed) == sorted(f"{n}.npy" for n in ARRAY_NAMES)
    hashed.clear()
    load_split(out, "train")
    assert hashed == []  # remembered in .verified.json
    targets = out / "train" / "targets.npy"
    targets.write_bytes(targets.read_bytes())  # same bytes, but the file changed: checked again
    load_split(out, "train")
    assert hashed == ["targets.npy"]
    assert set(json.loads((out / store.VERIFIED).read_text())) == {f"train/{n}" for n in ARRAY_NAMES}


def test_a_dataset_where_the_memo_cannot_be_written_still_loads_verified(shards, tmp_path, caplog):
    out = tmp_path / "ds"
    _build({"train": [shards["a"]]}, out)
    (out / store.VERIFIED).mkdir()  # in the way of the memo (as a read-only folder would be)
    with caplog.at_level(logging.WARNING):
        arrays = load_split(out, "train")
    assert len(arrays["targets"]) == read_manifest(out)["splits"]["train"]["count"]
    assert any("cannot record verified files" in r.message for r in caplog.records)


def test_a_training_selection_has_its_own_cache_entries_and_leaves_golden_splits_alone(shards, tmp_path):
    from forge.ml.tokenize import q_spread

    out = tmp_path / "ds"
    plain = _build({"train": [shards["a"], shards["b"]], "val": [shards["c"]]}, out)
    val_before = load_split(out, "val")["qvals"].copy()
    picked = _build({"train": [shards["a"], shards["b"]], "val": [shards["c"]]}, out,
                    selection={"train": "decisions"})
    # the train split is sampled again (a cache entry per selection); val is untouched on disk
    assert sorted(picked.tokenized) == sorted([shards["a"], shards["b"]])
    assert picked.splits_written == ["train"] and picked.splits_unchanged == ["val"]
    manifest = read_manifest(out)
    assert manifest["splits"]["train"]["selection"] == "decisions" and "selection" not in manifest["splits"]["val"]
    train = load_split(out, "train")
    assert (q_spread(train["qvals"]) > 0).all()
    assert (q_spread(load_split(out, "val")["qvals"]) == 0).any()  # golden sets keep every kind of state
    np.testing.assert_array_equal(load_split(out, "val")["qvals"], val_before)
    want = [tokenize_shard(p, K, G, "decisions") for p in (shards["a"], shards["b"])]
    np.testing.assert_array_equal(train["qvals"], np.concatenate([w["qvals"] for w in want]))
    # both selections stay cached side by side: going back tokenizes nothing
    back = _build({"train": [shards["a"], shards["b"]], "val": [shards["c"]]}, out)
    assert back.tokenized == [] and back.splits_written == ["train"] and plain.counts == back.counts


def test_a_selection_for_an_unknown_split_or_of_an_unknown_kind_is_refused(shards, tmp_path):
    from forge.errors import InputError

    with pytest.raises(StoreError, match="selection given for split"):
        _build({"train": [shards["a"]]}, tmp_path / "ds", selection={"val": "decisions"})
    with pytest.raises(InputError, match="selection must be one of"):
        _build({"train": [shards["a"]]}, tmp_path / "ds", selection={"train": "hard"})


def test_a_shard_known_by_its_digest_builds_from_the_cache_without_its_file(shards, tmp_path):
    from forge.ml.store import Cached, MissingDataError

    out = tmp_path / "ds"
    _build({"train": [shards["a"], shards["b"]]}, out)
    before = {n: np.array(a) for n, a in load_split(out, "train").items()}
    sha_a = store.file_sha256(shards["a"])
    shards["a"].unlink()  # released after its iteration; its tokens stay cached
    again = _build({"train": [Cached(shards["a"], sha_a), shards["b"]], "val": [shards["c"]]}, out)
    assert shards["a"] in again.cached and shards["a"] not in again.tokenized
    for n, arr in load_split(out, "train").items():
        np.testing.assert_array_equal(arr, before[n], err_msg=n)
    # at a sampling never tokenized, the tokens are not there and the file is gone: say which shard
    with pytest.raises(MissingDataError, match="seed_.*the shard is gone and its tokens are not cached"):
        build_dataset({"train": [Cached(shards["a"], sha_a)]}, tmp_path / "other", K + 1, G,
                      cache_dir=tmp_path / "cache", progress=False)
