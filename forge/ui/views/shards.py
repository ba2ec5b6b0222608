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
    """All shards as one lazy frame, each row tagged with its shard's metadata."""
    meta = shards_frame(paths).lazy()
    rows = pl.scan_parquet([str(p) for p in paths], include_file_paths="path")
    return rows.join(meta.select("path", "seed", "declaration", "hand size"), on="path", how="left")


def _legal(q: str) -> pl.Expr:
    return pl.when(pl.col(q) != ILLEGAL_Q).then(pl.col(q))


def decision_frame(paths: Sequence[str | os.PathLike]) -> pl.DataFrame:
    """Per declaration: states, mean V, how many moves a player has, and how often the choice matters
    (the legal moves do not all have the same Q)."""
    if not paths:
        return pl.DataFrame()
    legal = pl.sum_horizontal([(pl.col(q) != ILLEGAL_Q).cast(pl.Int64) for q in Q_COLUMNS])
    spread = pl.max_horizontal([_legal(q) for q in Q_COLUMNS]) - pl.min_horizontal([_legal(q) for q in Q_COLUMNS])
    order = {name: k for k, name in enumerate(DECL_NAMES)}
    return (scan(paths).with_columns(legal.alias("legal"), spread.alias("spread"))
            .filter(pl.col("legal") > 0)  # terminal states have no move
            .group_by("declaration")
            .agg(pl.col("path").n_unique().alias("shards"), pl.len().alias("states with a move"),
                 pl.col("V").cast(pl.Float64).mean().alias("mean V"),
                 pl.col("legal").cast(pl.Float64).mean().alias("mean legal moves"),
                 (pl.col("legal") == 1).mean().alias("forced share"),
                 (pl.col("spread") > 0).mean().alias("choice matters share"),
                 pl.col("spread").cast(pl.Float64).mean().alias("mean best-worst spread"))
            .sort(pl.col("declaration").replace_strict(order, return_dtype=pl.Int64))
            .collect(engine="streaming"))


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
