"""Faults in the benchmarks' record: a figure that says where its numbers came from must say it for every curve."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmark's modes: benchmarks/ttq
from ttq import common  # noqa: E402


def test_a_plot_of_runs_from_two_cpus_does_not_name_only_the_first(tmp_path):
    """It did: the compare plot of an Intel Xeon run beside an AMD EPYC run was titled "(Intel ...)" alone,
    reading as a side-by-side comparison on one machine."""
    curves = [{"machine": {"cpu": "Intel(R) Xeon(R) Processor"}}, {"machine": {"cpu": "AMD EPYC"}}]
    fig, ax = plt.subplots()
    for label in ("xeon run", "epyc run"):
        ax.plot([0, 1], [1, 0], label=label)
    common.save_figure(fig, (ax,), curves, "Flywheel from scratch", tmp_path / "plot.png")
    title = fig._suptitle.get_text()
    assert "Intel(R) Xeon(R) Processor" in title and "AMD EPYC" in title
    assert title.index("Intel") < title.index("AMD")  # in the legend's order
    assert (tmp_path / "plot.png").stat().st_size > 0
