"""Shard files: one parquet file per (seed, declaration), written atomically (spec: "Shard file")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forge import __version__
from forge.atomic import atomic_write
from forge.errors import ForgeError
from forge.oracle.rules import DECL_NAMES, MAX_HAND, N_DECLS
from forge.oracle.shard_names import SHARD_NAME as _SHARD_NAME
from forge.oracle.shard_names import shard_name, shard_path

if TYPE_CHECKING:  # the solver pulls in numba; readers of shards should not pay for it
    from forge.oracle.solve import Solution

FORMAT = "forge-oracle-shard"
FORMAT_VERSION = "1"
Q_COLUMNS = tuple(f"q{i}" for i in range(7))
COLUMNS = ("state", "V", *Q_COLUMNS)
SCHEMA = pa.schema([("state", pa.int64()), ("V", pa.int8())] + [(c, pa.int8()) for c in Q_COLUMNS])
# Sorted states compress to a few bits per row as deltas; the int8 columns hold < 128 distinct
# values, so dictionary pages keep them small and fast to decode for the tokenizer.
WRITE_OPTIONS = dict(
    compression="none",
    use_dictionary=["V", *Q_COLUMNS],
    column_encoding={"state": "DELTA_BINARY_PACKED"},
    data_page_version="2.0",
)


class ShardError(ForgeError):
    """A file that should be a shard is not a readable, complete one."""


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    seed: int
    decl_id: int
    hand_size: int
    rows: int


def _metadata(sol: Solution) -> dict[bytes, bytes]:
    meta = {
        "seed": sol.seed,
        "decl_id": sol.decl_id,
        "decl_name": DECL_NAMES[sol.decl_id],
        "hand_size": sol.hand_size,
        "rows": len(sol.state),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "forge_version": __version__,
    }
    return {k.encode(): str(v).encode() for k, v in meta.items()}


def to_table(sol: Solution) -> pa.Table:
    arrays = [pa.array(sol.state), pa.array(sol.V)] + [pa.array(sol.q[i]) for i in range(7)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA.with_metadata(_metadata(sol)))


def write_shard(sol: Solution, out_dir: str | os.PathLike) -> Path:
    """Write ``sol`` to its shard path via a temp file + fsync + rename: never a partial shard."""
    target = shard_path(out_dir, sol.seed, sol.decl_id)
    return atomic_write(target, lambda fh: pq.write_table(to_table(sol), fh, **WRITE_OPTIONS))


def shard_bytes(sol: Solution) -> np.ndarray:
    """The bytes :func:`write_shard` would write, in memory (uint8, no copy of the parquet buffer):
    a solution solved elsewhere (a Ray worker) travels as these and lands byte-identical."""
    sink = pa.BufferOutputStream()
    pq.write_table(to_table(sol), sink, **WRITE_OPTIONS)
    return np.frombuffer(sink.getvalue(), dtype=np.uint8)


def write_shard_bytes(data: np.ndarray | bytes, out_dir: str | os.PathLike, seed: int, decl_id: int) -> Path:
    """Write :func:`shard_bytes` to the deal's shard path atomically, after checking that their
    footer is that deal's shard: bytes that are not never become a visible file."""
    target = shard_path(out_dir, seed, decl_id)
    _check_footer(_parquet(pa.BufferReader(pa.py_buffer(data)), target), target)
    return atomic_write(target, lambda fh: fh.write(memoryview(data)))


def _parquet(source: Path | pa.BufferReader, path: Path) -> pq.ParquetFile:
    """``source`` opened as parquet; ``path`` names it in errors."""
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"{path}: not a readable parquet shard ({exc})") from None


def _text_metadata(path: Path, pf: pq.ParquetFile) -> dict[str, str]:
    """The footer's key-value metadata as text; a flipped byte there is a damaged shard, named."""
    try:
        return {k.decode("utf-8"): v.decode("utf-8") for k, v in (pf.schema_arrow.metadata or {}).items()}
    except UnicodeDecodeError:
        raise ShardError(f"{path}: damaged shard: its metadata is not UTF-8 text") from None


def _number(path: Path, meta: dict[str, str], key: str, default: int | None = None) -> int:
    raw = meta.get(key)
    if raw is None and default is not None:
        return default
    if raw is None or not (raw.isascii() and raw.isdigit()):
        raise ShardError(f"{path}: not a shard: metadata {key!r} is missing or not a number")
    return int(raw)


def read_shard_info(path: str | os.PathLike) -> ShardInfo:
    """Metadata of a shard, checked; raises ShardError naming the file and the problem.

    The metadata says which deal a shard holds (spec: "Shard file"). Only ``seed`` and
    ``decl_id`` are required, as the public reference oracle writes no more: without
    ``hand_size`` a shard is a full game. A file named like a shard whose name disagrees with
    its metadata (a shard copied or renamed from another deal) is foreign.
    """
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: no such shard file")
    return _check_footer(_parquet(path, path), path)


def _check_footer(pf: pq.ParquetFile, path: Path) -> ShardInfo:
    names = tuple(pf.schema_arrow.names)
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ShardError(f"{path}: not a shard: missing column(s) {', '.join(missing)}")
    meta = _text_metadata(path, pf)
    seed, decl_id = _number(path, meta, "seed"), _number(path, meta, "decl_id")
    hand_size = _number(path, meta, "hand_size", default=MAX_HAND)
    if not 0 <= decl_id < N_DECLS or not 1 <= hand_size <= MAX_HAND:
        raise ShardError(f"{path}: shard metadata out of range: seed {seed}, decl_id {decl_id}, "
                         f"hand_size {hand_size}")
    if _SHARD_NAME.fullmatch(path.name) and path.name != shard_name(seed, decl_id):
        raise ShardError(f"{path}: foreign shard: its metadata says seed {seed}, declaration {decl_id} "
                         f"({shard_name(seed, decl_id)}), not the deal its name says")
    rows = pf.metadata.num_rows
    if meta.get("rows", str(rows)) != str(rows):
        raise ShardError(f"{path}: truncated shard: {rows} rows, metadata says {meta['rows']}")
    return ShardInfo(path, seed, decl_id, hand_size, rows)


def read_shard(path: str | os.PathLike, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Columns of a shard as numpy arrays (all of them by default)."""
    path = Path(path)
    read_shard_info(path)
    try:
        table = pq.read_table(path, columns=list(columns or COLUMNS), use_threads=True)
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"{path}: unreadable shard data ({exc})") from None
    return {name: table.column(name).to_numpy() for name in table.column_names}


def read_solution(path: str | os.PathLike) -> Solution:
    """A shard back as a :class:`Solution` (hands re-dealt from its seed)."""
    from forge.oracle.deal import deal
    from forge.oracle.solve import Solution

    info = read_shard_info(path)
    cols = read_shard(path)
    q = np.stack([cols[c] for c in Q_COLUMNS])
    hands = deal(info.seed, info.hand_size)
    return Solution(info.seed, info.decl_id, info.hand_size, hands, cols["state"], cols["V"], q)
