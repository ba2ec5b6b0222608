"""Bounds of fp32 arithmetic for tests that compare two forwards of one model."""

from __future__ import annotations


def near_ties(model, tensors: dict, move_head: str = "policy") -> int:
    """Rows whose two best legal logits lie within fp32 rounding of each other
    (``forge.ml.inference.fp32_tolerance`` at the logits' scale). Another CPU, thread count or order
    of summation may pick the other move there, so these rows bound how far argmax-based metrics of
    two fp32 forwards may differ; every other row must agree exactly."""
    import torch

    from forge.ml.inference import fp32_tolerance
    from forge.ml.model import move_scores

    with torch.inference_mode():
        logits = move_scores(model.eval()(tensors["tokens"], tensors["masks"], tensors["players"]), move_head)
    legal = tensors["legal"] != 0
    top2 = logits.masked_fill(~legal, float("-inf")).topk(2, -1).values
    tol = fp32_tolerance(model.config, float(logits.abs().max()))
    return int(((top2[:, 0] - top2[:, 1] <= tol) & (legal.sum(-1) > 1)).sum())


#: Metrics that average the value and Q heads' outputs in points. Two fp32 forwards of one model that
#: sum in another order (another torch thread count: a test's own process beside the loop's kernels)
#: move them by rounding; every other metric counts moves chosen by argmax and must agree exactly.
POINT_ERRORS = ("value_mae", "q_mae", "game_value_mae")


def assert_same_metrics(got: dict, want: dict, model: str = "tiny") -> None:
    """``got`` and ``want`` are one model's metrics on one split, computed in two processes: counts,
    rates and Q-gaps equal, point errors within fp32 rounding (``fp32_tolerance`` of ``model``'s
    architecture on outputs of unit scale, times the 42 points an output is scaled by)."""
    import pytest

    from forge.ml.inference import fp32_tolerance
    from forge.ml.model import preset
    from forge.oracle.rules import TOTAL_POINTS

    tol = TOTAL_POINTS * fp32_tolerance(preset(model))
    assert got.keys() == want.keys(), (sorted(got), sorted(want))
    exact = {k: got[k] for k in got if k not in POINT_ERRORS}
    assert exact == {k: want[k] for k in exact}
    for key in POINT_ERRORS:
        if key in want:
            assert got[key] == pytest.approx(want[key], rel=0, abs=tol), (key, got[key], want[key], tol)
