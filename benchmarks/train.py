"""Training and evaluation throughput of the large DominoTransformer on CPU, by section.

Every figure is a median over ``--repeats`` interleaved rounds (interleaving keeps a shared
machine's load from favouring one side). Sections (``--sections``, default all):

``data``
  1. training samples/s through the real data path (DominoDataModule: int8 store arrays in RAM,
     one ``index_select`` per array per batch) in a Lightning ``fit``;
  2. the same model and Trainer on in-memory random batches (pure compute: the batches exist
     before timing starts); bar: (1) / (2) >= 0.9, i.e. the data path costs < 10%;
  3. evaluation samples/s (``forge.ml.evaluate.evaluate_model``: zero-copy slices of the
     memory-mapped split, the fp32 ``InferenceNet`` forward, histogram metrics), and for context
     the same with the module's own forward;
  4. the baseline: validation through a per-sample ``Dataset.__getitem__`` + ``DataLoader``
     (default collate, no workers) in Lightning's ``validate``; bar: (3) >= 2 x (4).
``precision``
  training samples/s at ``32`` and ``bf16-mixed`` (same model, batches and Trainer), then one
  :func:`forge.ml.training.train` run per precision from the same initial weights over the same
  ``--quality-steps`` batches, with its validation metrics and the fp32 evaluation of its
  checkpoint on the same val samples: what the precision costs in quality for equal steps.
``ddp``
  :func:`train` as one process (all cores) against ``--devices``-process DDP on CPU (gloo; one
  core's threads each), both at the same global batch: global samples/s.
``kernel``
  :func:`train` inside a real Jupyter kernel (the loop's kernel spec and environment,
  ``runner.KERNEL_ENV``) next to the same call in a fresh ``python`` process (what the CLI is),
  each with and without ``OMP_WAIT_POLICY=PASSIVE``, plus the kernel after a numba-parallel
  solve (what the loop's shared kernel has run before training). ``--busy N`` runs N spinning
  processes meanwhile, as on a machine shared with other work.

Step times are measured from one ``on_train_batch_end`` to the next, so they include fetching
the next batch. The dataset is data/bench-train (full-game shards solved and tokenized on first
use) unless ``--data`` names one.

    python benchmarks/train.py [--sections data,precision,ddp,kernel] [--repeats 3] [--steps 20]
        [--batch-size 256] [--threads 2] [--quality-steps 150] [--devices 2] [--precision 32] [--busy 0]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: OpenMP reads its wait policy once, when torch loads it (just below): what this process runs with.
OMP_WAIT_POLICY_AT_LOAD = os.environ.get("OMP_WAIT_POLICY")

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from forge.ml.data import ArrayBatches, load_tensors, spread_indices, subset  # noqa: E402
from forge.ml.datamodule import DominoDataModule  # noqa: E402
from forge.ml.evaluate import evaluate_model  # noqa: E402
from forge.ml.loading import load_module  # noqa: E402
from forge.ml.module import DominoModule  # noqa: E402
from forge.ml.settings import HardwareSection, TrainingSection  # noqa: E402
from forge.ml.store import load_split  # noqa: E402
from forge.ml.tokenize import FEATURE_VOCAB  # noqa: E402
from forge.ml.training import GRAD_CLIP, train  # noqa: E402

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


def _trainer(steps: int, timer: L.Callback | None = None, validate: bool = False, precision: str = "32") -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=steps,
        limit_val_batches=1.0 if validate else 0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=GRAD_CLIP, callbacks=[timer] if timer else [], precision=precision,
    )


def train_rate(module: DominoModule, loader, steps: int, warmup: int, batch_size: int, precision: str = "32") -> float:
    timer = StepTimer()
    _trainer(steps + warmup, timer, precision=precision).fit(module, train_dataloaders=loader)
    return batch_size / statistics.median(timer.times[warmup - 1 :])


def timed_train(data: str | Path, batch_size: int, steps: int, warmup: int, val_samples: int = 512,
                **hardware) -> dict:
    """One :func:`forge.ml.training.train` run of ``steps + warmup`` batches of the large model
    (the loop's own entry point: its callbacks, logging and checks included), timed per step.
    Under DDP every rank runs this; rank 0's step times are the run's (ranks move in lockstep)."""
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as runs:
        result = train(data, TrainingSection(epochs=1, batch_size=batch_size, model="large", val_samples=val_samples),
                       HardwareSection(**hardware), run_dir=runs, wandb=False, progress=False,
                       trainer_kwargs={"limit_train_batches": steps + warmup, "callbacks": [timer]})
        out = {"rank": result.global_rank, "step_s": statistics.median(timer.times[warmup - 1 :]),
               "threads": torch.get_num_threads(), "omp_wait_policy": OMP_WAIT_POLICY_AT_LOAD,
               "metrics": {k: v for k, v in result.metrics.items() if k.startswith("val/")}}
        if result.global_rank == 0 and val_samples:
            val = load_tensors(data, "val", in_memory=False)
            chosen = subset(val, spread_indices(len(val["targets"]), val_samples))
            out["fp32_eval"] = evaluate_model(load_module(result.last_checkpoint).model, chosen)
    return out


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


def section_data(args: argparse.Namespace, data: Path) -> None:
    dm = DominoDataModule(data, batch_size=args.batch_size)
    val_tensors = {k: v[: args.eval_samples] for k, v in load_tensors(data, "val", in_memory=False).items()}
    val_arrays = {k: v[: args.eval_samples] for k, v in load_split(data, "val").items()}
    n_val = len(val_tensors["targets"])
    print(f"== data: {len(dm.split('train')['targets'])} train, {n_val} val samples evaluated; "
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
    print(f"train, real data path      : {med['real']:8.0f} samples/s")
    print(f"train, in-memory random    : {med['random']:8.0f} samples/s  (pure compute)")
    print(f"  data path ratio          : {ratio:8.3f}  (bar >= 0.9: {'PASS' if ratio >= 0.9 else 'FAIL'})")
    print(f"eval, forge.ml.evaluate    : {med['eval']:8.0f} samples/s")
    print(f"  same, module's forward   : {med['eval_module']:8.0f} samples/s  (no InferenceNet)")
    print(f"eval, per-sample DataLoader: {med['baseline']:8.0f} samples/s  (Lightning validate)")
    print(f"  eval speed-up            : {speedup:8.2f}x (bar >= 2x: {'PASS' if speedup >= 2 else 'FAIL'})")
    for name, (ours, base) in extra.items():
        print(f"  ({name} model: eval {ours:.0f}/s vs per-sample DataLoader {base:.0f}/s = {ours / base:.2f}x)")


PRECISIONS = ("32", "bf16-mixed")


def section_precision(args: argparse.Namespace, data: Path) -> None:
    print(f"== precision: large model, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    dm = DominoDataModule(data, batch_size=args.batch_size)
    torch.manual_seed(0)
    module = DominoModule.from_preset("large")
    train_rate(module, RandomBatches(args.batch_size, 4), 2, 2, args.batch_size)  # untimed warm-up
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(args.repeats):
        for precision in PRECISIONS:
            real = ArrayBatches(dm.split("train"), args.batch_size, shuffle=True, seed=r)
            rates[precision].append(train_rate(module, real, args.steps, args.warmup, args.batch_size, precision))
        print(f"round {r + 1}: " + ", ".join(f"{p} {v[-1]:.0f}/s" for p, v in rates.items()), flush=True)
    quality = {p: timed_train(data, args.batch_size, args.quality_steps, args.warmup, args.quality_val, precision=p)
               for p in PRECISIONS}
    for precision in PRECISIONS:
        q = quality[precision]
        val, ev = q["metrics"], q["fp32_eval"]
        print(f"{precision:>10}: train {statistics.median(rates[precision]):6.0f} samples/s; after "
              f"{args.quality_steps + args.warmup} steps: val q_gap {val['val/q_gap']:.4f} accuracy "
              f"{val['val/accuracy']:.4f} (as validated), fp32 eval q_gap {ev['q_gap']:.4f} accuracy "
              f"{ev['accuracy']:.4f} on {int(ev['n'])} val samples; "
              f"{args.batch_size / q['step_s']:.0f} samples/s there")
    ratio = statistics.median(rates["bf16-mixed"]) / statistics.median(rates["32"])
    print(f"  bf16-mixed / 32 training speed: {ratio:.2f}x")


def _worker_command(spec: dict) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]


def _run_worker(spec: dict, env: dict[str, str] | None = None) -> dict:
    """``timed_train(**spec)`` in a fresh ``python`` process (as a CLI runs); its RESULT line."""
    proc = subprocess.run(_worker_command(spec), capture_output=True, text=True, env=env, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section_ddp(args: argparse.Namespace, data: Path) -> None:
    n = args.devices
    per_rank = max(1, args.batch_size // n)
    print(f"== ddp: 1 process (all cores) vs {n} CPU processes (gloo), global batch {args.batch_size} "
          f"({per_rank} per rank), precision {args.precision}")
    base = {"data": str(data), "steps": args.steps, "warmup": args.warmup, "val_samples": 512,
            "precision": args.precision}
    rates: dict[str, list[float]] = {"1 process": [], f"{n} processes": []}
    for r in range(args.repeats):
        one = _run_worker({**base, "batch_size": args.batch_size, "accelerator": "cpu"})
        rates["1 process"].append(args.batch_size / one["step_s"])
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        many = _run_worker({**base, "batch_size": per_rank, "accelerator": "cpu", "devices": n, "strategy": "ddp"},
                           env)
        rates[f"{n} processes"].append(per_rank * n / many["step_s"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items())
              + f" (threads per process: {one['threads']} vs {many['threads']})", flush=True)
    for k, v in rates.items():
        print(f"{k:>12}: {statistics.median(v):6.0f} samples/s (global)")


KERNEL_CODE = """
import importlib.util, json
spec = importlib.util.spec_from_file_location("bench_train", {path!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
{before}
print("RESULT " + json.dumps(bench.timed_train(**{spec!r})))
"""
#: What the loop's kernel has run before training: a numba-parallel solve (generate).
AFTER_GENERATE = "from forge.oracle.solve import solve; solve(0, 6, hand_size=6)"


def _in_kernel(spec: dict, env: dict[str, str], before: str = "") -> dict:
    """``timed_train(**spec)`` in a real Jupyter kernel (the loop's kernel spec), started with ``env``."""
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    from forge.flywheel.runner import ensure_kernel

    code = KERNEL_CODE.format(path=str(Path(__file__).resolve()), spec=spec, before=before)

    async def run() -> dict:
        km = AsyncKernelManager(kernel_name=ensure_kernel())
        await km.start_kernel(env=env, cwd=str(REPO))
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=120)
            out: list[str] = []

            def hook(msg: dict) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("\n".join(msg["content"]["traceback"]))

            reply = await kc.execute_interactive(code, timeout=1200, output_hook=hook)
            text = "".join(out)
            lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            if reply["content"]["status"] != "ok" or not lines:
                raise SystemExit(f"kernel run failed: {text[-2000:]}")
            return json.loads(lines[-1][len("RESULT "):])
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    return asyncio.run(run())


def section_kernel(args: argparse.Namespace, data: Path) -> None:
    from forge.flywheel.runner import KERNEL_ENV

    print(f"== kernel vs CLI: train() of the large model, batch {args.batch_size}, precision {args.precision}, "
          f"{args.busy} busy process(es)")
    spec = {"data": str(data), "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "val_samples": 64, "accelerator": "cpu", "precision": args.precision}
    plain = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    passive = {**plain, "OMP_WAIT_POLICY": "PASSIVE"}
    loop_env = {**plain, **KERNEL_ENV}
    no_omp_loop_env = {k: v for k, v in loop_env.items() if k != "OMP_WAIT_POLICY"}
    variants = {
        "CLI process, PASSIVE": lambda: _run_worker(spec, passive),
        "CLI process, no setting": lambda: _run_worker(spec, plain),
        "loop kernel, PASSIVE": lambda: _in_kernel(spec, loop_env),
        "loop kernel, no setting": lambda: _in_kernel(spec, no_omp_loop_env),
        "loop kernel after generate": lambda: _in_kernel(spec, loop_env, AFTER_GENERATE),
    }
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.repeats):
            for name, run in variants.items():
                res = run()
                rates[name].append(args.batch_size / res["step_s"])
                print(f"round {r + 1}: {name}: {rates[name][-1]:.0f} samples/s "
                      f"(torch threads {res['threads']}, OMP_WAIT_POLICY {res['omp_wait_policy']})", flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    for name, v in rates.items():
        print(f"{name:>28}: {statistics.median(v):6.0f} samples/s  ({', '.join(f'{x:.0f}' for x in v)})")


SECTIONS = {"data": section_data, "precision": section_precision, "ddp": section_ddp, "kernel": section_kernel}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
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
    p.add_argument("--quality-steps", type=int, default=150, help="precision: steps before comparing val metrics")
    p.add_argument("--quality-val", type=int, default=8192, help="precision: val samples compared")
    p.add_argument("--devices", type=int, default=2, help="ddp: processes")
    p.add_argument("--precision", default="32", help="ddp and kernel: training precision (default 32)")
    p.add_argument("--busy", type=int, default=0, help="kernel: spinning processes run meanwhile")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # JSON: timed_train's arguments
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    if args.worker:  # a subprocess of the ddp or kernel section (and, under DDP, each rank)
        result = timed_train(**json.loads(args.worker))
        if result["rank"] == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return

    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    data = args.data or bench_data(DEFAULT_DATA, args.samples)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"data {data}; {cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name in args.sections.split(","):
        SECTIONS[name](args, data)
        print()


if __name__ == "__main__":
    main()
