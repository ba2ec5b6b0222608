"""Weights & Biases: one run per iteration in the workspace's group, offline unless configured.

The run carries the iteration's configuration, its training curve (from Lightning's CSV log),
val/test/play-out metrics against ``total_seeds`` (so the group's charts show learning against
data), and the checkpoint as a ``model`` artifact aliased ``iter-NNNN``. Online, the artifact is
linked to the previous iteration's; offline the link is recorded in the artifact's metadata and
``wandb sync`` uploads it later. W&B is a side channel: any failure is a warning, never a failed
iteration.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forge.flywheel.context import Context


def _flat(prefix: str, metrics: dict[str, Any] | None) -> dict[str, float]:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}/{k}"] = float(v)
    return out


def _read_csv(path: Path) -> tuple[list[str], list[list[Any]]]:
    if not path.is_file():
        return [], []
    with path.open() as fh:
        rows = list(csv.reader(fh))
    return (rows[0], rows[1:]) if rows else ([], [])


def wandb_dirs(root: Path) -> dict[str, str]:
    """Where W&B keeps its files, as environment variables: all under the workspace's ``runs/wandb``
    (by default W&B stages artifact files and caches under the home folder, so an offline run
    referred to files outside the workspace, which a copied workspace could not sync, and nothing
    ever cleaned them: docs/disk.md)."""
    base = root / "runs" / "wandb"
    return {"WANDB_DATA_DIR": str(base / "data"), "WANDB_CACHE_DIR": str(base / "cache"),
            "WANDB_ARTIFACT_DIR": str(base / "artifacts")}


def log_iteration(ctx: Context, trained: Any, summary: Any) -> dict[str, Any] | None:
    """Log the iteration as one W&B run; returns where to find it (url, or local dir + sync command).
    ``trained`` and ``summary`` are the train stage's result and the evaluate stage's (this module
    sits below the stages, which call it).

    The run records the iteration's whole configuration (state.yaml's snapshot of it), not only the
    evaluate stage's view: it describes the iteration, not the stage's inputs."""
    mode = ctx.state.wandb.get("mode", "offline")
    if mode == "disabled":
        return None
    project, group = ctx.state.wandb["project"], ctx.state.wandb["group"]
    name = f"iter-{ctx.iteration:04d}"
    run_dir = ctx.ws.run_dir(ctx.iteration)
    try:
        os.environ.update(wandb_dirs(ctx.ws.root))  # before W&B starts its service, which inherits them
        import wandb

        run = wandb.init(
            project=project, group=group, name=name, job_type="iteration", dir=str(run_dir), mode=mode,
            config={**ctx.state.config_of(ctx.iteration).flat(), "iteration": ctx.iteration,
                    "seeds": ctx.seeds, "started_from": trained.started_from},
            reinit="finish_previous", settings=wandb.Settings(silent=True, x_disable_stats=True, init_timeout=60),
        )
        run.define_metric("total_seeds")
        for prefix in ("val", "test", "playout"):
            run.define_metric(f"{prefix}/*", step_metric="total_seeds")
        header, rows = _read_csv(ctx.ws.root / trained.metrics_csv)
        if rows:
            run.log({"train/curve": wandb.Table(columns=header, data=rows)})
        total = summary.total_seeds or 0
        run.log({"total_seeds": total, "iteration": ctx.iteration, **_flat("val", summary.val),
                 **_flat("test", summary.test), **_flat("playout", summary.playout)})
        artifact = wandb.Artifact(
            f"model-{group}", type="model",
            metadata={"iteration": ctx.iteration, "parent": f"iter-{ctx.iteration - 1:04d}" if ctx.previous() else None,
                      "val_q_gap": summary.val.get("q_gap")},
        )
        # "immutable": the run refers to the checkpoint where it lies (never rewritten in place) instead of a
        # staged copy of it; a checkpoint pruned before `sync` is not uploaded (docs/disk.md)
        artifact.add_file(str(ctx.ws.root / trained.checkpoint), name="model.ckpt", policy="immutable")
        if mode == "online" and ctx.previous():
            run.use_artifact(f"{project}/model-{group}:iter-{ctx.iteration - 1:04d}")
        run.log_artifact(artifact, aliases=[name, "latest"])
        info = {"mode": mode, "id": run.id, "name": name, "project": project, "group": group,
                "url": run.url if mode == "online" else None}
        local = Path(run.dir).parent  # .../wandb/offline-run-<date>-<id>
        run.finish()
        info["dir"] = ctx.ws.rel(local)
        if mode != "online":
            info["sync"] = f"wandb sync {info['dir']}"
        else:
            from forge.flywheel.wandb_sync import group_report

            try:
                info["report"] = group_report(project, group)
            except Exception as exc:  # noqa: BLE001 - the run is logged; the report is a convenience
                warnings.warn(f"W&B group report not refreshed: {exc}", stacklevel=2)
        return info
    except Exception as exc:  # noqa: BLE001 - W&B must never fail an iteration
        warnings.warn(f"W&B logging skipped: {exc}", stacklevel=2)
        return {"mode": mode, "error": str(exc)}
