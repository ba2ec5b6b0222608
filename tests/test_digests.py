"""forge.digests: a file is hashed once per change, and memo users sharing a file lose nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from forge.digests import DigestMemo


def test_a_file_is_read_once_per_change_and_shared_memos_merge(tmp_path: Path) -> None:
    a, b, memo_file = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "memo.json"
    a.write_bytes(b"alpha" * 1000)
    b.write_bytes(b"beta" * 1000)
    first, second = DigestMemo(memo_file), DigestMemo(memo_file)  # two users, both loaded before any save
    assert first.sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert second.sha256(b) == hashlib.sha256(b.read_bytes()).hexdigest()
    first.save()
    second.save()  # merges: first's entry survives
    again = DigestMemo(memo_file)
    again.sha256(a), again.sha256(b)
    assert again.hashed == []  # both known, neither re-read
    a.write_bytes(b"ALPHA" * 1000)  # same size, new content: its times changed
    os.utime(a, ns=(1, 1))  # even with the modification time put back, ctime tells
    assert again.sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest() and again.hashed == [a]


def test_a_change_is_a_warning_unless_its_owner_rewrites_the_file_by_design(tmp_path: Path, caplog) -> None:
    import logging

    shard, train = tmp_path / "shard.bin", tmp_path / "tokens.npy"
    for path in (shard, train):
        path.write_bytes(b"first")
    memo = DigestMemo(tmp_path / "digests.json")
    memo.sha256(shard), memo.sha256(train, rewritten=True)
    for path in (shard, train):
        path.write_bytes(b"second, longer")
    with caplog.at_level(logging.DEBUG, logger="forge.digests"):
        memo.sha256(shard), memo.sha256(train, rewritten=True)
    levels = {r.getMessage().split(":")[0]: r.levelno for r in caplog.records if "changed" in r.getMessage()}
    assert levels == {str(shard): logging.WARNING, str(train): logging.DEBUG}
