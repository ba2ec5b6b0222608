"""The stage registry: one module per stage, typed results, configuration views that cannot drift from
the fingerprint, and results recorded by earlier code that still load and still fingerprint the same."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from forge.flywheel import stages
from forge.flywheel.config import config_from_dict, load_preset
from forge.flywheel.paths import NOTEBOOKS, Workspace
from forge.flywheel.stages import REGISTRY, evaluate, generate, running, tokenize, train
from forge.flywheel.stages.base import ConfigView
from forge.flywheel.stages.fingerprint import digest, stage_inputs, viewed
from forge.flywheel.stages.fitting import TrainSettings
from forge.flywheel.state import load_state, new_state, save_state
from forge.ml import training

#: Results written by forge at commit ae99f51, before the registry (``runs/iter-0002/results/`` of a tiny
#: workspace after two iterations, and ``runs/iter-0000/results/train.json`` of a pretraining one),
#: with the tiny workspace's state.yaml.
RECORDED = Path(__file__).parent / "fixtures" / "results-ae99f51"


def test_the_registry_holds_each_stage_after_the_one_it_reads() -> None:
    assert list(REGISTRY) == ["generate", "tokenize", "train", "evaluate"]
    order = list(REGISTRY.values())
    assert [s.upstream for s in order] == [None, *order[:-1]]
    for stage in order:
        notebook = json.loads((NOTEBOOKS / stage.notebook).read_text())
        code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
        assert any(f"stages.{stage.name}.run(ctx" in c for c in code), f"{stage.notebook} runs its stage"


@pytest.mark.parametrize("where, stage", [("iter-0002", s) for s in REGISTRY] + [("pretrain-iter-0000", "train")])
def test_a_result_recorded_before_the_registry_loads_typed_and_keeps_its_fingerprint(where: str, stage: str) -> None:
    text = (RECORDED / where / f"{stage}.json").read_text()
    result = REGISTRY[stage].result.from_json(text)
    assert json.loads(result.to_json()) == json.loads(text)  # nothing lost, nothing added
    assert digest(result.inputs) == result.fingerprint  # the same digest of the same inputs
    # what the stage's configuration view puts into the fingerprint is what the old code put there
    config = load_state(RECORDED).config  # a version-2 state.yaml of that code
    assert REGISTRY[stage].view(config).fingerprinted() == result.inputs["config"], (
        f"the {stage} stage's fingerprinted configuration changed: every existing workspace reruns the stage; "
        "if that is meant, say so in the change and refresh this fixture")


def test_recorded_results_read_as_types() -> None:
    here = RECORDED / "iter-0002"
    made = generate.GenerateResult.from_json((here / "generate.json").read_text())
    assert made.golden_written + made.golden_kept == 40 and made.train_written + made.train_kept == 8
    assert {s.split for s in made.shards} == {"golden", "train"} and len(made.outputs.shards) == 48
    tokens = tokenize.TokenizeResult.from_json((here / "tokenize.json").read_text())
    assert set(tokens.outputs.splits) == {"train", "val", "test"} and tokens.train_samples == 8 * 64
    trained = train.TrainResult.from_json((here / "train.json").read_text())
    assert trained.kept_epoch in (1, 2) and trained.started_from == "iteration 1" and trained.provenance is not None
    assert trained.outputs.checkpoint == trained.checkpoint == "runs/iter-0002/model.ckpt"
    assert (trained.ran_by, trained.ran_in) == (None, None)  # recorded before results said who ran them
    scored = evaluate.EvaluateResult.from_json((here / "evaluate.json").read_text())
    assert scored.metric("val", "q_gap") == scored.val["q_gap"] and scored.metric("val", "nope") is None
    assert scored.best_iteration == 1 and scored.metric("playout", "playout_points_lost") is not None
    pre = train.TrainResult.from_json((RECORDED / "pretrain-iter-0000" / "train.json").read_text())
    assert pre.pretrain is not None and pre.pretrain.chunks == 2 and len(pre.metrics_csvs or []) == 2
    # a result from another version, with a key this one does not know, still loads
    assert train.TrainResult.from_json(json.dumps({**json.loads((here / "train.json").read_text()), "new": 1}))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    save_state(ws, new_state(load_preset("tiny"), "stage-views"))
    return ws


def test_a_stage_reading_a_field_it_does_not_declare_fails_before_any_work(workspace: Path) -> None:
    ctx = stages.context(workspace, progress=False, no_wandb=True)

    def work(ctx, cfg, progress, memo, **options):
        if cfg.data.samples_per_shard > 0:  # a new use of a field GenerateConfig does not declare
            return generate.work(ctx, cfg, progress, memo, **options)
        raise AssertionError("unreachable")

    careless = dataclasses.replace(generate.STAGE, work=work)
    with pytest.raises(AttributeError, match=r"the generate stage reads config\.data\.samples_per_shard without "
                                             r"declaring it: add 'samples_per_shard' to GenerateConfig\.reads"):
        running.run(careless, ctx)
    assert careless.read(ctx.ws, ctx.iteration) is None and not list(workspace.rglob("*.parquet"))
    # the context's own helpers read through the view as well: evaluate declares no replay window
    with pytest.raises(AttributeError, match=r"the evaluate stage reads config\.data\.replay_iters"):
        viewed(ctx, evaluate.STAGE).replay_seeds()


def test_a_declared_field_enters_the_fingerprint_and_an_untracked_one_does_not(workspace: Path) -> None:
    class Declared(generate.GenerateConfig):
        reads = (*generate.GenerateConfig.reads, "samples_per_shard")

    declared = dataclasses.replace(generate.STAGE, config=Declared)
    ctx = stages.context(workspace, progress=False)
    inputs = stage_inputs(ctx, declared)
    assert inputs["config"]["samples_per_shard"] == 64 and "executor" not in inputs["config"]
    more = dataclasses.replace(ctx, config=config_from_dict({**ctx.config.to_dict(), "samples_per_shard": 65}))
    ray = dataclasses.replace(ctx, config=config_from_dict({**ctx.config.to_dict(), "executor": "ray"}))
    assert digest(stage_inputs(more, declared)) != digest(inputs)
    assert digest(stage_inputs(ray, declared)) == digest(inputs)  # where deals are solved changes no shard


def test_a_view_must_name_config_sections_and_fields_that_exist() -> None:
    with pytest.raises(TypeError, match="Typo reads 'sample_per_shard', which is no configuration section or field"):
        type("Typo", (ConfigView,), {"reads": ("sample_per_shard",)})
    with pytest.raises(TypeError, match="Marked marks 'lr_horizn', which is no configuration field"):
        type("Marked", (ConfigView,), {"reads": ("training",), "added": {"lr_horizn": "typo"}})


def test_a_view_reads_like_the_config_and_hands_over_only_whole_sections(workspace: Path) -> None:
    config = stages.context(workspace, progress=False).config
    view = train.STAGE.view(config)
    assert view.training is config.training and view.hardware is config.hardware  # every field declared
    assert view.data.hand_size == config.data.hand_size  # declared (untracked) from a section read in part
    with pytest.raises(AttributeError, match=r"reads config\.data\.replay_iters without declaring it"):
        _ = view.data.replay_iters
    assert "hand_size" not in view.fingerprinted() and view.fingerprinted()["lr"] == config.training.lr
    # an added field enters the fingerprint only away from its default
    assert "q_weight" in view.fingerprinted()  # tiny trains a Q head (q_weight 1.0; default 0.0)
    assert "lr_horizon" not in view.fingerprinted()  # tiny has none: the default


def test_train_settings_are_trains_own_arguments_and_survive_the_trip_to_a_child(workspace: Path) -> None:
    ctx = stages.context(workspace, progress=False)
    cfg = train.STAGE.view(ctx.config)
    settings = train.settings(viewed(ctx, train.STAGE), cfg, data=workspace / "data", run_dir=workspace / "runs",
                              resume=None, from_scratch=True)
    assert TrainSettings.from_json(settings.to_json()) == settings
    parameters = inspect.signature(training.train).parameters
    assert set(settings.arguments()) <= set(parameters) and next(iter(parameters)) == "data_dir"
    # the configuration's training section as it is, with the iteration's own seed
    assert settings.training == ctx.config.training.model_copy(
        update={"train_seed": ctx.config.training.train_seed + ctx.iteration})
    assert settings.hardware is ctx.config.hardware
    two = ctx.config.hardware.model_copy(update={"devices": 2})
    assert not settings.multi_process and dataclasses.replace(settings, hardware=two).multi_process


def test_the_kept_epoch_is_the_first_lowest_one() -> None:
    assert training.best_epoch({0: 0.5, 1: 0.4, 2: 0.4, 3: 0.45}) == 1
    assert training.best_epoch({}) is None


def test_evaluate_opens_the_last_finished_iteration_while_nothing_is_trained_for_the_next() -> None:
    state = load_state(RECORDED)
    assert state.current is None and [h.iteration for h in state.history] == [1, 2]
    ws = Workspace.at(RECORDED)
    assert evaluate.default_iteration(ws, state) == 2  # no runs/iter-0003/results/train.json in the fixture
    assert stages.context(RECORDED, stage="evaluate").iteration == 2
    assert stages.context(RECORDED).iteration == 3


def test_stage_code_reaches_the_configuration_only_through_its_view() -> None:
    """The whole configuration is also in the state (and in each history entry): a stage module that read it
    there would bypass its view, so none does."""
    modules = sorted((Path(stages.__file__).parent).glob("*.py"))
    assert {m.stem for m in modules} >= set(REGISTRY)
    hits = [(m.name, line.strip()) for m in modules for line in m.read_text().splitlines()
            if ".state.config" in line or "config_of(" in line or ".config.to_dict(" in line]
    assert hits == []
