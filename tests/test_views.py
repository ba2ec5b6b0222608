"""The notebook views on real small data: reduced-hand deals solved here, a tiny tokenized dataset,
and a tiny model trained on it with Lightning (the live curve watching).

Every view is checked against an independent source of the same fact: a decoded sample must
tokenize back to itself and sit in its shard with the same V and Q; a play-out's drawn losses
must add up to the play-out's own accounting; the kept epoch must be the one Lightning's
checkpoint callback saved; per-sample Q-gaps must agree with the metrics module.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from forge.errors import InputError
from forge.flywheel.stages.base import StageResult
from forge.flywheel.stages.evaluate import EvaluateResult
from forge.flywheel.stages.generate import GenerateResult
from forge.flywheel.stages.tokenize import TokenizeResult
from forge.flywheel.stages.train import TrainOutputs, TrainResult
from forge.ml.evaluate import evaluate
from forge.ml.inference import inference_net
from forge.ml.loading import load_module
from forge.ml.metrics import MoveMetrics
from forge.ml.playout import Position, oracle_policy
from forge.ml.settings import TrainingSection
from forge.ml.store import build_dataset, load_split, read_manifest
from forge.ml.tokenize import F_DECL, featurize, tricks_played_of
from forge.ml.training import train
from forge.oracle.deal import deal
from forge.oracle.rules import DECL_NAMES, ILLEGAL_Q, MAX_HAND, domino_name
from forge.oracle.shard import write_shard
from forge.oracle.shard_rows import ShardRows
from forge.oracle.solve import solve
from forge.oracle.state import initial_state
from forge.ui.views import deals, display, evaluation, explore, playouts, positions, results, samples, shards, training
from forge.ui.views.dominoes import domino_svg, hands_html

HAND = 3
TRAIN = [(11, 1), (12, 2), (13, 3), (14, 4)]
VAL = [(900, 5), (901, 6), (902, 7)]
TEST = [(950, 8), (951, 9), (952, 0)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Solved shards, a tokenized dataset and a tiny trained checkpoint (with its live curve)."""
    root = tmp_path_factory.mktemp("views")
    sols, paths = {}, {}
    for split, jobs in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        paths[split] = []
        for seed, decl in jobs:
            sol = solve(seed, decl, HAND)
            sols[seed, decl] = sol
            paths[split].append(write_shard(sol, root / ("golden" if split != "train" else "shards")))
    dataset = root / "tokens" / "dataset"
    stats = build_dataset(paths, dataset, {"train": 200, "val": 150, "test": 150}, global_seed=3, progress=False)
    curve = training.LiveCurve(redraw=False)
    run = train(dataset, TrainingSection(epochs=3, lr=3e-3, batch_size=64, model="tiny", train_seed=0),
                run_dir=root / "runs", wandb=False, progress=False, trainer_kwargs={"callbacks": [curve]})
    return {"root": root, "sols": sols, "paths": paths, "dataset": dataset, "stats": stats, "run": run,
            "curve": curve, "checkpoint": run.best_checkpoint}


# ---------------------------------------------------------------------------------------------- drawing

def test_a_domino_tile_names_itself_and_shows_its_pips() -> None:
    for d, (high, low) in ((27, (6, 6)), (0, (0, 0)), (19, (5, 4))):
        svg = domino_svg(d)
        assert f'data-domino="{high}-{low}"' in svg and svg.count("<circle") == high + low


def test_hands_are_drawn_as_dealt() -> None:
    hands = deal(7, HAND)
    html = hands_html(hands, 6)
    rows = re.findall(r'<div class="forge-hand" data-player="(\d)".*?</div>', html)
    assert rows == ["0", "1", "2", "3"]
    assert re.findall(r'data-domino="(\d-\d)"', html) == [domino_name(int(d)) for d in hands.reshape(-1)]


# ---------------------------------------------------------------------------------------------- positions

def test_every_sample_decodes_to_its_own_shard_state(data) -> None:
    """Decoding is exact: the rebuilt state is a row of the sample's shard with the sample's V and Q,
    and tokenizing it again gives back the sample's arrays bit for bit."""
    manifest = read_manifest(data["dataset"])
    for split in ("train", "val"):
        arrays = load_split(data["dataset"], split)
        sources = manifest["splits"][split]["sources"]
        owner = np.repeat(np.arange(len(sources)), [s["samples"] for s in sources])
        for i in range(len(arrays["targets"])):
            src = sources[owner[i]]
            sol = data["sols"][src["seed"], src["decl_id"]]
            board = positions.decode_sample(arrays, i)
            row = sol.lookup(board.state)
            assert board.value == sol.value(row) and (board.q == sol.q_row(row)).all()
            again = featurize(np.array([board.state]), np.array([board.value], np.int8),
                              board.q[None, :].astype(np.int8), board.hands, board.decl_id)
            for name in ("tokens", "masks", "players", "legal", "targets"):
                assert (again[name][0] == arrays[name][i]).all(), (split, i, name)
            assert int(arrays["targets"][i]) in board.best
            assert sorted(board.legal) == sorted(np.flatnonzero(board.q != ILLEGAL_Q).tolist())


def test_tricks_played_agrees_between_numpy_polars_and_tokens(data) -> None:
    sol = data["sols"][TRAIN[0]]
    by_numpy = positions.tricks_played(sol.state, HAND)
    by_polars = pl.DataFrame({"state": sol.state}).select(positions.tricks_played_expr(HAND))["tricks played"]
    assert (by_numpy == by_polars.to_numpy()).all()
    assert positions.tricks_played(initial_state(HAND), HAND) == 0
    assert set(by_numpy.tolist()) == set(range(HAND + 1))
    arrays = load_split(data["dataset"], "train")
    from_tokens = positions.sample_tricks_played(arrays["tokens"], arrays["masks"])
    decoded = [positions.decode_sample(arrays, i).tricks_played for i in range(len(from_tokens))]
    assert from_tokens.tolist() == decoded


def test_a_position_shows_the_model_move_and_what_it_costs(data) -> None:
    sol = data["sols"][TRAIN[1]]
    state = next(int(s) for s, r in zip(sol.state, range(len(sol)))
                 if len(set((sol.q_row(r)[sol.q_row(r) != ILLEGAL_Q]).tolist())) > 1)
    board = positions.board_at(sol, state)
    worst = min(board.legal, key=lambda i: board.mover_q()[i])
    html = positions.board_html(board, "t", model_move=worst)
    lost = board.regret(worst)
    assert lost > 0 and f"loses {lost} point" in html
    table = positions.q_table(board, model_move=worst)
    assert table["#"].to_list() == board.legal
    assert table.filter(pl.col("#") == worst)["mark"].item().endswith("model")
    assert set(table.filter(pl.col("regret") == 0)["#"].to_list()) == set(board.best)


# ---------------------------------------------------------------------------------------------- 01 generate

def test_deal_view_shows_the_hands_and_the_oracle_opening(data) -> None:
    seed, decl = TRAIN[2]
    sol, path = data["sols"][seed, decl], data["paths"]["train"][2]
    html = deals.deal_html(path)
    assert 'class="forge-deal"' in html and f"seed {seed} · {DECL_NAMES[decl]}" in html
    drawn = re.findall(r'data-domino="(\d-\d)"', html)[:4 * HAND]
    assert drawn == [domino_name(int(d)) for d in deal(seed, HAND).reshape(-1)]
    root = sol.lookup(initial_state(HAND))
    board = deals.opening(path)
    assert board.value == sol.value(root) and (board.q == sol.q_row(root)).all()
    frame = deals.deals_frame(data["paths"]["train"])
    roots = [data["sols"][j].value(data["sols"][j].lookup(initial_state(HAND))) for j in TRAIN]
    assert frame["root V"].to_list() == roots


def test_shard_shape_counts_every_state(data) -> None:
    sol, path = data["sols"][TRAIN[0]], data["paths"]["train"][0]
    depth = deals.depth_frame(path)
    assert depth["states"].sum() == len(sol)
    assert depth["states"].to_list() == np.bincount(positions.tricks_played(sol.state, HAND)).tolist()
    values = deals.value_frame(path)
    expect = dict(zip(*np.unique(sol.V, return_counts=True)))
    assert dict(values.select("V", "states").iter_rows()) == {int(k): int(v) for k, v in expect.items()}
    assert len(deals.shard_figure(path).axes) == 2


def test_seconds_per_deal_come_from_the_stage_record() -> None:
    result = GenerateResult.model_validate(
        {"shards": [{"split": "golden", "seed": 900, "decl": 0, "rows": 500, "seconds": 0.5, "kept": False},
                    {"split": "golden", "seed": 901, "decl": 1, "rows": 300, "seconds": 0.0, "kept": True},
                    {"split": "train", "seed": 1, "decl": 1, "rows": 700, "seconds": 0.25, "kept": False}]})
    summary = deals.timing_summary(result)
    assert summary.rows() == [("golden", 1, 1, 0.5, 0.5, 1000.0), ("train", 1, 0, 0.25, 0.25, 2800.0)]
    assert deals.timing_frame(result, split="train")["seed"].to_list() == [1]


# ---------------------------------------------------------------------------------------------- 02 tokenize

def test_sample_counts_add_up_to_the_manifest(data) -> None:
    counts = samples.counts_frame(data["dataset"])
    manifest = read_manifest(data["dataset"])
    for split, entry in manifest["splits"].items():
        assert counts.filter(pl.col("split") == split)["samples"].sum() == entry["count"]
        per_decl = {}
        for s in entry["sources"]:
            per_decl[DECL_NAMES[s["decl_id"]]] = per_decl.get(DECL_NAMES[s["decl_id"]], 0) + s["samples"]
        table = samples.declaration_table(counts)
        assert {d: n for d, n in table.select("declaration", split).iter_rows() if n} == per_decl
    assert samples.declaration_table(counts).columns == ["declaration", "train", "val", "test"]


def test_decoded_sample_view_and_its_index_check(data) -> None:
    arrays = load_split(data["dataset"], "train")
    i = samples.interesting_sample(arrays)
    assert arrays["masks"][i, -3:].sum() > 0 and arrays["legal"][i].sum() > 1
    html = samples.sample_html(data["dataset"], "train", "")
    assert 'class="forge-decoded-sample"' in html and f"train sample {i} of" in html
    assert "trick so far" in html and "forge-qtable" in html
    with pytest.raises(InputError, match="sample index"):
        samples.sample_html(data["dataset"], "train", str(len(arrays["targets"])))


def test_cache_hits_come_from_the_stage_result() -> None:
    frame = samples.cache_frame(TokenizeResult(tokenized_shards=1, cached_shards=3, splits_rewritten=["train"]))
    assert frame.row(0)[:4] == (1, 3, 0.75, "train")


# ---------------------------------------------------------------------------------------------- 03 train

def test_live_curve_watched_every_training_step(data) -> None:
    curve, run = data["curve"], data["run"]
    n_train = read_manifest(data["dataset"])["splits"]["train"]["count"]
    steps_per_epoch = -(-n_train // 64)
    assert curve.steps == list(range(1, 3 * steps_per_epoch + 1))
    assert curve.samples == 3 * n_train and curve.samples_per_second > 0
    frame = training.metrics_frame(run.metrics_csv)
    assert [round(g, 5) for _, g in curve.val] == [round(g, 5) for g in training.per_epoch(frame, "val/q_gap")[1]]
    assert all(np.isfinite(curve.losses))


def _trained(**fields) -> TrainResult:
    """A train stage's result with no kept epoch recorded (pretraining's), unless ``fields`` say so."""
    return TrainResult(**{"checkpoint": "runs/iter-0001/model.ckpt", "started_from": "scratch", "lr": 1e-3,
                          "metrics_csv": "metrics.csv", "kept_reason": "",
                          "outputs": TrainOutputs(checkpoint="runs/iter-0001/model.ckpt", sha256="0"), **fields})


def test_kept_epoch_is_the_one_the_checkpoint_callback_saved(data) -> None:
    frame = training.metrics_frame(data["run"].metrics_csv)
    epoch, reason = training.kept_checkpoint(_trained(), frame)
    saved = torch.load(data["checkpoint"], map_location="cpu", weights_only=True)["epoch"]
    assert epoch == saved + 1 and "val/q_gap" in reason
    # the stage's own record wins when it has one
    assert training.kept_checkpoint(_trained(kept_epoch=2, kept_reason="r"), frame) == (2, "r")
    fig = training.curves_figure(frame, epoch)
    assert len(fig.axes) >= 3 and any(line.get_label() == "kept checkpoint" for line in fig.axes[1].lines)
    assert training.lr_columns(frame) and frame[training.lr_columns(frame)[0]].drop_nulls().len() > 0
    speed = training.throughput_frame(_trained(seconds=2.0), frame, data["curve"])
    assert speed["samples / s (training steps)"].item() == round(data["curve"].samples_per_second)


def _texts(fig) -> str:
    """Every word a figure shows: titles, axis labels, tick labels, legends."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.get_xticklabels())]
        legend = ax.get_legend()
        out += [t.get_text() for t in legend.get_texts()] if legend else []
    return " ".join(out)


def test_a_budget_run_is_shown_in_the_budget_terms(data, tmp_path) -> None:
    """No epoch words where there are no epochs, one validation point per check, samples of the budget,
    and which val states each figure is on."""
    budget = 600
    curve = training.LiveCurve(redraw=False)
    run = train(data["dataset"],
                TrainingSection(train_samples=budget, lr=3e-3, batch_size=64, model="tiny", val_samples=100),
                run_dir=tmp_path, wandb=False, progress=False, trainer_kwargs={"callbacks": [curve]})
    frame = training.metrics_frame(run.metrics_csv)
    settings = training.run_settings(run.metrics_csv)
    assert training.budget_text(settings) == "600 samples"
    result = _trained(kept_reason="the last weights: a training budget (600 samples) keeps where training stands",
                      samples=run.samples, train_seconds=1.5, seconds=3.0)
    epoch, why = training.kept_checkpoint(result, frame)
    assert epoch is None and why == result.kept_reason  # not "lowest val/q_gap over epochs 1..2"
    fig = training.curves_figure(frame, epoch, settings)
    words = _texts(fig)
    assert "epoch" not in words.lower() and "a budget run: 600 samples" in words
    assert "validation on 100 golden val states" in words and "samples trained on" in words
    checks = fig.axes[1].lines[0].get_xdata()
    assert len(checks) == len(curve.val) and len(set(checks)) == len(checks)  # one point per check
    kept = training.kept_frame(result, frame, settings)
    assert kept["kept"].item() == "the last weights" and "its val Q-gap (100 golden val states)" in kept.columns
    assert "all golden val states" in training.kept_html(result, frame, settings)  # the history's figure differs
    speed = training.throughput_frame(result, frame, curve, settings)
    assert "epochs" not in speed.columns and speed["budget"].item() == "600 samples"
    assert speed["samples trained on"].item() == run.samples and speed["minutes of training"].item() == 0.03
    live = _texts(curve.figure())
    assert f"{curve.samples:,} of 600 samples" in live and "per check" in live and "epoch" not in live


# ---------------------------------------------------------------------------------------------- 04 evaluate

def test_per_sample_gaps_agree_with_the_metrics_module(data) -> None:
    pred = evaluation.predict_subset(data["checkpoint"], data["dataset"], "val", limit=10_000)
    arrays = load_split(data["dataset"], "val")
    net = inference_net(load_module(data["checkpoint"]).model)
    with torch.inference_mode():
        out = net(*(torch.from_numpy(np.asarray(arrays[k])) for k in ("tokens", "masks", "players")))
    metrics = MoveMetrics()
    depths = tricks_played_of(*(torch.from_numpy(np.asarray(arrays[k])) for k in ("tokens", "masks")))
    metrics.update(out.logits, arrays["qvals"], arrays["legal"], arrays["teams"], arrays["targets"],
                   arrays["tokens"][:, 0, F_DECL], value=out.value, values=arrays["values"], depths=depths)
    want = metrics.compute()
    assert len(pred.index) == len(arrays["targets"])
    assert pred.gaps.mean() == pytest.approx(want["q_gap"], abs=1e-12)
    by_decl = evaluation.gap_frame(pred, "declaration")
    for name, gap in by_decl.select("declaration", "Q-gap").iter_rows():
        assert gap == pytest.approx(want[f"q_gap/{name}"], abs=1e-12)
    # value error: fp32 outputs scaled by 42, averaged in float64 on both sides
    assert np.abs(pred.value - pred.oracle_value).mean() == pytest.approx(want["value_mae"], rel=1e-5)
    depth = evaluation.gap_frame(pred, "tricks played")
    assert depth["samples"].sum() == len(pred.index)
    # the evaluation's own per-depth figures (q_gap/depth<k>) are the per-sample view's, depth by depth
    for k, gap in depth.select("tricks played", "Q-gap").iter_rows():
        assert gap == pytest.approx(want[f"q_gap/depth{k}"], abs=1e-12)
    assert sorted(int(k.removeprefix("q_gap/depth")) for k in want if k.startswith("q_gap/depth")) == depth[
        "tricks played"].to_list()
    # every mean is recorded with the number of states it is over, and every depth is counted, empty ones too
    counts = dict(depth.select("tricks played", "samples").iter_rows())
    assert [want[f"n/depth{k}"] for k in range(MAX_HAND)] == [counts.get(k, 0) for k in range(MAX_HAND)]
    for name, n in by_decl.select("declaration", "samples").iter_rows():
        assert want[f"n/{name}"] == n
    # and the evaluation records them over the whole split (one batch, as above: the same fp32 sums)
    scored = evaluate(data["checkpoint"], data["dataset"], "val", batch_size=len(arrays["targets"]))
    assert {k: v for k, v in scored.items() if "depth" in k} == pytest.approx(
        {k: v for k, v in want.items() if "depth" in k}, abs=1e-12)
    fig = evaluation.calibration_figure(pred)
    assert len(fig.axes[0].collections[0].get_offsets()) == len(pred.index)
    assert pred.value_source == "value head" and "V = value head" in fig.axes[0].get_title()  # no Q head trained


def test_with_a_q_head_the_calibration_view_shows_the_v_read_off_it(data, tmp_path) -> None:
    """The view's V is the evaluation's game value: the best legal Q, whose error it records."""
    run = train(data["dataset"], TrainingSection(epochs=1, lr=3e-3, batch_size=64, model="tiny", train_seed=0,
                                                 q_weight=1.0),
                run_dir=tmp_path / "runs", wandb=False, progress=False)
    pred = evaluation.predict_subset(run.last_checkpoint, data["dataset"], "val", limit=10_000)
    assert pred.value_source == "best legal Q" and pred.q is not None
    best = np.where(pred.arrays["legal"] != 0, pred.q, -np.inf).max(-1)
    assert pred.value == pytest.approx(best, abs=1e-4)
    scored = evaluate(run.last_checkpoint, data["dataset"], "val", batch_size=len(pred.index))
    assert np.abs(pred.value - pred.oracle_value).mean() == pytest.approx(scored["game_value_mae"], rel=1e-5)
    assert "V = best legal Q" in evaluation.calibration_figure(pred).axes[0].get_title()


def test_per_group_bars_carry_their_counts_and_never_hide_an_empty_or_thin_group(data) -> None:
    """The issue's val split: depth 0 with no states, depth 1 with 5; neither may read as perfect play."""
    from forge.ui.views import breakdown

    pred = evaluation.predict_subset(data["checkpoint"], data["dataset"], "val", limit=50)
    counts = [0, 5, 273, 4786, 18243, 6604, 89]
    val = {"n": sum(counts), "q_gap": 1.0, "q_gap/sixes": 0.9, "n/sixes": 30000, "q_gap/notrump": 0.0,
           "n/notrump": 3}
    val |= {f"n/depth{k}": n for k, n in enumerate(counts)}
    val |= {f"q_gap/depth{k}": 0.0 if k in (1, 6) else 1.0 for k, n in enumerate(counts) if n}
    result = EvaluateResult(checkpoint="x.ckpt", val=val, test={})
    fig = evaluation.gap_figure(result, pred)
    ax_decl, ax_depth = fig.axes
    depth_notes = [t.get_text() for t in ax_depth.texts]
    assert [t.get_text() for t in ax_depth.get_xticklabels()] == [str(k) for k in range(7)]  # depth 0 shown
    assert depth_notes[0] == "no\nstates" and depth_notes[1] == "n=5\ntoo few" and depth_notes[2] == "n=273"
    assert depth_notes[-1] == "n=89\ntoo few"
    thin = [p for p in ax_depth.patches if p.get_hatch()]
    assert len(thin) == 2 and len(ax_depth.patches) == 6  # depths 1 and 6 hatched; depth 0 has no bar
    assert [t.get_text() for t in ax_decl.texts] == ["n=30,000", "n=3\ntoo few"]
    assert breakdown.FEW_NOTE in fig.texts[0].get_text()


def test_blunders_are_the_costliest_mistakes_drawn_as_positions(data) -> None:
    pred = evaluation.predict_subset(data["checkpoint"], data["dataset"], "test", limit=10_000)
    rows = evaluation.blunders(pred, 3)
    gaps = pred.gaps
    assert [gaps[j] for j in rows] == sorted(gaps[gaps > 0], reverse=True)[:len(rows)]
    html = evaluation.blunders_html(pred, 3)
    assert html.count('class="forge-blunder"') == len(rows)
    for rank, j in enumerate(rows, 1):
        assert f"blunder {rank}: loses {int(gaps[j])} point" in html
        board = positions.decode_sample(pred.arrays, j)
        assert board.regret(int(pred.preds[j])) == gaps[j]
        assert pred.probs(j)[board.legal].sum() == pytest.approx(1.0, abs=1e-6)


def test_comparison_says_which_way_each_metric_moved() -> None:
    from forge.flywheel.records import HistoryEntry

    def entry(i: int, gap: float, acc: float, lost: float) -> HistoryEntry:
        return HistoryEntry(iteration=i, seeds=[i], seed_range=[i, i + 1], total_seeds=i,
                            val={"q_gap": gap, "accuracy": acc}, playout={"playout_points_lost": lost})

    result = EvaluateResult(checkpoint="model.ckpt", val={"q_gap": 0.5, "accuracy": 0.8}, test={},
                            playout={"playout_points_lost": 12.0})
    frame = evaluation.comparison_frame(result, entry(2, 0.6, 0.9, 10.0), entry(1, 0.4, 0.7, 12.0))
    rows = {r["metric"]: r for r in frame.iter_rows(named=True)}
    assert rows["val Q-gap"]["vs previous"].startswith("▼") and rows["val Q-gap"]["vs previous"].endswith("better")
    assert rows["val Q-gap"]["vs best"].startswith("▲") and rows["val Q-gap"]["vs best"].endswith("worse")
    assert rows["val accuracy"]["vs previous"].startswith("▼") and rows["val accuracy"]["vs previous"].endswith("worse")
    assert rows["val accuracy"]["vs best"].endswith("better")
    assert rows["play-out lost"]["vs previous"].endswith("worse")
    assert rows["play-out lost"]["vs best"] == "= same"
    # every metric carries its unit and a one-line meaning
    assert rows["val Q-gap"]["unit"] == "points / move" and rows["play-out lost"]["unit"] == "points / hand"
    assert rows["val accuracy"]["unit"] == "share of states" and all(r["meaning"] for r in rows.values())
    html = evaluation.comparison_html(result, None, None)
    table = html.split("</table>")[0]
    assert "previous: none yet" in html and "worse</td>" not in table and "better</td>" not in table
    html = evaluation.comparison_html(result, entry(2, 0.6, 0.9, 10.0), entry(1, 0.4, 0.7, 12.0), best_now=3,
                                      iteration=3)
    assert "the best iteration before this one by val Q-gap, iteration 1" in html
    assert "recorded so far: 3 (this one)" in html


# ---------------------------------------------------------------------------------------------- play-outs

def test_oracle_play_out_loses_nothing_and_its_tricks_add_up(data) -> None:
    result, recorder = playouts.record_playouts(oracle_policy, data["paths"]["test"])
    for d in result.deals:
        plays = playouts.plays(recorder.moves[d.seed, d.decl_id])
        assert len(plays) == 4 * HAND and all(p.regret == 0 for p in plays)
        assert sum(p.points for p in plays) == d.outcome == d.optimal_value
        assert [p.trick for p in plays] == [t for t in range(1, HAND + 1) for _ in range(4)]


def _worst_move(positions_: list[Position]) -> list[int]:
    """A policy that always plays its worst legal move (by the oracle's Q)."""
    out = []
    for pos in positions_:
        board = positions.board_at(pos.solution, pos.state)
        out.append(min(board.legal, key=lambda i: (board.mover_q()[i], i)))
    return out


def test_a_losing_play_out_marks_each_mistake_with_its_cost(data) -> None:
    result, recorder = playouts.record_playouts(_worst_move, data["paths"]["val"])
    worst = playouts.worst_deal(result)
    assert worst.points_lost == max(d.points_lost for d in result.deals) > 0
    plays = playouts.plays(recorder.moves[worst.seed, worst.decl_id])
    frame = playouts.plays_frame(plays)
    assert frame["lost"].sum() == worst.points_lost
    html = playouts.deal_html(result, recorder, (worst.seed, worst.decl_id))
    assert 'class="forge-playout"' in html and len(re.findall(r"P\d ✗ −\d+", html)) == sum(p.regret > 0 for p in plays)
    assert html.count('class="forge-trick"') == HAND
    assert playouts.deal_choices(result)[0][1] == (worst.seed, worst.decl_id)


def test_seat_policy_puts_the_oracle_on_one_team(data) -> None:
    result, _ = playouts.record_playouts(playouts.seat_policy(_worst_move, oracle_policy), data["paths"]["val"])
    assert all(d.lost[1] == 0 for d in result.deals) and any(d.lost[0] > 0 for d in result.deals)


# ---------------------------------------------------------------------------------------------- 05 explore

def test_watch_and_query_a_golden_deal(data) -> None:
    shard = data["paths"]["test"][0]
    html = explore.watch_html(data["checkpoint"], shard, "oracle (team 0) vs model (team 1)")
    assert 'class="forge-playout"' in html and "oracle (team 0) vs model (team 1)" in html
    assert re.search(r"points lost: team 0 0,", html)  # the oracle's seats never lose a point
    with pytest.raises(InputError, match="seats"):
        explore.watch_html(data["checkpoint"], shard, "everyone")

    rows_sol = data["sols"][TEST[0]]
    first = sorted(positions.board_at(rows_sol, initial_state(HAND)).legal)[0]
    query = explore.query_html(shard, f"{first}", data["checkpoint"])
    assert 'class="forge-query"' in query and "model plays" in query and "P1 (team 1) to move" in query
    # the hint names the legal local indices and a sequence that works in this very deal
    example = explore.example_moves(ShardRows(shard))
    assert len(example.split()) == 3 and f"<code>{example}</code>" in query
    assert "after moves" in explore.query_html(shard, example)
    with pytest.raises(InputError, match="not legal"):
        explore.query_html(shard, f"{HAND}")  # P0 holds local indices 0..HAND-1 only
    hexed = explore.state_after(ShardRows(shard), hex(initial_state(HAND)))
    assert hexed == initial_state(HAND)


def test_first_puts_the_wanted_choice_first_or_refuses() -> None:
    options = [("iteration 3 (val Q-gap 0.1)", Path("c3")), ("iteration 1", Path("c1")), ("iteration 10", Path("x"))]
    assert explore.first(options, 1)[0][1] == Path("c1")
    assert explore.first(options, "x")[0][1] == Path("x")
    assert explore.first(options) == options
    with pytest.raises(InputError, match="not among"):
        explore.first(options, 2)


# ---------------------------------------------------------------------------------------------- shards

def test_store_analysis_matches_a_direct_count(data) -> None:
    paths = data["paths"]["val"] + data["paths"]["test"]
    frame = shards.decision_frame(paths)
    for (seed, decl) in VAL + TEST:
        sol = data["sols"][seed, decl]
        q = sol.q.T.astype(np.int64)
        legal = (q != ILLEGAL_Q).sum(1)
        moving = legal > 0
        row = frame.filter(pl.col("declaration") == DECL_NAMES[decl]).row(0, named=True)
        assert row["states with a move"] == moving.sum() and row["shards"] == 1
        assert row["forced share"] == pytest.approx((legal[moving] == 1).mean())
        qm = np.where(q != ILLEGAL_Q, q, np.nan)[moving]
        assert row["choice matters share"] == pytest.approx((np.nanmax(qm, 1) > np.nanmin(qm, 1)).mean())
        assert row["mean V"] == pytest.approx(sol.V[moving].mean())
    depth = shards.depth_decl_frame(paths)
    assert depth["states"].sum() == sum(len(data["sols"][j]) for j in VAL + TEST)


# ---------------------------------------------------------------------------------------------- display

def test_headless_choices_render_their_defaults_once(monkeypatch, capsys) -> None:
    monkeypatch.setenv("FORGE_HEADLESS", "1")
    calls = []

    def render(deal: int, moves: str) -> str:
        calls.append((deal, moves))
        return "<b>drawn</b>"

    display.choose(render, deal=[("first", 1), ("second", 2)], moves="0 1")
    assert calls == [(1, "0 1")]
    with pytest.raises(ValueError, match="nothing to choose"):
        display.choose(render, deal=[], moves="")


def test_results_keep_small_numbers_readable() -> None:
    class Result(StageResult):
        lr: float
        val: dict[str, float]
        n: int

    frame = results.result_frame(Result(lr=3e-05, val={"q_gap": 0.123456}, inputs={"x": 1}, n=7))
    values = {field: value for field, value, _ in frame.iter_rows()}
    assert values == {"lr": "3e-05", "val.q_gap": "0.1235", "n": "7"}
    assert {field: unit for field, _, unit in frame.iter_rows()} == {"lr": "", "val.q_gap": "points / move", "n": ""}
    assert "3e-05" in display.frame_html(pl.DataFrame({"lr": [3e-05]}))


def test_the_evaluated_worst_play_out_is_replayed_alone(data) -> None:
    from forge.ml.evaluate import evaluate

    metrics = evaluate(data["checkpoint"], data["dataset"], "test", playout_deals=len(TEST))
    options = playouts.evaluated_deals(EvaluateResult(checkpoint="model.ckpt", val={}, test={}, playout=metrics))
    assert sorted(key for _, key in options) == sorted(TEST)  # every evaluated deal, by its recorded loss
    losses = [float(label.split(": ")[1].split()[0]) for label, _ in options]
    assert losses == sorted(losses, reverse=True)
    assert sum(losses) / len(losses) == pytest.approx(metrics["playout_points_lost"])  # the mean it reports
    worst = options[0][1]
    html = playouts.replayed_deal_html(data["checkpoint"], data["dataset"], worst)
    assert f"seed {worst[0]}" in html and "forge-trick" in html and f"{losses[0]:.0f}" in html
