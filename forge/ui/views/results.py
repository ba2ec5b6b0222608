"""Any stage's result, readable: what the iteration is, and the result's fields as a table.

(These replace the display helpers that used to live in ``forge.flywheel.stages``: the flywheel
records results, the UI shows them.)
"""

from __future__ import annotations

from typing import Any

import polars as pl

from forge.flywheel.stages.base import StageResult
from forge.ui.metric_info import info
from forge.ui.views.display import frame_html


def describe(ctx: Any) -> str:
    """One line on the workspace and one on the iteration a notebook works on."""
    cfg = ctx.config
    seeds = f"{len(ctx.seeds)} seeds {ctx.seeds[0]}..{ctx.seeds[-1]}" if ctx.seeds else "no seeds"
    return (f'<div class="forge-context" style="font:13px/1.5 system-ui,sans-serif">workspace <code>{ctx.ws.root}'
            f"</code><br>iteration <b>{ctx.iteration}</b> ({cfg.preset} preset, hand size {cfg.data.hand_size}): "
            f"{seeds}</div>")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"  # 3e-05 stays 3e-05, 0.58805 becomes 0.5881
    if isinstance(value, list) and len(value) > 8:
        return f"{len(value)} items: {', '.join(map(str, value[:4]))}, ..."
    return str(value)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def result_frame(result: StageResult, skip: tuple[str, ...] = ("inputs", "outputs", "shards")) -> pl.DataFrame:
    """The result's fields (nested keys as ``a.b``) and their values as text; ``skip`` leaves out
    bulky sections (the fingerprint's inputs and outputs, per-shard lists shown elsewhere)."""
    flat: dict[str, Any] = {}
    for key, value in result.plain().items():
        if key not in skip:
            _flatten(key, value, flat)
    return pl.DataFrame({"field": list(flat), "value": [_text(v) for v in flat.values()],
                         "unit": [_unit(f) for f in flat]},
                        schema={"field": pl.String, "value": pl.String, "unit": pl.String})


def _unit(field: str) -> str:
    """A metric field's unit (``val.q_gap``: points / move); blank for anything else."""
    where, _, name = field.partition(".")
    return info(name).unit if where in ("val", "test", "playout", "delta_prev", "delta_best") and name else ""


def result_html(result: StageResult) -> str:
    frame = result_frame(result)
    return f'<details class="forge-result"><summary>stage result ({len(frame)} fields)</summary>' \
           f"{frame_html(frame)}</details>"
