"""Tokenized training-data store: tokenize each shard once, assemble splits from the cache.

The flywheel adds shards every iteration, so a shard is tokenized once and cached under a key
made of its content hash, the sample count, the global seed and the format version; building
a dataset touches only shards missing from the cache. Layout::

    <cache_dir>/digests.json                            path + stat -> content sha256 (forge.digests' memo)
    <cache_dir>/v<FORMAT>/<sha[:2]>/<sha>-k<K>-g<G>[-<selection>].npz  one tokenized shard: 8 arrays + "meta"
    <out_dir>/manifest.json                             sources, counts and checksums per split
    <out_dir>/<split>/<name>.npy                        the split's shards concatenated, int8
    <out_dir>/.verified.json                            path + stat of array files that passed (a memo)

``cache_dir`` defaults to ``<out_dir>/../cache`` so that datasets built side by side share it.
Every file is written to a temp file and renamed into place, so a crash never leaves a
half-written entry or split behind. One build per ``out_dir`` at a time.

Loading trusts nothing it has not checked: the manifest must be well-formed, and each array
file must match the manifest's sha256 and hold only values the model has embeddings for (a
corrupt file is a StoreError naming it, not wrong metrics or a crash deep in the model). A
file is checked once per change of its size, times or inode, remembered in ``.verified.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from forge.atomic import atomic_write, writable_dir
from forge.digests import MEMO_NAME, DigestMemo, file_stamp
from forge.digests import sha256_file as file_sha256
from forge.errors import ForgeError
from forge.ml.tokenize import (
    ARRAY_NAMES,
    FEATURE_VOCAB,
    FORMAT_VERSION,
    N_FEATURES,
    N_TOKENS,
    check_selection,
    tokenize_shard,
)
from forge.oracle.rules import ILLEGAL_Q, MAX_HAND, N_PLAYERS, TOTAL_POINTS
from forge.oracle.shard import ShardError, read_shard_info

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VERIFIED = ".verified.json"
#: Trailing shape of each array; the leading axis is the sample.
SHAPES: dict[str, tuple[int, ...]] = {
    "tokens": (N_TOKENS, N_FEATURES),
    "masks": (N_TOKENS,),
    "players": (),
    "teams": (),
    "values": (),
    "qvals": (MAX_HAND,),
    "legal": (MAX_HAND,),
    "targets": (),
}
#: Inclusive (low, high) of each array's values; tokens per feature (the model's vocabulary),
#: qvals apart from ILLEGAL_Q (an illegal move).
VALUE_RANGES: dict[str, tuple[object, object]] = {
    "tokens": (0, np.array(FEATURE_VOCAB) - 1),
    "masks": (0, 1),
    "players": (0, N_PLAYERS - 1),
    "teams": (0, 1),
    "values": (-TOTAL_POINTS, TOTAL_POINTS),
    "qvals": (-TOTAL_POINTS, TOTAL_POINTS),
    "legal": (0, 1),
    "targets": (0, MAX_HAND - 1),
}
_CHECK_ROWS = 1 << 16  # samples per chunk when range-checking a memory-mapped array
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_LEFTOVER = re.compile(r"^\.[A-Za-z0-9][A-Za-z0-9_-]*\.(tmp|old)-\d+$")


class StoreError(ForgeError, ValueError):
    """A dataset request or store state that cannot be honoured; the message says which file."""


class MissingDataError(StoreError, FileNotFoundError):
    """A dataset, split or array file that is not there (also a FileNotFoundError)."""


@dataclass
class BuildStats:
    """What a build did; ``tokenized`` is the observable measure of incrementality."""

    out_dir: Path
    cache_dir: Path
    tokenized: list[Path] = field(default_factory=list)  # cache misses, tokenized by this call
    cached: list[Path] = field(default_factory=list)  # served from the cache
    hashed: list[Path] = field(default_factory=list)  # content hash (re)computed (new or touched)
    splits_written: list[str] = field(default_factory=list)
    splits_unchanged: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- files


def _write_json(path: Path, obj: object) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode()))


def _arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in ARRAY_NAMES:
        h.update(np.ascontiguousarray(arrays[name]).data)
    return h.hexdigest()


# ---------------------------------------------------------------- cache entries


def entry_path(cache_dir: Path, sha: str, samples_per_shard: int, global_seed: int, selection: str = "all") -> Path:
    """A tokenized shard's cache file; "all" (the spec's sampling) keeps the name it always had."""
    tail = "" if selection == "all" else f"-{selection}"
    return Path(cache_dir) / f"v{FORMAT_VERSION}" / sha[:2] / f"{sha}-k{samples_per_shard}-g{global_seed}{tail}.npz"


def _expected(sha: str, k: int, g: int, selection: str = "all") -> dict[str, object]:
    expect: dict[str, object] = {"format_version": FORMAT_VERSION, "shard_sha256": sha, "samples_per_shard": k,
                                 "global_seed": g}
    if selection != "all":  # entries of the spec's sampling carry no key, as before selections existed
        expect["selection"] = selection
    return expect


def _read_entry(path: Path, expect: Mapping[str, object], arrays: bool) -> tuple[dict, dict | None] | None:
    """(meta, arrays or None) of a usable entry; None, with a warning, for a stale or broken one."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            stale = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
            if stale:
                log.warning("%s: stale cache entry (%s); tokenizing again", path,
                            ", ".join(f"{k}={a!r}, want {b!r}" for k, (a, b) in stale.items()))
                return None
            if set(z.files) != {*ARRAY_NAMES, "meta"}:
                raise ValueError(f"members {sorted(z.files)}")
            if not arrays:
                return meta, None
            data = {name: z[name] for name in ARRAY_NAMES}
        shapes_ok = all(
            data[n].dtype == np.int8 and data[n].shape == (meta["samples"], *SHAPES[n]) for n in ARRAY_NAMES
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        log.warning("%s: unreadable cache entry (%s); tokenizing again", path, e)
        return None
    if not shapes_ok or _arrays_sha256(data) != meta.get("data_sha256"):
        log.warning("%s: cache entry fails its checksum; tokenizing again", path)
        return None
    return meta, data


def usable_entry(cache_dir: str | Path, sha: str, samples_per_shard: int, global_seed: int,
                 selection: str = "all") -> bool:
    """Whether shard ``sha``'s tokens are cached at this sampling, as far as the entry's header says (its
    metadata and members: cheap, no array is read). A damaged entry is removed (with a warning naming it),
    so that the caller tokenizes, or solves, that shard again; damage inside an array is found when the
    split is written (:func:`_write_split`), which removes the entry and names it."""
    path = entry_path(Path(cache_dir), sha, samples_per_shard, global_seed, selection)
    if not path.exists():
        return False
    if _read_entry(path, _expected(sha, samples_per_shard, global_seed, selection), arrays=False) is None:
        path.unlink(missing_ok=True)
        return False
    return True


def _tokenize_into_cache(shard: Path, entry: Path, expect: Mapping[str, object]) -> tuple[dict, dict]:
    info = read_shard_info(shard)
    arrays = tokenize_shard(shard, int(expect["samples_per_shard"]), int(expect["global_seed"]),
                            str(expect.get("selection", "all")))
    meta = {
        **expect,
        "source": str(shard),
        "seed": info.seed,
        "decl_id": info.decl_id,
        "hand_size": info.hand_size,
        "rows": info.rows,
        "samples": len(arrays["targets"]),
        "data_sha256": _arrays_sha256(arrays),
    }
    payload = {**arrays, "meta": np.array(json.dumps(meta))}
    atomic_write(entry, lambda f: np.savez(f, **payload))
    return meta, arrays


# ---------------------------------------------------------------- dataset


@dataclass
class _Shard:
    path: Path
    sha: str
    entry: Path
    k: int  # samples per shard of the split it belongs to
    selection: str = "all"  # which states it samples (forge.ml.settings.SELECTIONS)
    meta: dict | None = None


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Cached:
    """A shard known by the content digest an earlier build or stage recorded for it: its tokens are
    read from the cache, so the file itself is needed only if they are not there (a training window
    replays earlier iterations' deals without solving them again)."""

    path: Path
    sha256: str


Source = str | os.PathLike | Cached


def _source_path(source: Source) -> Path:
    return Path(source.path) if isinstance(source, Cached) else Path(source)


def _check_request(shards_by_split: Mapping[str, Sequence[Source]], k: int, g: int) -> None:
    if not _is_int(k) or k < 1:
        raise StoreError(f"samples per shard must be a positive integer, got {k!r}")
    if not _is_int(g) or g < 0:
        raise StoreError(f"global seed must be a non-negative integer, got {g!r}")
    if not shards_by_split:
        raise StoreError("no splits given")
    owner: dict[Path, str] = {}
    for split, paths in shards_by_split.items():
        if not _SPLIT_NAME.match(split):
            raise StoreError(f"bad split name {split!r} (letters, digits, '_' and '-' only)")
        if not paths:
            raise StoreError(f"split {split!r} has no shards")
        for source in paths:
            p = _source_path(source)
            if not isinstance(source, Cached) and not p.is_file():
                raise ShardError(f"{p}: no such shard file")
            key = p.resolve()
            if key in owner:
                where = "twice in split" if owner[key] == split else f"in splits {owner[key]!r} and"
                raise StoreError(f"{p}: listed {where} {split!r}")
            owner[key] = split


def _split_matches(old: Mapping | None, sources: list[dict], split_dir: Path) -> bool:
    """Whether the split on disk already holds exactly these sources."""
    if not old or old.get("sources") != sources:
        return False
    for name in ARRAY_NAMES:
        try:
            arr = np.load(split_dir / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError):
            return False
        if arr.dtype != np.int8 or arr.shape != (old["count"], *SHAPES[name]):
            return False
    return True


def _write_split(
    tmp_dir: Path, shards: list[_Shard], expect: Callable[[_Shard], dict], stats: BuildStats
) -> dict[str, str]:
    """Concatenate the shards' cached arrays into ``tmp_dir/<name>.npy``; return file checksums."""
    tmp_dir.mkdir(parents=True)
    total = sum(s.meta["samples"] for s in shards)
    open_memmap = np.lib.format.open_memmap
    out = {
        n: open_memmap(tmp_dir / f"{n}.npy", mode="w+", dtype=np.int8, shape=(total, *SHAPES[n]))
        for n in ARRAY_NAMES
    }
    start = 0
    for s in shards:
        got = _read_entry(s.entry, expect(s), arrays=True)
        if got is None and not s.path.is_file():  # corrupt, and nothing to tokenize it again from
            s.entry.unlink(missing_ok=True)
            raise MissingDataError(f"{s.entry}: corrupt token-cache entry of {s.path}, whose shard is gone: removed, "
                                   "so that building again solves the deal again (the flywheel: `retry`)")
        if got is None:  # vanished or corrupted since the first pass
            got = _tokenize_into_cache(s.path, s.entry, expect(s))
            stats.tokenized.append(s.path)
        meta, data = got
        if meta["samples"] != s.meta["samples"]:
            raise StoreError(f"{s.entry}: sample count changed during the build")
        for n in ARRAY_NAMES:
            out[n][start : start + meta["samples"]] = data[n]
        start += meta["samples"]
    for arr in out.values():
        arr.flush()
    del out
    return {n: "sha256:" + file_sha256(tmp_dir / f"{n}.npy") for n in ARRAY_NAMES}


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(data_dir: str | Path) -> dict:
    """The dataset's manifest, checked for every field readers use; StoreError naming it if not."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not data_dir.is_dir():
        raise MissingDataError(f"{data_dir}: no such dataset directory")
    if not path.is_file():
        raise MissingDataError(f"{path}: missing; {data_dir} is not a tokenized dataset")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StoreError(f"{path}: unreadable manifest: not UTF-8 text (byte {e.start}); rebuild the dataset") from None
    except ValueError as e:
        raise StoreError(f"{path}: unreadable manifest: {e}; rebuild the dataset") from None
    if isinstance(manifest, dict) and manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{path}: format version {manifest.get('format_version')!r}, this code reads "
                         f"{FORMAT_VERSION}; rebuild the dataset")
    problem = _manifest_problem(manifest)
    if problem:
        raise StoreError(f"{path}: malformed manifest: {problem}; rebuild the dataset")
    return manifest


def _manifest_problem(manifest: object) -> str | None:
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if not _is_int(manifest.get("global_seed")) or manifest["global_seed"] < 0:
        return f"global_seed {manifest.get('global_seed')!r} is not a non-negative integer"
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return "'splits' is not an object"
    for name, entry in splits.items():
        if not _SPLIT_NAME.match(name):
            return f"bad split name {name!r}"
        if not isinstance(entry, dict):
            return f"split {name!r} is not an object"
        if not _is_int(entry.get("count")) or entry["count"] < 0:
            return f"split {name!r} has no valid 'count' (got {entry.get('count')!r})"
        sums = entry.get("checksums")
        if not isinstance(sums, dict) or not all(
            isinstance(sums.get(n), str) and sums[n].startswith("sha256:") for n in ARRAY_NAMES
        ):
            return f"split {name!r} lacks a sha256 checksum for each of {', '.join(ARRAY_NAMES)}"
        sources = entry.get("sources")
        if not isinstance(sources, list) or not all(
            isinstance(src, dict) and isinstance(src.get("path"), str) for src in sources
        ):
            return f"split {name!r} has no list of sources with paths"
    return None


def build_dataset(
    shards_by_split: Mapping[str, Sequence[Source]],
    out_dir: str | Path,
    samples_per_shard: int | Mapping[str, int],
    global_seed: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    selection: Mapping[str, str] | None = None,
) -> BuildStats:
    """Tokenize the shards not yet cached, then write each split as memory-mappable arrays.

    Splits are exactly as given (a shard may sit in one split only), concatenated in the given
    order. ``samples_per_shard`` is one count for every split or a count per split (golden sets
    are often sampled at their own rate). ``selection`` names the states a split samples from
    (:data:`forge.ml.settings.SELECTIONS`; splits left out: "all"). Splits whose sources and
    sampling did not change are left as they are. ``cache_dir`` defaults to ``<out_dir>/../cache``.
    A source may be :class:`Cached`: a shard known by its digest, whose file may be gone as long as
    its tokens are cached at this sampling (else MissingDataError naming it).
    """
    sel = {split: check_selection((selection or {}).get(split, "all")) for split in shards_by_split}
    unknown = sorted(set(selection or {}) - set(shards_by_split))
    if unknown:
        raise StoreError(f"selection given for split(s) {', '.join(unknown)} that are not built")
    if isinstance(samples_per_shard, Mapping):
        ks = dict(samples_per_shard)
        missing_k = sorted(set(shards_by_split) - set(ks))
        if missing_k:
            raise StoreError(f"no samples-per-shard count for split(s) {', '.join(missing_k)}")
    else:
        ks = {split: samples_per_shard for split in shards_by_split}
    for k in ks.values():
        _check_request(shards_by_split, k, global_seed)
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir.resolve().parent / "cache"
    for folder in (out_dir, cache_dir):  # a file in the way fails now, not after the tokenizing
        writable_dir(folder)
    stats = BuildStats(out_dir=out_dir, cache_dir=cache_dir)
    g = int(global_seed)

    memo = DigestMemo(cache_dir / MEMO_NAME)  # content sha256 of each shard, re-read only when it changes
    shards: dict[Path, _Shard] = {}
    by_sha: dict[str, Path] = {}
    for split, paths in shards_by_split.items():
        for source in paths:
            p = _source_path(source)
            sha = source.sha256 if isinstance(source, Cached) else memo.sha256(p)
            if sha in by_sha:
                raise StoreError(f"{p}: same content as {by_sha[sha]}; a shard may be used once")
            by_sha[sha] = p
            shards[p] = _Shard(p, sha, entry_path(cache_dir, sha, int(ks[split]), g, sel[split]), k=int(ks[split]),
                               selection=sel[split])

    def expect(s: _Shard) -> dict:
        return _expected(s.sha, s.k, g, s.selection)

    missing = []
    for s in shards.values():
        got = _read_entry(s.entry, expect(s), arrays=False)
        if got is None:
            missing.append(s)
        else:
            s.meta = got[0]
            stats.cached.append(s.path)
    for s in missing:  # check every footer first: a bad shard fails before any long work
        if not s.path.is_file():
            raise MissingDataError(f"{s.path}: the shard is gone and its tokens are not cached at this sampling "
                                   f"(k={s.k}, global seed {g}, {s.selection} states; cache entry {s.entry} is "
                                   "missing or corrupt): generate it again")
        read_shard_info(s.path)
    for s in tqdm(missing, desc="tokenizing shards", unit="shard", disable=not progress or not missing):
        s.meta = _tokenize_into_cache(s.path, s.entry, expect(s))[0]
        stats.tokenized.append(s.path)
    stats.hashed = memo.hashed
    memo.save()

    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.iterdir():  # split folders of a crashed build
        if _LEFTOVER.match(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)
    try:
        old = read_manifest(out_dir)
    except (FileNotFoundError, StoreError):
        old = {}
    reusable = old.get("splits", {}) if old.get("global_seed") == g else {}
    uniform = len(set(ks.values())) == 1
    manifest = {"format_version": FORMAT_VERSION, "global_seed": g,
                "samples_per_shard": next(iter(ks.values())) if uniform else ks, "splits": {}}
    for split, paths in shards_by_split.items():
        members = [shards[_source_path(p)] for p in paths]
        sources = [
            {"path": str(s.path), "sha256": s.sha, **{f: s.meta[f] for f in
             ("seed", "decl_id", "hand_size", "rows", "samples")}}
            for s in members
        ]
        prev = reusable.get(split)
        if prev is not None and (prev.get("samples_per_shard") != ks[split]
                                 or prev.get("selection", "all") != sel[split]):
            prev = None
        if _split_matches(prev, sources, out_dir / split):
            manifest["splits"][split] = prev
            stats.splits_unchanged.append(split)
        else:
            tmp = out_dir / f".{split}.tmp-{os.getpid()}"
            try:
                checksums = _write_split(tmp, members, expect, stats)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            (out_dir / MANIFEST).unlink(missing_ok=True)  # a crash from here on leaves no stale manifest
            _swap_in(tmp, out_dir / split)
            count = sum(s["samples"] for s in sources)
            manifest["splits"][split] = {"count": count, "samples_per_shard": ks[split], "sources": sources,
                                         "checksums": checksums}
            if sel[split] != "all":
                manifest["splits"][split]["selection"] = sel[split]
            stats.splits_written.append(split)
        stats.counts[split] = manifest["splits"][split]["count"]
    for split in old.get("splits", {}):
        if split not in manifest["splits"]:
            shutil.rmtree(out_dir / split, ignore_errors=True)
    _write_json(out_dir / MANIFEST, manifest)
    return stats


def tokenize_to_cache(shard: str | Path, cache_dir: str | Path, samples_per_shard: int, global_seed: int,
                      selection: str = "all") -> bool:
    """Tokenize one shard into the cache unless it is there already (True when it tokenized): a later
    :func:`build_dataset` at the same sampling then finds it, e.g. deals solved ahead of their iteration."""
    _check_request({"train": [shard]}, samples_per_shard, global_seed)
    cache_dir = Path(cache_dir)
    memo = DigestMemo(cache_dir / MEMO_NAME)
    try:
        sha = memo.sha256(Path(shard))
    finally:
        memo.save()
    entry = entry_path(cache_dir, sha, samples_per_shard, global_seed, check_selection(selection))
    expect = _expected(sha, samples_per_shard, global_seed, selection)
    if _read_entry(entry, expect, arrays=False) is not None:
        return False
    _tokenize_into_cache(Path(shard), entry, expect)
    return True


def load_split(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """The split's arrays, memory-mapped read-only (np.load mmap_mode='r'), each file checked
    against the manifest's checksum and the value ranges (once per change of the file)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    entry = manifest["splits"].get(split)
    if entry is None:
        have = ", ".join(sorted(manifest["splits"])) or "none"
        raise MissingDataError(f"{data_dir}: no split {split!r} (have: {have})")
    out = {}
    for name in ARRAY_NAMES:
        path = data_dir / split / f"{name}.npy"
        if not path.is_file():
            raise MissingDataError(f"{path}: missing; rebuild the dataset")
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, EOFError) as e:
            raise StoreError(f"{path}: not a readable .npy array ({e}); rebuild the dataset") from None
        if arr.dtype != np.int8 or arr.shape != (entry["count"], *SHAPES[name]):
            raise StoreError(f"{path}: shape {arr.shape} {arr.dtype} disagrees with the manifest "
                             f"({entry['count']} samples); rebuild the dataset")
        out[name] = arr
    _verify_arrays(data_dir, split, entry, out)
    return out


def _verify_arrays(data_dir: Path, split: str, entry: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
    """Checksum and value ranges of each array file not verified since it last changed."""
    memo_path = data_dir / VERIFIED
    memo = _read_memo(memo_path)
    changed = False
    for name in ARRAY_NAMES:
        path = data_dir / split / f"{name}.npy"
        key, stamp = f"{split}/{name}", [*file_stamp(path), entry["checksums"][name]]
        if memo.get(key) == stamp:
            continue
        if "sha256:" + file_sha256(path) != entry["checksums"][name]:
            raise StoreError(f"{path}: contents do not match the checksum in {data_dir / MANIFEST} "
                             "(corrupt or changed since the build); rebuild the dataset")
        problem = _value_problem(name, arrays[name])
        if problem:
            raise StoreError(f"{path}: {problem}; rebuild the dataset")
        memo[key], changed = stamp, True
    if changed:
        try:
            _write_json(memo_path, memo)
        except OSError as e:  # a read-only dataset is still usable: it is verified on every load
            log.warning("%s: cannot record verified files (%s)", memo_path, e)


def _read_memo(path: Path) -> dict:
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _value_problem(name: str, arr: np.ndarray) -> str | None:
    """The first value of an array outside :data:`VALUE_RANGES`, described; None if none."""
    lo, hi = VALUE_RANGES[name]
    for start in range(0, len(arr), _CHECK_ROWS):
        chunk = np.asarray(arr[start : start + _CHECK_ROWS])
        if name == "qvals":
            chunk = np.where(chunk == ILLEGAL_Q, 0, chunk)
        bad = (chunk < lo) | (chunk > hi)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"sample {start + at[0]}" + (f", token {at[1]}, feature {at[2]}" if name == "tokens" else "")
            top = np.broadcast_to(hi, chunk.shape)[at]
            return f"value {int(chunk[at])} at {where} is outside {lo}..{int(top)}"
    return None


def verify_split(data_dir: str | Path, split: str) -> list[str]:
    """Names of the split's arrays whose file checksum differs from the manifest (empty: golden)."""
    manifest = read_manifest(data_dir)
    sums = manifest["splits"][split]["checksums"]
    return [n for n in ARRAY_NAMES if "sha256:" + file_sha256(Path(data_dir) / split / f"{n}.npy") != sums[n]]
