"""Disk per ``quick`` iteration over a long run, under the retention policy (docs/disk.md).

Simulates N recorded iterations (default 1,000) in a temporary workspace: each lays out the files
a ``quick`` iteration leaves (sizes below, from a measured ``tiny`` iteration scaled to ``quick``'s
figures of issue 24: four executed notebooks with their plots and HTML pages, the small model's
checkpoint twice, a W&B offline run, stage results, logs, four deals' token-cache entries), is
recorded in a real State, and then the real retention code runs (:func:`forge.flywheel.retention.apply`,
as the loop calls it). Prints the workspace's size and the average disk per iteration, with the
policy and without it (``retention: keep``, extrapolated from the first iterations), and the time
the retention code took.

    python benchmarks/disk.py [--iterations 1000] [--keep-iterations 50]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # its workspace builder is a test helper

from helpers.retention_workspace import Sizes, add_iteration, new_workspace  # noqa: E402

from forge.flywheel import retention  # noqa: E402
from forge.flywheel.paths import Workspace  # noqa: E402

#: A ``quick`` iteration's files. Notebooks: a ``tiny`` iteration's four measured 545 KB (302 KB of
#: them plots), HTML exports 280 KB more each; issue 24 measured 2.9 MB of archive for ``quick``,
#: i.e. about 0.89 MB of notebooks: scaled so, the plots' share kept. Checkpoint: the small model's
#: 106K parameters with AdamW's state (~1.3 MB), written twice (model.ckpt and Lightning's last.ckpt):
#: with the rest, issue 24's 2.7 MB of runs/. W&B: the offline run's log holds the training curve's
#: table, which its files/ and W&B's staging hold again (about 4 x metrics.csv). Token entries: 4 deals;
#: their size does not change the long-run average (only the replay window's are kept).
QUICK = Sizes(notebook_text=100_000, notebook_image=122_000, html_overhead=280_000, checkpoint=1_300_000,
              metrics_csv=15_000, results=30_000, wandb_run=60_000, wandb_logs=5_000, stage_log=2_000,
              token_entry=1_000_000, seeds=4)


def simulate(n: int, retention_mode: str, root: Path) -> dict[str, float]:
    ws, state = new_workspace(root, retention=retention_mode)
    rng = random.Random(0)
    spent, gap = 0.0, 1.0
    for it in range(1, n + 1):
        gap = gap * 0.999 if rng.random() < 0.3 else gap + 0.01  # a new best now and then
        add_iteration(ws, state, it, gap, QUICK)
        t0 = time.perf_counter()
        retention.apply(ws.root, state, say=lambda _: None, iteration=it)
        spent += time.perf_counter() - t0
    total = retention.disk_total(Workspace.at(root))
    return {"iterations": n, "bytes": total, "per_iteration": total / n, "retention_s": spent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--keep-iterations", type=int, default=20,
                        help="iterations simulated without retention (its growth is linear: extrapolated)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    # in memory where there is a tmpfs: the figures are sizes, and writing GBs to a shared disk is slow
    where = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="forge-disk-", dir=where) as tmp:
        keep = simulate(args.keep_iterations, "keep", Path(tmp) / "keep")
    with tempfile.TemporaryDirectory(prefix="forge-disk-", dir=where) as tmp:
        pruned = simulate(args.iterations, "prune", Path(tmp) / "prune")
        log = retention.read_disk_log(Workspace.at(Path(tmp) / "prune"))
    mb = 2**20
    print("quick-sized iterations, simulated; retention code: forge.flywheel.retention (defaults: retain_last 3, "
          "retain_best, retain_images 10)")
    print(f"without retention (retention: keep, {keep['iterations']} iterations): "
          f"{keep['per_iteration'] / mb:.2f} MB per iteration -> "
          f"{keep['per_iteration'] * args.iterations / mb:,.0f} MB after {args.iterations}")
    print(f"with retention (retention: prune, {pruned['iterations']} iterations): workspace "
          f"{pruned['bytes'] / mb:,.1f} MB, {pruned['per_iteration'] / mb:.3f} MB per iteration on average "
          f"(goal <= 0.5)")
    tail = [s for s in log if s[1] > args.iterations - 100]
    if len(tail) >= 2:
        per = (tail[-1][2] - tail[0][2]) / (tail[-1][1] - tail[0][1])
        print(f"  growth over the last {tail[-1][1] - tail[0][1]} iterations: {per / mb:.3f} MB per iteration "
              f"(at 550 iterations a day: {per * 550 / mb:,.0f} MB/day)")
    each = pruned["retention_s"] / args.iterations * 1000
    print(f"  retention code: {pruned['retention_s']:.1f} s in all, {each:.1f} ms per iteration (disk walk for the "
          f"rate included); benchmark {time.perf_counter() - started:.0f} s (in {Path(tmp).parent})")
    return 0 if pruned["per_iteration"] <= 0.5 * mb else 1


if __name__ == "__main__":
    sys.exit(main())
