"""Training and evaluation throughput of the large DominoTransformer on CPU.

Prints, as medians over ``--repeats`` interleaved rounds (interleaving keeps a shared machine's
load from favouring one side):

1. training samples/s through the real data path (DominoDataModule: int8 store arrays in RAM,
   one ``index_select`` per array per batch) in a Lightning ``fit``;
2. the same model and Trainer on in-memory random batches (pure compute: the batches exist
   before timing starts); bar: (1) / (2) >= 0.9, i.e. the data path costs < 10%;
3. evaluation samples/s (``forge.cli.eval.evaluate_model``: zero-copy slices of the memory-mapped
   split, the exact fp32 ``forge.ml.inference.InferenceNet`` forward, histogram metrics), and for
   context the same with the module's own forward;
4. the baseline: validation through a per-sample ``Dataset.__getitem__`` + ``DataLoader``
   (default collate, no workers) in Lightning's ``validate``; bar: (3) >= 2 x (4).

Step times are measured from one ``on_train_batch_end`` to the next, so they include fetching
the next batch. The dataset is data/bench-train (full-game shards solved and tokenized on first
use) unless ``--data`` names one.

    python benchmarks/train.py [--repeats 3] [--steps 20] [--batch-size 256] [--threads 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and benchmarks/tokenize.py would shadow
# the standard library's tokenize (which linecache, hence tracebacks and torch, import).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from forge.cli.eval import evaluate_model  # noqa: E402
from forge.ml.data import ArrayBatches, DominoDataModule, load_tensors  # noqa: E402
from forge.ml.model import FEATURE_VOCAB  # noqa: E402
from forge.ml.module import DominoModule  # noqa: E402
from forge.ml.store import load_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data" / "bench-train"
SHARDS = {"train": [(0, 6), (1, 3)], "val": [(2, 9)]}


def bench_data(out: Path, samples: int) -> Path:
    """Full-game shards tokenized into ``out``/data (built once, then reused)."""
    from forge.ml.store import build_dataset
    from forge.oracle.shard import shard_path, write_shard
    from forge.oracle.solve import solve

    data = out / "data"
    if (data / "manifest.json").exists():
        return data
    splits = {}
    for split, deals in SHARDS.items():
        paths = []
        for seed, decl in deals:
            path = shard_path(out / "shards", seed, decl)
            if not path.exists():
                print(f"solving seed {seed} decl {decl} ...", file=sys.stderr, flush=True)
                write_shard(solve(seed, decl), out / "shards")
            paths.append(path)
        splits[split] = paths
    build_dataset(splits, data, samples, 0, progress=False)
    return data


class StepTimer(L.Callback):
    """Wall time between consecutive training-batch ends (fetch + forward + backward + step)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, *args) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


class RandomBatches:
    """A few ready-made random batches, served over and over: no data path at all."""

    def __init__(self, batch_size: int, steps: int, kinds: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.steps = steps
        self.batches = []
        for _ in range(kinds):
            b = batch_size
            tokens = torch.cat([torch.randint(0, v, (b, 32, 1), generator=g) for v in FEATURE_VOCAB], -1)
            masks = torch.ones(b, 32, dtype=torch.int8)
            masks[:, 29:] = (torch.rand(b, 3, generator=g) < 0.5).to(torch.int8)
            legal = (torch.rand(b, 7, generator=g) < 0.6).to(torch.int8)
            legal[:, 0] = 1
            qvals = torch.randint(-42, 43, (b, 7), generator=g, dtype=torch.int8).masked_fill(legal == 0, -128)
            players = torch.randint(0, 4, (b,), generator=g, dtype=torch.int8)
            self.batches.append({
                "tokens": tokens.to(torch.int8), "masks": masks, "players": players, "teams": players % 2,
                "values": torch.randint(-42, 43, (b,), generator=g, dtype=torch.int8), "qvals": qvals,
                "legal": legal, "targets": torch.zeros(b, dtype=torch.int8),
            })

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for i in range(self.steps):
            yield self.batches[i % len(self.batches)]


def _trainer(steps: int, timer: L.Callback | None = None, validate: bool = False) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=steps,
        limit_val_batches=1.0 if validate else 0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=1.0, callbacks=[timer] if timer else [],
    )


def train_rate(module: DominoModule, loader, steps: int, warmup: int, batch_size: int) -> float:
    timer = StepTimer()
    _trainer(steps + warmup, timer).fit(module, train_dataloaders=loader)
    return batch_size / statistics.median(timer.times[warmup - 1 :])


class PerSample(Dataset):
    """The usual way: index the (memory-mapped) arrays one sample at a time."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["targets"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(np.array(a[i])) for k, a in self.arrays.items()}


def baseline_rate(module: DominoModule, arrays: dict[str, np.ndarray], batch_size: int) -> float:
    """Samples/s of Lightning ``validate`` fed by a per-sample DataLoader."""
    loader = DataLoader(PerSample(arrays), batch_size=batch_size, num_workers=0)
    start = time.perf_counter()
    _trainer(0, validate=True).validate(module, dataloaders=loader, verbose=False)
    return len(arrays["targets"]) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="tokenized dataset (default: build data/bench-train)")
    p.add_argument("--samples", type=int, default=20_000, help="samples per shard when building")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--eval-samples", type=int, default=8192, help="validation samples evaluated per round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--also", default="small,tiny",
                   help="presets whose evaluation speed-up is printed too, for context ('' for none)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")

    data = args.data or bench_data(DEFAULT_DATA, args.samples)
    dm = DominoDataModule(data, batch_size=args.batch_size)
    val_tensors = {k: v[: args.eval_samples] for k, v in load_tensors(data, "val", in_memory=False).items()}
    val_arrays = {k: v[: args.eval_samples] for k, v in load_split(data, "val").items()}
    n_val = len(val_tensors["targets"])
    print(f"data {data}: {len(dm.split('train')['targets'])} train, {n_val} val samples evaluated; "
          f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, eval batch {args.eval_batch_size}")

    torch.manual_seed(0)
    module = DominoModule.from_preset("large")
    rates: dict[str, list[float]] = {"real": [], "random": [], "eval": [], "eval_module": [], "baseline": []}
    train_rate(module, RandomBatches(args.batch_size, 4), 2, 2, args.batch_size)  # untimed warm-up
    for r in range(args.repeats):
        real = ArrayBatches(dm.split("train"), args.batch_size, shuffle=True, seed=r)
        rates["real"].append(train_rate(module, real, args.steps, args.warmup, args.batch_size))
        rnd = RandomBatches(args.batch_size, args.steps + args.warmup, seed=r)
        rates["random"].append(train_rate(module, rnd, args.steps, args.warmup, args.batch_size))

        start = time.perf_counter()
        evaluate_model(module.model, val_tensors, args.eval_batch_size)
        rates["eval"].append(n_val / (time.perf_counter() - start))
        start = time.perf_counter()
        evaluate_model(module.model, val_tensors, args.eval_batch_size, fast=False)
        rates["eval_module"].append(n_val / (time.perf_counter() - start))

        rates["baseline"].append(baseline_rate(module, val_arrays, args.eval_batch_size))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()), flush=True)

    extra = {}
    for name in filter(None, args.also.split(",")):
        other = DominoModule.from_preset(name)
        pairs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            evaluate_model(other.model, val_tensors, args.eval_batch_size)
            ours = n_val / (time.perf_counter() - start)
            pairs.append((ours, baseline_rate(other, val_arrays, args.eval_batch_size)))
        extra[name] = [statistics.median(x) for x in zip(*pairs)]

    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio, speedup = med["real"] / med["random"], med["eval"] / med["baseline"]
    print()
    print(f"train, real data path      : {med['real']:8.0f} samples/s")
    print(f"train, in-memory random    : {med['random']:8.0f} samples/s  (pure compute)")
    print(f"  data path ratio          : {ratio:8.3f}  (bar >= 0.9: {'PASS' if ratio >= 0.9 else 'FAIL'})")
    print(f"eval, forge.cli.eval       : {med['eval']:8.0f} samples/s")
    print(f"  same, module's forward   : {med['eval_module']:8.0f} samples/s  (no InferenceNet)")
    print(f"eval, per-sample DataLoader: {med['baseline']:8.0f} samples/s  (Lightning validate)")
    print(f"  eval speed-up            : {speedup:8.2f}x (bar >= 2x: {'PASS' if speedup >= 2 else 'FAIL'})")
    for name, (ours, base) in extra.items():
        print(f"  ({name} model: eval {ours:.0f}/s vs per-sample DataLoader {base:.0f}/s = {ours / base:.2f}x)")


if __name__ == "__main__":
    main()
