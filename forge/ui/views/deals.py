"""What the generate stage made: each deal's hands and opening values, and the shape of a shard.

Per-shard statistics read one shard (the deal on show) through polars, so the notebook stays
quick on full-size shards; the table of all the iteration's deals reads only footers and the
one row group holding each initial state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from forge.flywheel.stages.generate import GenerateResult
from forge.oracle.deal import deal
from forge.oracle.generate import root_values
from forge.oracle.rules import DECL_NAMES
from forge.oracle.shard import read_shard_info
from forge.oracle.state import initial_state
from forge.ui.views.positions import Board, board_html, trick_plays_expr, tricks_played_expr


def shown_shards(ctx: Any) -> list[Path]:
    """The iteration's training shards still on disk; else (pretraining streams its deals, and
    keep_shards: golden deletes them once recorded) the golden val shards, saying so."""
    here = [p for p in ctx.train_shards if p.is_file()]
    if here:
        return here
    why = ("pretraining streams its deals through the train stage" if ctx.is_pretrain
           else "its training shards are deleted once tokenized (keep_shards: golden)")
    print(f"iteration {ctx.iteration}: {why}; showing the golden val deals instead")
    return [p for p in ctx.golden_shards("val") if p.is_file()]


def opening(path: str | os.PathLike) -> Board:
    """The deal of a shard at its first lead, with the oracle's root V and the Q of each opening move."""
    info = read_shard_info(path)
    v, q = root_values(Path(path), info.hand_size)
    return Board(deal(info.seed, info.hand_size), info.decl_id, initial_state(info.hand_size), np.array(q), v)


def deal_html(shard: str | os.PathLike) -> str:
    """The four hands as dominoes, the declaration, root V and the Q of each opening move."""
    info = read_shard_info(shard)
    return board_html(opening(shard), f"seed {info.seed} · {DECL_NAMES[info.decl_id]} · {info.rows:,} states "
                      f"({Path(shard).name})", css_class="forge-deal")


def deals_frame(paths: Sequence[str | os.PathLike]) -> pl.DataFrame:
    """One row per deal: seed, declaration, states, root V and the opening moves' spread."""
    rows = []
    for p in paths:
        info, board = read_shard_info(p), opening(p)
        mq = board.mover_q()
        rows.append({"seed": info.seed, "declaration": DECL_NAMES[info.decl_id], "states": info.rows,
                     "root V": board.value, "best opening": len(board.best),
                     "worst opening loses": max(mq.values()) - min(mq.values())})
    return pl.DataFrame(rows)


def depth_frame(path: str | os.PathLike) -> pl.DataFrame:
    """States per trick depth in one shard (tricks already played), and how many start a trick."""
    n = read_shard_info(path).hand_size
    return (pl.scan_parquet(path).select(tricks_played_expr(n), trick_plays_expr())
            .group_by("tricks played").agg(pl.len().alias("states"), (pl.col("plays") == 0).sum().alias("trick starts"))
            .sort("tricks played").with_columns((pl.col("states") / pl.col("states").sum()).alias("share"))
            .collect())


def value_frame(path: str | os.PathLike) -> pl.DataFrame:
    """How many states of the shard have each V (team-0 points)."""
    return pl.scan_parquet(path).group_by("V").agg(pl.len().alias("states")).sort("V").collect()


def shard_figure(shard: str | os.PathLike) -> Figure:
    """States per trick depth (log scale) beside the distribution of V over the shard."""
    depth, values = depth_frame(shard), value_frame(shard)
    fig, (ax_d, ax_v) = plt.subplots(1, 2, figsize=(10, 3.2))
    ax_d.bar(depth["tricks played"], depth["states"], color="#74add1")
    ax_d.set_yscale("log")
    ax_d.set_xticks(depth["tricks played"].to_list())
    ax_d.set_xlabel("tricks already played")
    ax_d.set_ylabel("states")
    ax_d.set_title("states per trick depth")
    ax_v.bar(values["V"], values["states"], width=1.0, color="#f46d43")
    ax_v.axvline(0, color="#333", lw=0.8)
    ax_v.set_xlabel("V (team 0 minus team 1, points still to come)")
    ax_v.set_ylabel("states")
    ax_v.set_title("distribution of V over the shard")
    fig.suptitle(Path(shard).name, fontsize=9)
    fig.tight_layout()
    return fig


def timing_frame(result: GenerateResult, split: str | None = None) -> pl.DataFrame:
    """Seconds per deal, as the stage recorded them (deals kept from before took no time);
    ``split``: only ``"train"`` or ``"golden"`` deals."""
    shards = [s for s in result.shards if split is None or s.split == split]
    rows = [{"split": s.split, "seed": s.seed, "declaration": DECL_NAMES[s.decl], "states": s.rows,
             "seconds": s.seconds, "kept": s.kept} for s in shards]
    return pl.DataFrame(rows, schema={"split": pl.String, "seed": pl.Int64, "declaration": pl.String,
                                      "states": pl.Int64, "seconds": pl.Float64, "kept": pl.Boolean})


def timing_summary(result: GenerateResult) -> pl.DataFrame:
    """Per split: deals solved now, deals kept, mean and total solving seconds, states per second."""
    solved = pl.col("kept").not_()
    seconds = pl.col("seconds").filter(solved)
    return timing_frame(result).group_by("split", maintain_order=True).agg(
        solved.sum().alias("deals solved"), pl.col("kept").sum().alias("deals kept"),
        seconds.mean().alias("seconds per deal"), seconds.sum().alias("solving seconds"),
        (pl.col("states").filter(solved).sum() / seconds.sum()).alias("states per second"))


def shard_choices(paths: Sequence[str | os.PathLike]) -> list[tuple[str, Path]]:
    """Dropdown options: each shard by its deal."""
    out = []
    for p in paths:
        info = read_shard_info(p)
        out.append((f"seed {info.seed} {DECL_NAMES[info.decl_id]}", Path(p)))
    return out
