"""Training curves of several iterations overlaid (forge.ui.views.curves): read from each iteration's
metrics.csv as the train stage recorded it, x in samples (steps times the batch), smoothing as
TensorBoard's, a log scale, and the archive index's static figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.workspaces import reviewed_workspace

from forge.ui.views import compare, curves


def with_curves(ws: Path, batch: int = 8) -> Path:
    """A train result and a Lightning-style metrics.csv (blanks where a column was not logged) per iteration."""
    for it in (1, 2, 3):
        run = ws / f"runs/iter-{it:04d}/domino/version_0"
        run.mkdir(parents=True)
        (run / "hparams.yaml").write_text(f"batch_size: {batch}\n")
        rows = ["epoch,step,train/loss,val/loss,val/q_gap"]
        rows += [f"0,{s},{4.0 / (s + 1) + it},," for s in range(10)]
        rows += [f"0,9,,{1.5 + it},{0.5 + it / 10}"]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
        results = ws / f"runs/iter-{it:04d}/results"
        results.mkdir(parents=True)
        (results / "train.json").write_text(json.dumps({"metrics_csv": str(run.relative_to(ws) / "metrics.csv"),
                                                        "samples": 80, "samples_seen": 80 * it}))
    return ws


def test_smoothing_is_a_debiased_moving_average() -> None:
    assert curves.smoothed([1.0, 2.0, 3.0], 0) == [1.0, 2.0, 3.0]
    assert curves.smoothed([5.0] * 4, 0.9) == pytest.approx([5.0] * 4)  # debiased: no pull towards 0
    rough = [0.0, 10.0] * 10
    smooth = curves.smoothed(rough, 0.8)
    assert max(smooth[5:]) - min(smooth[5:]) < max(rough) - min(rough)
    with pytest.raises(ValueError, match="smoothing"):
        curves.smoothed([1.0], 1.0)


def test_each_iteration_curve_is_read_in_samples_and_overlaid(tmp_path: Path) -> None:
    ws = with_curves(reviewed_workspace(tmp_path / "ws"))
    runs = compare.load_runs([ws])
    found = curves.load_curves(runs)
    assert [c.run.iteration for c in found] == [1, 2, 3]
    xs, ys = found[1].series[curves.TRAIN_LOSS]
    assert xs[0] == 8 and xs[-1] == 80 and ys[0] == pytest.approx(6.0)  # (step + 1) x batch 8
    assert found[1].series[curves.VAL_Q_GAP] == ([80], [pytest.approx(0.7)])  # one point per check
    assert [c.offset for c in found] == [0, 80, 160]  # fine-tuned: the samples its start had seen
    fig = curves.curves_figure(found, smoothing=0.5, log_y=True, x="cumulative")
    ax_loss, ax_gap = fig.axes
    assert [ln.get_label() for ln in ax_gap.lines] == ["iteration 1", "iteration 2", "iteration 3"]
    assert list(ax_gap.lines[2].get_xdata()) == [240]  # 160 earlier + 80 in iteration 3
    assert ax_loss.get_yscale() == "log" and "samples seen" in ax_loss.get_xlabel()
    with pytest.raises(ValueError, match="x must be one of"):
        curves.curves_figure(found, x="epochs")


def test_an_iteration_without_a_readable_curve_is_left_out(tmp_path: Path) -> None:
    ws = with_curves(reviewed_workspace(tmp_path / "ws"))
    (ws / "runs/iter-0002/domino/version_0/metrics.csv").unlink()  # gone (a hand clean-up)
    (ws / "runs/iter-0003/results/train.json").write_text("{not json")
    assert [c.run.iteration for c in curves.load_curves(compare.load_runs([ws]))] == [1]


def test_the_archive_index_shows_the_curves(tmp_path: Path) -> None:
    from forge.ui.archive_index import _curves_section, write_index

    ws = reviewed_workspace(tmp_path / "ws")
    assert _curves_section(compare.load_runs([ws])) == ""  # none recorded: no empty figure
    page = write_index(with_curves(ws)).read_text()
    assert 'class="forge-curves"' in page and "the newest 3 iterations" in page


def test_the_notebook_view_draws_headless_and_builds_its_controls_live(tmp_path: Path, monkeypatch,
                                                                        capsys) -> None:
    runs = compare.load_runs([with_curves(reviewed_workspace(tmp_path / "ws"))])
    monkeypatch.setenv("FORGE_HEADLESS", "1")
    curves.show_curves(runs)  # the figure alone
    assert "Image" in capsys.readouterr().out
    monkeypatch.delenv("FORGE_HEADLESS")
    curves.show_curves(runs, last=2)
    assert "VBox" in capsys.readouterr().out
