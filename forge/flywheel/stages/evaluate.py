"""The evaluate stage (``04_evaluate``): the kept checkpoint's metrics on the golden val and test sets,
a play-out on golden test deals, the comparison with the previous and the best iteration, and the
iteration's W&B run."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from forge.digests import DigestMemo
from forge.flywheel import integrity
from forge.flywheel.context import Context
from forge.flywheel.history import ANY_SERIES, seeds_counted, series_of
from forge.flywheel.paths import Workspace
from forge.flywheel.progress import StageProgress
from forge.flywheel.records import PRIMARY_METRIC, TRACKED, MetricSource, better, metric_label
from forge.flywheel.stages import running, tokenize, train
from forge.flywheel.stages.base import ConfigView, Stage, StageResult
from forge.flywheel.state import State

_GOLDEN = "the golden sets' identity: their content is in the inputs (the val/test splits' checksums)"


class EvaluateConfig(ConfigView):
    reads = ("playout_deals", "accelerator")
    # Which golden sets it scores on (integrity.golden_key: its comparison series, its pin): their content
    # is among its inputs already, the val/test splits' checksums.
    untracked = {name: _GOLDEN for name in ("hand_size", "golden_val_seeds", "golden_test_seeds", "golden_decls",
                                            "golden_samples_per_shard", "global_seed")}


class EvaluateResult(StageResult):
    checkpoint: str
    val: dict[str, float]
    test: dict[str, float]
    playout: dict[str, float] = Field(default_factory=dict)
    delta_prev: dict[str, float] = Field(default_factory=dict)
    delta_best: dict[str, float] = Field(default_factory=dict)
    best_iteration: int | None = None  # the iteration compared with as "best" (None: the first)
    primary_metric: str = metric_label(*PRIMARY_METRIC)
    is_best: bool = False
    golden_series: int | None = None  # the golden sets' comparison series (None: not pinned when evaluated)
    total_seeds: int | None = None  # None: a past iteration evaluated again
    flags: list[str] = Field(default_factory=list)  # tracked metrics worse than the best iteration's
    wandb: dict[str, Any] | None = None

    def metric(self, split: str, name: str) -> float | None:
        """One metric (``val``, ``test`` or ``playout``), as :meth:`HistoryEntry.metric` gives it."""
        value = getattr(self, split, None) or {}
        return float(value[name]) if isinstance(value.get(name), (int, float)) else None


def inputs(ctx: Context, cfg: EvaluateConfig, upstream: train.TrainResult, memo: DigestMemo) -> dict[str, Any]:
    tokenized = tokenize.STAGE.read(ctx.ws, ctx.iteration)
    splits = tokenized.outputs.splits if tokenized is not None else {}
    return {"checkpoint": upstream.outputs.sha256, "data": {s: splits.get(s) for s in ("val", "test")}}


def _deltas(now: dict[str, float], then: dict[str, float] | None) -> dict[str, float]:
    if not then:
        return {}
    return {k: round(now[k] - then[k], 5) for k in now if isinstance(now.get(k), float) and
            isinstance(then.get(k), float)}


def regressions(result: MetricSource, best: Any) -> list[str]:
    """Tracked metrics of this iteration that are worse than the best iteration's (by the primary metric)."""
    if best is None:
        return []
    flags = []
    for split, name in TRACKED:
        mine, theirs = result.metric(split, name), best.metric(split, name)
        if mine is None or theirs is None:
            continue
        if better(name, theirs, mine):
            flags.append(f"{split} {name} {mine:.4f} is worse than the best (iteration {best.iteration}: "
                         f"{theirs:.4f})")
    return flags


def work(ctx: Context, cfg: EvaluateConfig, progress: StageProgress, memo: DigestMemo) -> EvaluateResult:
    from forge.flywheel.tracking import log_iteration
    from forge.ml.evaluate import eval_device
    from forge.ml.evaluate import evaluate as score

    trained = train.STAGE.read(ctx.ws, ctx.iteration)
    assert trained is not None  # the fingerprint holds train's
    ckpt = ctx.ws.root / trained.checkpoint
    pin = integrity.current_pin(ctx.state, cfg)
    progress.update(phase="checking the golden sets", force=True)
    for split in integrity.GOLDEN_SPLITS:  # every evaluation reads the bytes it scores once more, in full
        problem = integrity.split_problem(ctx.ws.dataset, split, pin.splits.get(split) if pin else None,
                                          whose=f"pinned golden {split}")
        if problem:
            raise integrity.IntegrityError(f"{problem}: not scored; `retry` tokenizes the golden sets again")
    device = eval_device(cfg.hardware.accelerator)
    progress.update(phase="golden val", force=True)
    val = score(ckpt, ctx.ws.dataset, "val", device=device)
    progress.update(phase="golden test and play-out", force=True)
    test = score(ckpt, ctx.ws.dataset, "test", playout_deals=cfg.evaluation.playout_deals, device=device)
    playout = {k: test.pop(k) for k in list(test) if k.startswith("playout")}
    key = integrity.golden_key(cfg)  # compared only with iterations scored on the same golden sets
    prev = ctx.previous()
    if prev is not None and series_of(prev) not in (key, ANY_SERIES):
        prev = None
    best = ctx.state.history.best_in_series(key, before=ctx.iteration)  # from the history's summary
    result = EvaluateResult(
        checkpoint=trained.checkpoint, val=val, test=test, playout=playout,
        delta_prev=_deltas(val, prev.val if prev else None), delta_best=_deltas(val, best.val if best else None),
        best_iteration=best.iteration if best else None, primary_metric=metric_label(*PRIMARY_METRIC),
        is_best=best is None or better(PRIMARY_METRIC[1], val[PRIMARY_METRIC[1]], best.metric(*PRIMARY_METRIC)),
        golden_series=pin.series if pin else None,
        total_seeds=seeds_counted(ctx.state.history, ctx.seeds) if not ctx.is_past else None,
    )
    result.flags = regressions(result, best)
    progress.update(phase="W&B", force=True)
    result.wandb = log_iteration(ctx, trained, result) if not ctx.no_wandb else None
    if result.is_best:
        print(f"new best (val Q-gap {val['q_gap']:.4f}): {trained.checkpoint}")
    for flag in result.flags:
        print(f"worse than the best: {flag}")
    return result


def default_iteration(ws: Workspace, state: State) -> int | None:
    """With the flywheel idle and nothing trained for the next iteration yet, the last finished one
    (rather than an iteration with nothing to evaluate)."""
    if state.current is None and state.history and not train.STAGE.path(ws, state.iteration).is_file():
        return state.history[-1].iteration
    return None


STAGE: Stage[EvaluateConfig, EvaluateResult] = Stage(
    name="evaluate", notebook="04_evaluate.ipynb", upstream=train.STAGE, config=EvaluateConfig,
    result=EvaluateResult, inputs=inputs, work=work, writes_under=lambda ws, iteration: ws.run_dir(iteration),
    default_iteration=default_iteration,
)


def run(ctx: Context, force: bool = False) -> EvaluateResult:
    """Golden val and test metrics, a play-out on golden test deals, deltas, and W&B logging."""
    return running.run(STAGE, ctx, force)
