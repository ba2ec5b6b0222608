"""Analysis across the shard store with polars' lazy ``scan_parquet``: only the columns a question
needs are read, shard by shard, in a streaming query, so it scales past memory.

Which deal a shard holds comes from its metadata (spec: the file name may lie), read from each
file's footer and joined onto the scan by path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from forge.oracle.rules import DECL_NAMES, ILLEGAL_Q
from forge.oracle.shard import Q_COLUMNS, read_shard_info
from forge.ui.views.positions import tricks_played_expr


def store_shards(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """The shards in a store folder, newest seeds last; ``limit`` keeps the last ones."""
    paths = sorted(Path(folder).glob("*.parquet"))
    return paths[-limit:] if limit else paths


def shards_frame(paths: Sequence[str | os.PathLike]) -> pl.DataFrame:
    """Footer facts per shard: path, seed, declaration, hand size, states."""
    infos = [read_shard_info(p) for p in paths]
    return pl.DataFrame({"path": [str(i.path) for i in infos], "seed": [i.seed for i in infos],
                         "declaration": [DECL_NAMES[i.decl_id] for i in infos],
                         "hand size": [i.hand_size for i in infos], "states": [i.rows for i in infos]},
                        schema={"path": pl.String, "seed": pl.Int64, "declaration": pl.String,
                                "hand size": pl.Int64, "states": pl.Int64})


def scan(paths: Sequence[str | os.PathLike]) -> pl.LazyFrame:
    """All shards as one lazy frame, each row tagged with its shard's metadata.

    One lazy scan per shard with its footer's facts as constant columns, concatenated: projection
    and predicate pushdown reach every file, and no per-row join on a path string is needed (that
    join made a 73M-state analysis take three times as long)."""
    frames = []
    for info in (read_shard_info(p) for p in paths):
        frames.append(pl.scan_parquet(str(info.path)).with_columns(
            pl.lit(str(info.path)).alias("path"), pl.lit(info.seed, pl.Int64).alias("seed"),
            pl.lit(DECL_NAMES[info.decl_id]).alias("declaration"), pl.lit(info.hand_size, pl.Int64).alias("hand size")))
    return pl.concat(frames, how="vertical") if frames else pl.LazyFrame()


def decision_frame(paths: Sequence[str | os.PathLike]) -> pl.DataFrame:
    """Per declaration: states, mean V, how many moves a player has, and how often the choice matters
    (the legal moves do not all have the same Q).

    Each shard is summed on its own (counts and sums, all in one streaming pass over its V and Q
    columns), then the sums are combined per declaration: exact, and no per-row tag is carried."""
    if not paths:
        return pl.DataFrame()
    # plain integer arithmetic, no when/then per column: ILLEGAL_Q is the lowest int8, so the highest Q
    # is the highest legal one; for the lowest, an illegal slot is lifted far above any legal Q
    illegal = [pl.col(q) == ILLEGAL_Q for q in Q_COLUMNS]
    legal = len(Q_COLUMNS) - pl.sum_horizontal([i.cast(pl.Int8) for i in illegal])
    high = pl.max_horizontal([pl.col(q) for q in Q_COLUMNS]).cast(pl.Int16)
    low = pl.min_horizontal([pl.col(q).cast(pl.Int16) + i.cast(pl.Int16) * 512 for q, i in zip(Q_COLUMNS, illegal)])
    sums = []
    for info in (read_shard_info(p) for p in paths):
        sums.append(pl.scan_parquet(str(info.path))
                    .select("V", legal.alias("legal"), (high - low).alias("spread"))
                    .filter(pl.col("legal") > 0)  # terminal states have no move
                    .select(pl.len().cast(pl.Int64).alias("n"), pl.col("V").cast(pl.Int64).sum().alias("v"),
                            pl.col("legal").cast(pl.Int64).sum().alias("legal"),
                            (pl.col("legal") == 1).sum().cast(pl.Int64).alias("forced"),
                            (pl.col("spread") > 0).sum().cast(pl.Int64).alias("matters"),
                            pl.col("spread").cast(pl.Int64).sum().alias("spread"))
                    .with_columns(pl.lit(info.decl_id, pl.Int64).alias("decl")))
    per_shard = pl.concat(sums).collect(engine="streaming")
    n = pl.col("n").sum()
    return (per_shard.group_by("decl")
            .agg(pl.len().cast(pl.UInt32).alias("shards"), n.cast(pl.UInt32).alias("states with a move"),
                 (pl.col("v").sum() / n).alias("mean V"), (pl.col("legal").sum() / n).alias("mean legal moves"),
                 (pl.col("forced").sum() / n).alias("forced share"),
                 (pl.col("matters").sum() / n).alias("choice matters share"),
                 (pl.col("spread").sum() / n).alias("mean best-worst spread"))
            .sort("decl")
            .select(pl.col("decl").replace_strict(dict(enumerate(DECL_NAMES)), return_dtype=pl.String)
                    .alias("declaration"), pl.exclude("decl")))


def depth_decl_frame(paths: Sequence[str | os.PathLike]) -> pl.DataFrame:
    """States per declaration and trick depth over the shards (one hand size at a time)."""
    if not paths:
        return pl.DataFrame()
    sizes = set(shards_frame(paths)["hand size"].to_list())
    if len(sizes) != 1:
        raise ValueError(f"shards of several hand sizes ({sorted(sizes)}): analyse one store folder at a time")
    return (scan(paths).select("declaration", tricks_played_expr(sizes.pop()))
            .group_by("declaration", "tricks played").agg(pl.len().alias("states"))
            .sort("declaration", "tricks played").collect(engine="streaming"))


def depth_decl_figure(frame: pl.DataFrame) -> Figure:
    """States per trick depth, one line per declaration (log scale)."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name in DECL_NAMES:
        part = frame.filter(pl.col("declaration") == name)
        if len(part):
            ax.plot(part["tricks played"], part["states"], "o-", ms=3, label=name)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("tricks already played")
    ax.set_ylabel("states")
    ax.set_title("states per trick depth across the store", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
