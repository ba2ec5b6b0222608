"""Content digests of big files, computed once per file change.

Stage fingerprints name the data a stage read by its sha256; hashing gigabytes of golden shards
before every iteration would cost more than the iteration. A memo file records, per absolute path,
the file's size, mtime, ctime and inode with its digest: an unchanged file is never re-read, and
any write (even one that keeps the size) changes its times, so a stale digest cannot be served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from forge.atomic import atomic_write_text

log = logging.getLogger(__name__)
_CHUNK = 1 << 22
#: The memo's file name, in whatever folder keeps it (the token cache's, in a workspace).
MEMO_NAME = "digests.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(path: Path) -> list[int]:
    """A file's identity as far as a memo cares: size, mtime, ctime, inode (any write changes it)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class DigestMemo:
    """sha256 of files, remembered in ``memo_path`` by file identity; call :meth:`save` when done.

    Several users may share one memo file (the flywheel's stages and the token store do): a save
    merges with what is on disk, so nobody's entries are lost. ``hashed`` lists the files this
    instance had to read (new, or changed since last seen).
    """

    def __init__(self, memo_path: str | os.PathLike):
        self.path = Path(memo_path)
        self._memo = _read(self.path)
        self._new: dict[str, dict] = {}
        self.hashed: list[Path] = []

    def sha256(self, path: str | os.PathLike, rewritten: bool = False) -> str:
        """The file's sha256, read again only if it changed since last seen; a changed content is
        logged as a warning unless ``rewritten`` says its owner rewrites it by design."""
        given = Path(path)
        key = str(given.resolve())
        stamp = file_stamp(given)
        known = self._memo.get(key)
        if isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("sha256"), str):
            return known["sha256"]
        digest = sha256_file(given)
        self.hashed.append(given)
        if isinstance(known, dict) and known.get("sha256") not in (None, digest):
            level = logging.DEBUG if rewritten else logging.WARNING
            log.log(level, "%s: content changed since it was last seen", given)
        self._memo[key] = self._new[key] = {"stamp": stamp, "sha256": digest}
        return digest

    def save(self) -> None:
        """Write new digests back (merged with the file as it is now); entries of deleted files are dropped."""
        if not self._new:
            return
        merged = {**_read(self.path), **self._new}
        alive = {k: v for k, v in merged.items() if Path(k).exists()}
        atomic_write_text(self.path, json.dumps(alive, sort_keys=True), fsync=False)
        self._new = {}
