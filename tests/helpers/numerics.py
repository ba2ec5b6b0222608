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
