"""The file name of a deal's shard, in a module light enough for configuration and status (no pyarrow)."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Any file named like a shard (whatever its zero-padding): its name must be its metadata's.
SHARD_NAME = re.compile(r"seed_\d+_decl_\d+\.parquet")


def shard_name(seed: int, decl_id: int) -> str:
    """The one file name of a deal's shard (spec: "Shard file")."""
    return f"seed_{seed:08d}_decl_{decl_id}.parquet"


def shard_path(out_dir: str | os.PathLike, seed: int, decl_id: int) -> Path:
    return Path(out_dir) / shard_name(seed, decl_id)
