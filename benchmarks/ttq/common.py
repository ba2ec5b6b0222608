"""What every mode shares: settings from the command line, machine facts, tables and JSON."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import yaml

from forge.atomic import atomic_write_text
from forge.errors import InputError
from forge.flywheel.config import ConfigError, config_from_dict, load_preset
from forge.ml.catalog import CATALOG, REFERENCE_FIGURES, REFERENCE_FIVE
from forge.ml.model import ModelConfig
from forge.ml.module import DominoModule

REPO = Path(__file__).resolve().parents[2]
#: Issue 23's goals for a model trained from scratch on this project's 2-core machines: val Q-gap
#: within two hours (the trainer), and the quick flywheel's at one and two hours of loop wall-clock.
GOAL_QGAP = 0.10
FLYWHEEL_GOALS = ((60, 0.20), (120, 0.12))
#: What a curve point or a flywheel iteration records: the reference catalog's five metrics and ours.
METRICS = (*REFERENCE_FIVE, "decision_q_gap", "accuracy", "game_value_mae")
#: The reference's model whose figures the plots mark (forge.ml.catalog.REFERENCE_FIGURES).
REFERENCE_MODEL = next(iter(REFERENCE_FIGURES))


def parse_budget(text: str) -> float:
    """Seconds from "90s", "10m", "1.5h" or a bare number of minutes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"budget must be a positive time like 90s, 10m or 1.5h, got {text!r}")
    return float(m.group(1)) * {"s": 1, "m": 60, "": 60, "h": 3600}[m.group(2)]


def yaml_value(text: str) -> Any:
    """A value as YAML, but ``3e-4`` is a number (YAML 1.1 wants ``3.0e-4``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_settings(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value`` pairs (values as YAML) split into ModelConfig fields and DominoModule kwargs."""
    model_keys = {f.name for f in fields(ModelConfig)}
    # --model and --lr say those two
    module_keys = set(inspect.signature(DominoModule.__init__).parameters) - {"self", "model_config", "lr"}
    model, module = {}, {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in model_keys | module_keys:
            raise InputError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(model_keys | module_keys))}")
        (model if key in model_keys else module)[key] = yaml_value(value)
    return model, module


def flywheel_settings(preset: str, pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (values as YAML) as state.yaml config keys, checked against ``preset``."""
    updates = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--set {pair!r}: expected KEY=VALUE with KEY a state.yaml config key")
        updates[key] = yaml_value(value)
    try:
        config_from_dict({**load_preset(preset).to_dict(), **updates})
    except ConfigError as exc:
        raise InputError(f"--set: {exc}") from None
    return updates


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def text_table(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]]) -> str:
    """A fixed-width table: each column is (header, key, format spec such as ">8.2f"); the header
    takes the spec's alignment and width; a missing value prints as "-"."""
    heads = []
    for header, _, spec in columns:
        align, width = re.match(r"([<>^]?)(\d*)", spec).groups()
        heads.append(f"{header:{align or '>'}{width}}")
    head = " ".join(heads)

    def cell(value: Any, spec: str) -> str:
        if value is None:
            align, width = re.match(r"([<>^]?)(\d*)", spec).groups()
            return f"{'-':{align or '>'}{width}}"
        return f"{value:{spec}}"

    return "\n".join([head, "-" * len(head)] + [" ".join(cell(r.get(key), spec) for _, key, spec in columns)
                                                 for r in rows])


def figure(**subplots: Any) -> tuple[Any, Any]:
    """A matplotlib figure of two panels side by side, drawn off-screen (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, 2, figsize=(12, 4.5), **subplots)


def save_figure(fig: Any, axes: tuple[Any, ...], curves: list[dict[str, Any]], title: str, path: Path) -> None:
    """Grid and legend on every panel, the CPU in the title, then the PNG (its folder made)."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} ({cpu_note(curves)})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_note(curves: list[dict[str, Any]]) -> str:
    """The CPU the curves came from; curves from different CPUs name each, in the legend's order, so a
    comparison across machines never reads as a side-by-side one."""
    cpus = [c.get("machine", {}).get("cpu", "CPU not recorded") for c in curves]
    if len(set(cpus)) <= 1:
        return cpus[0] if cpus else ""
    return "different CPUs, in the legend's order: " + "; ".join(cpus)


def metrics_path(plot: Path) -> Path:
    """Where the reference metrics' figure goes beside a Q-gap plot: ``curve.png`` -> ``curve-metrics.png``."""
    return plot.with_name(f"{plot.stem}-metrics.png")


def _panel_label(name: str) -> str:
    return "states with regret (100% - zero-regret)" if name == "zero_regret" else CATALOG[name].label


def five_metrics_figure(curves: list[dict[str, Any]], rows: str, x: str, xlabel: str, path: Path,
                        title: str) -> None:
    """The reference catalog's other four metrics against ``x`` for each curve's ``rows`` (points or
    iterations): value MAE and Q-MAE in points (left); the states with regret (100% - zero-regret) and
    the blunder rate in % on a log scale (right); the reference's published figures as dotted lines."""
    fig, (mae, share) = figure()
    ref = REFERENCE_FIGURES[REFERENCE_MODEL]
    panels = (("value_mae", mae, lambda v: v, "o-"), ("q_mae", mae, lambda v: v, "s--"),
                    ("zero_regret", share, lambda v: 100 * (1 - v), "o-"),
                    ("blunder_rate", share, lambda v: 100 * v, "s--"))
    for c in curves:
        label = c.get("label") or c.get("started", "")
        for name, ax, show, style in panels:
            pts = [r for r in c[rows] if r.get(name) is not None and r.get(x) is not None]
            if pts:
                ax.plot([r[x] for r in pts], [show(r[name]) for r in pts], style, ms=3,
                        label=f"{label} {_panel_label(name)}".strip())
    for name, ax, show, _ in panels:
        ax.axhline(show(ref[name]), color="grey", ls=":", lw=1,
                   label=f"{REFERENCE_MODEL} {_panel_label(name)}: {show(ref[name]):.3g}")
    share.set_yscale("log")
    for ax in (mae, share):
        ax.set_xlabel(xlabel)
    mae.set_ylabel("mean absolute error (points)")
    share.set_ylabel("% of golden val states (log)")
    save_figure(fig, (mae, share), curves, title, path)


def reference_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The last row's five reference metrics beside each reference model's published figures."""
    def cell(name: str, value: float | None) -> str:
        if value is None:
            return f"{'-':>12}"
        return f"{100 * value:11.2f}%" if CATALOG[name].unit.startswith("share") else f"{value:12.3f}"

    head = f"{'golden val':<32}" + "".join(f"{CATALOG[n].label:>12}" for n in REFERENCE_FIVE)
    lines = [head, "-" * len(head)]
    for model, figures in REFERENCE_FIGURES.items():
        lines.append(f"{'reference ' + model:<32}" + "".join(cell(n, figures.get(n)) for n in REFERENCE_FIVE))
    if rows:
        lines.append(f"{'this run, last':<32}" + "".join(cell(n, rows[-1].get(n)) for n in REFERENCE_FIVE))
    return lines


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{what}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def children_cpu() -> float:
    """CPU seconds of this process's ended children (a stage's kernel, a deal producer, once reaped)."""
    t = os.times()
    return t.children_user + t.children_system
