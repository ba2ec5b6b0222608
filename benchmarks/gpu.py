"""GPU check: the large model trained in bf16-mixed on one CUDA device, then one evaluation.

Trains with :func:`forge.ml.training.train` (``precision="bf16-mixed"``, ``accelerator="cuda"``)
for ``--steps`` timed steps after ``--warmup`` untimed ones, then evaluates the checkpoint on the
val split with :func:`forge.ml.evaluate.evaluate_model` (bf16 autocast on a GPU), reporting the
reference catalog's five metrics. Prints training and evaluation samples/s
and the peak GPU memory of each phase. Without a CUDA device it says so and exits with status 2;
``--device cpu`` runs the same path on the CPU (bf16-mixed, CPU autocast), to check the script.
The dataset is benchmarks/train.py's (data/bench-train, solved and tokenized on first use)
unless ``--data`` names one.

    python benchmarks/gpu.py [--steps 100] [--warmup 10] [--batch-size 2048] [--eval-batch-size 8192]
        [--samples 20000] [--data DIR] [--device cuda|cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from forge.ml.catalog import CATALOG, REFERENCE_FIVE  # noqa: E402
from forge.ml.data import load_tensors  # noqa: E402
from forge.ml.evaluate import evaluate_model  # noqa: E402
from forge.ml.loading import load_module  # noqa: E402
from forge.ml.settings import HardwareSection, TrainingSection  # noqa: E402
from forge.ml.training import train  # noqa: E402


def _bench_train():
    """benchmarks/train.py as a module: its dataset builder and step timer (one source of each)."""
    spec = importlib.util.spec_from_file_location("bench_train", HERE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float:
    """Peak memory since the last reset: the device's allocator on CUDA, the process's RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def five_metrics(metrics: dict[str, float]) -> str:
    """The reference catalog's five metrics (and the game value read off Q), as the README tables show them."""
    parts = [f"{CATALOG[name].label} {metrics[name]:.4f}" for name in (*REFERENCE_FIVE, "game_value_mae")
             if name in metrics]
    return ", ".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--data", type=Path, default=None, help="tokenized dataset (default: build data/bench-train)")
    p.add_argument("--samples", type=int, default=20_000, help="samples per shard when building")
    p.add_argument("--steps", type=int, default=100, help="timed training steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed first steps (cuDNN/allocator warm-up)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--eval-batch-size", type=int, default=8192)
    p.add_argument("--val-samples", type=int, default=4096, help="validated each epoch while training")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu.py: no CUDA device here (torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
              "run it on a machine with an NVIDIA GPU and a CUDA build of torch, or pass --device cpu to "
              "check the script on the CPU", file=sys.stderr)
        return 2
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    bench = _bench_train()
    data = args.data or bench.bench_data(bench.DEFAULT_DATA, args.samples)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}; data {data}; large model, bf16-mixed, batch {args.batch_size}")

    n_train = len(load_tensors(data, "train", in_memory=False)["targets"])
    total = args.steps + args.warmup
    epochs = -(-total // max(1, n_train // args.batch_size))
    timer = bench.StepTimer()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as runs:
        result = train(data, TrainingSection(epochs=epochs, batch_size=args.batch_size, model="large",
                                             val_samples=args.val_samples),
                       HardwareSection(precision="bf16-mixed", accelerator=args.device), run_dir=runs, wandb=False,
                       progress=False, trainer_kwargs={"max_steps": total, "callbacks": [timer]})
        train_peak = _peak_gib(device)
        module = load_module(result.last_checkpoint)
        model, with_q = module.model, "q" in module.trained_heads
    step = statistics.median(timer.times[args.warmup - 1 :])
    print(f"train: {args.batch_size / step:10.0f} samples/s  (median of {len(timer.times) - args.warmup + 1} "
          f"steps, {step * 1e3:.1f} ms each); peak memory {train_peak:.2f} GiB")

    val = load_tensors(data, "val", in_memory=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    evaluate_model(model, {k: v[: args.eval_batch_size] for k, v in val.items()}, args.eval_batch_size,
                   with_q=with_q, device=device)  # untimed warm-up
    _sync(device)
    start = time.perf_counter()
    metrics = evaluate_model(model, val, args.eval_batch_size, with_q=with_q, device=device)
    _sync(device)
    seconds = time.perf_counter() - start
    print(f"eval:  {metrics['n'] / seconds:10.0f} samples/s  ({int(metrics['n'])} val samples, bf16 autocast, "
          f"batch {args.eval_batch_size}); peak memory {_peak_gib(device):.2f} GiB; "
          f"val: {five_metrics(metrics)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
