"""Content digests of big files, computed once per file change.

Stage fingerprints name the data a stage read by its sha256; hashing gigabytes of golden shards
before every iteration would cost more than the iteration. A memo file records, per absolute path,
the file's size, mtime, ctime and inode with its digest: an unchanged file is never re-read, and
any write (even one that keeps the size) changes its times, so a stale digest cannot be served.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from forge.atomic import atomic_write_text

_CHUNK = 1 << 22


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class DigestMemo:
    """sha256 of files, remembered in ``memo_path`` by file identity; call :meth:`save` when done."""

    def __init__(self, memo_path: str | os.PathLike):
        self.path = Path(memo_path)
        try:
            data = json.loads(self.path.read_text())
            self._memo: dict[str, dict] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self._memo = {}
        self._dirty = False

    def sha256(self, path: str | os.PathLike) -> str:
        path = Path(path).resolve()
        stamp = _stamp(path)
        known = self._memo.get(str(path))
        if isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("sha256"), str):
            return known["sha256"]
        digest = sha256_file(path)
        self._memo[str(path)] = {"stamp": stamp, "sha256": digest}
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the memo back (only if something new was hashed); entries of deleted files are dropped."""
        if not self._dirty:
            return
        alive = {k: v for k, v in self._memo.items() if Path(k).exists()}
        atomic_write_text(self.path, json.dumps(alive, sort_keys=True), fsync=False)
        self._dirty = False
