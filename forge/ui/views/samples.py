"""What the tokenize stage made: a sample decoded back into a position, what the splits hold, the cache.

Everything is read from the dataset's memory-mapped token arrays (spec "Tokenized sample
(format v1)"): only the arrays a view needs are touched.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from forge.errors import InputError
from forge.flywheel.stages.tokenize import TokenizeResult
from forge.ml.store import load_split, read_manifest
from forge.ml.tokenize import F_DECL
from forge.oracle.rules import DECL_NAMES
from forge.ui.views.positions import board_html, decode_sample, sample_tricks_played


def interesting_sample(arrays: dict[str, np.ndarray]) -> int:
    """A default sample worth looking at: the first one in mid-trick with a choice of moves."""
    trick_plays = np.asarray(arrays["masks"][:, -3:]).sum(1)
    choices = np.asarray(arrays["legal"]).sum(1)
    picks = np.flatnonzero((trick_plays > 0) & (choices > 1))
    return int(picks[0]) if len(picks) else 0


def sample_html(data_dir: str | os.PathLike, split: str = "train", index: int | str | None = None) -> str:
    """Sample ``index`` of a split (None or "": :func:`interesting_sample`) as a readable position."""
    arrays = load_split(data_dir, split)
    n = len(arrays["targets"])
    text = str(index).strip() if index is not None else ""
    if text and (not text.isdigit() or int(text) >= n):
        raise InputError(f"sample index must be 0..{n - 1} (or empty for a mid-trick sample), got {index!r}")
    i = int(text) if text else interesting_sample(arrays)
    board = decode_sample(arrays, i)
    target = int(arrays["targets"][i])
    return board_html(board, f"{split} sample {i} of {n:,} (target: #{target})",
                      css_class="forge-decoded-sample")


def counts_frame(data_dir: str | os.PathLike) -> pl.DataFrame:
    """Samples per split, declaration and trick depth (tricks already played)."""
    parts = []
    for split in read_manifest(data_dir)["splits"]:  # manifest order: train, val, test
        arrays = load_split(data_dir, split)
        parts.append(pl.DataFrame({
            "split": split,
            "declaration": np.asarray(arrays["tokens"][:, 0, F_DECL]).astype(np.int64),
            "tricks played": sample_tricks_played(np.asarray(arrays["tokens"]), np.asarray(arrays["masks"])),
        }))
    if not parts:
        return pl.DataFrame(schema={"split": pl.String, "declaration": pl.String, "tricks played": pl.Int64,
                                    "samples": pl.UInt32})
    splits = [p["split"][0] for p in parts]
    return (pl.concat(parts).group_by("split", "declaration", "tricks played").agg(pl.len().alias("samples"))
            .sort(pl.col("split").replace_strict({s: k for k, s in enumerate(splits)}, return_dtype=pl.Int64),
                  "declaration", "tricks played")
            .with_columns(pl.col("declaration").replace_strict(dict(enumerate(DECL_NAMES)), return_dtype=pl.String)))


def declaration_table(counts: pl.DataFrame) -> pl.DataFrame:
    """Samples per declaration (rows) and split (columns)."""
    order = {name: k for k, name in enumerate(DECL_NAMES)}
    splits = counts["split"].unique(maintain_order=True).to_list()
    wide = counts.group_by("declaration", "split").agg(pl.col("samples").sum()).pivot(
        on="split", index="declaration", values="samples").fill_null(0)
    return wide.select("declaration", *splits).sort(pl.col("declaration").replace_strict(order, return_dtype=pl.Int64))


def counts_figure(counts: pl.DataFrame) -> Figure:
    """Per split: samples per declaration, stacked by trick depth."""
    splits = counts["split"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(4.2 * max(1, len(splits)), 3.2), squeeze=False)
    depths = sorted(counts["tricks played"].unique().to_list())
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, max(1, len(depths))))
    for ax, split in zip(axes[0], splits):
        part = counts.filter(pl.col("split") == split)
        names = [n for n in DECL_NAMES if n in set(part["declaration"].to_list())]
        bottom = np.zeros(len(names))
        for depth, colour in zip(depths, colours):
            got = dict(part.filter(pl.col("tricks played") == depth).select("declaration", "samples").iter_rows())
            heights = np.array([got.get(n, 0) for n in names], dtype=float)
            ax.bar(range(len(names)), heights, bottom=bottom, color=colour, label=f"{depth} played")
            bottom += heights
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{split}: samples by declaration")
    axes[0][0].set_ylabel("samples")
    axes[0][-1].legend(title="tricks", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    return fig


def cache_frame(result: TokenizeResult) -> pl.DataFrame:
    """The stage's cache hits: shards tokenized now vs read from the cache, and splits rewritten."""
    tokenized, cached = result.tokenized_shards, result.cached_shards
    total = tokenized + cached
    return pl.DataFrame({
        "shards tokenized now": [tokenized],
        "cache hits": [cached],
        "hit rate": [cached / total if total else None],
        "splits rewritten": [", ".join(result.splits_rewritten) or "none"],
        "train / val / test samples": [f"{result.train_samples} / {result.val_samples} / {result.test_samples}"],
    })


def split_choices(data_dir: str | os.PathLike) -> list[tuple[str, str]]:
    return [(split, split) for split in read_manifest(data_dir)["splits"]]
