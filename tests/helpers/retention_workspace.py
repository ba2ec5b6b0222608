"""A flywheel workspace with recorded iterations laid out as the loop leaves them (archived notebooks and
their HTML, checkpoints, Lightning's run folder, a W&B offline run, stage results, token-cache
entries), for the retention tests and benchmarks/disk.py. Sizes are parameters: the tests use small
files, the benchmark ``quick``-sized ones."""

from __future__ import annotations

import base64
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from forge.flywheel.config import load_preset
from forge.flywheel.paths import Workspace
from forge.flywheel.records import HistoryEntry
from forge.flywheel.stages import generate
from forge.flywheel.state import State, new_state
from forge.ml.store import entry_path

STAGES = ("01_generate", "02_tokenize", "03_train", "04_evaluate")


@dataclass(frozen=True)
class Sizes:
    """Bytes per iteration, by file (a ``quick`` iteration's, measured or derived: benchmarks/disk.py)."""

    notebook_text: int = 2_000  # each notebook's text outputs (HTML tables, panels), compressible
    notebook_image: int = 1_000  # each notebook's plots (PNG, base64 in the notebook), incompressible
    html_overhead: int = 3_000  # an HTML export's styles and scripts beyond the notebook's outputs
    checkpoint: int = 4_000  # model.ckpt, and Lightning's last.ckpt of the same weights
    metrics_csv: int = 1_000
    results: int = 2_000  # the four stage results together
    wandb_run: int = 2_000  # the offline run's .wandb file
    wandb_logs: int = 1_000  # its debug logs
    stage_log: int = 500
    token_entry: int = 3_000  # one deal's token-cache entry
    seeds: int = 4


@functools.cache
def _random(n: int) -> bytes:
    """Incompressible bytes (one draw per size: each file is compressed on its own)."""
    return os.urandom(n)


def _notebook(text: int, image: int) -> bytes:
    png = base64.b64encode(_random(image * 3 // 4)).decode()
    words = ("<td>0.1234</td><td>val q_gap</td>" * (text // 32 + 1))[:text]
    nb = {"cells": [{"cell_type": "code", "source": "show()", "metadata": {}, "execution_count": 1, "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": words, "text/plain": "<table>"}},
        {"output_type": "display_data", "metadata": {"image/png": {"width": 600}},
         "data": {"image/png": png, "text/plain": "<Figure>"}}]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1).encode()


def shard_sha(seed: int) -> str:
    return f"{seed:064x}"


def add_iteration(ws: Workspace, state: State, iteration: int, q_gap: float, sizes: Sizes = Sizes(),
                  synced: bool = False) -> HistoryEntry:
    """Lay out one finished iteration's files as the loop leaves them, and record it in ``state``."""
    cfg = state.config
    seeds = list(range(sizes.seeds * (iteration - 1), sizes.seeds * iteration))
    archive, run = ws.archive(iteration), ws.run_dir(iteration)
    archive.mkdir(parents=True, exist_ok=True)
    notebooks = {}
    for stage, name in zip(("generate", "tokenize", "train", "evaluate"), STAGES, strict=True):
        book = archive / f"{name}.ipynb"
        body = _notebook(sizes.notebook_text, sizes.notebook_image)
        book.write_bytes(body)
        (archive / f"{name}.html").write_bytes(body + b" " * sizes.html_overhead)
        notebooks[stage] = ws.rel(book)
    (run / "logs").mkdir(parents=True, exist_ok=True)
    for stage in ("generate", "tokenize", "train", "evaluate"):
        (run / "logs" / f"{stage}.log").write_text("line of output\n" * (sizes.stage_log // 15))
    ckpt = _random(sizes.checkpoint)
    (run / "model.ckpt").write_bytes(ckpt)
    version = run / "train" / "domino" / "version_0"
    (version / "checkpoints").mkdir(parents=True, exist_ok=True)
    (version / "checkpoints" / "last.ckpt").write_bytes(ckpt)
    (version / "metrics.csv").write_text("epoch,step,train/loss\n" + "0,1,0.5\n" * (sizes.metrics_csv // 8))
    wb = run / "wandb" / f"offline-run-20260101_000000-{iteration:08d}"
    (wb / "logs").mkdir(parents=True, exist_ok=True)
    (wb / f"run-{iteration:08d}.wandb").write_bytes(_random(sizes.wandb_run))
    (wb / "logs" / "debug-internal.log").write_bytes(b"x" * sizes.wandb_logs)
    train = {ws.rel(ws.shards(cfg.data.hand_size) / f"seed_{s:08d}.parquet"): shard_sha(s) for s in seeds}
    golden = {ws.rel(ws.golden(cfg.data.hand_size) / "seed_00000900_decl_0.parquet"): shard_sha(10**9)}
    generate.STAGE.write(ws, iteration, generate.GenerateResult(
        train_shards=sorted(train), outputs=generate.GenerateOutputs(shards={**golden, **train})))
    (run / "results" / "padding.json").write_text(json.dumps({"x": "y" * sizes.results}))
    for s in seeds:
        data = cfg.data
        entry = entry_path(ws.token_cache, shard_sha(s), data.samples_per_shard, data.global_seed, data.train_states)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(_random(sizes.token_entry))
    wandb = {"mode": "offline", "dir": ws.rel(wb), "sync": f"wandb sync {ws.rel(wb)}"}
    if synced:
        wandb = {**wandb, "mode": "synced", "url": f"https://wandb.ai/x/y/runs/{iteration}"}
    entry = HistoryEntry(iteration=iteration, seeds=seeds, seed_range=[seeds[0], seeds[-1] + 1],
                         total_seeds=sizes.seeds * iteration, checkpoint=ws.rel(run / "model.ckpt"),
                         val={"q_gap": q_gap}, notebooks=notebooks, wandb=wandb)
    state.history.append(entry)
    state.next_seed = seeds[-1] + 1
    return entry


def golden_entry(ws: Workspace, state: State) -> Path:
    """The golden shard's token-cache entry (never released)."""
    cfg = state.config
    path = entry_path(ws.token_cache, shard_sha(10**9), cfg.evaluation.golden_samples_per_shard, cfg.data.global_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"golden")
    return path


def new_workspace(root: Path, **config: object) -> tuple[Workspace, State]:
    root.mkdir(parents=True, exist_ok=True)
    return Workspace.at(root), new_state(load_preset("quick", **config), "test")


def cache_entry_count(ws: Workspace) -> int:
    return sum(1 for _ in ws.token_cache.glob("v*/*/*.npz"))
