"""The configuration in sections: each setting declared once, one validation, flat files of before still
loading, and training taking its section as it is."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from pathlib import Path

import pytest
import yaml

from forge.flywheel.config import FIELD_SECTION, SECTIONS, ConfigError, config_from_dict, load_preset
from forge.flywheel.stages import train as train_stage
from forge.flywheel.stages.fitting import TrainSettings
from forge.flywheel.state import load_state, save_state
from forge.ml import training
from forge.ml.settings import HardwareSection, TrainingSection

FLAT = Path(__file__).parent / "fixtures" / "state-v3-flat"
#: Configuration fields newer than that file, and the values it loads with.
ADDED_SINCE = {"policy_states": "all"}


def test_a_flat_state_written_before_the_sections_loads_every_value_and_is_written_back_in_sections(
        tmp_path: Path) -> None:
    shutil.copy(FLAT / "state.yaml", tmp_path / "state.yaml")
    flat = yaml.safe_load((FLAT / "state.yaml").read_text())["config"]
    assert "lr" in flat and "training" not in flat  # recorded flat
    state = load_state(tmp_path)
    assert {k: v for k, v in state.config.flat().items() if k in flat} == flat
    # every field was in the file but those added since, which take their defaults (what such a run trained with)
    assert set(state.config.flat()) - set(flat) == set(ADDED_SINCE)
    assert {k: state.config.get(k) for k in ADDED_SINCE} == ADDED_SINCE
    save_state(tmp_path, state)
    written = yaml.safe_load((tmp_path / "state.yaml").read_text())["config"]
    assert set(written) == {"preset", *SECTIONS} and written["training"]["lr"] == flat["lr"]
    assert load_state(tmp_path).config == state.config


def test_every_field_has_one_section_and_is_known_by_its_name_alone() -> None:
    cfg = load_preset("quick")
    assert cfg.get("lr") == cfg.training.lr and cfg.get("hand_size") == cfg.data.hand_size
    assert sorted(cfg.flat()) == sorted(["preset", *FIELD_SECTION])
    # overrides by name or by place, validated again
    assert cfg.updated({"lr": 1e-3}).training.lr == cfg.updated({"training.lr": 1e-3}).training.lr == 1e-3
    assert cfg.updated({"lr": 1e-3}).data == cfg.data


@pytest.mark.parametrize("change, says", [
    ({"training.lr": 0}, "config.training.lr must be greater than 0, got 0"),
    ({"hand_size": 8}, "config.data.hand_size must be at most 7, got 8"),
    ({"epochs": True}, "config.training.epochs must be an integer, got True"),
    ({"train_samples": 10, "train_seconds": 60}, "config.training: train_samples and train_seconds are both set"),
    ({"golden_test_seeds": [900]}, "config.evaluation: golden_val_seeds and golden_test_seeds overlap"),
    ({"golden_decls": []}, "config.evaluation.golden_decls must not be empty"),
    ({"retention": "forever"}, "config.loop.retention must be one of prune, keep, got 'forever'"),
    ({"executor": "k8s"}, "config.hardware.executor must be one of local, ray, got 'k8s'"),
    ({"training.lrr": 1}, "config.training.lrr is not a known field"),
    ({"colour": "red"}, "config.colour is not a known field"),
    ({"training": 3}, "config.training must be a mapping"),
])
def test_a_bad_value_is_refused_in_one_line_naming_its_place(change: dict, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_preset("tiny").updated(change)
    assert str(err.value).startswith(says) and "\n" not in str(err.value)


def test_a_training_setting_is_declared_once_and_reaches_train_as_it_is() -> None:
    """Adding a training setting is a field of TrainingSection and the line of train() that reads it: no
    argument of train(), field of TrainSettings or stage view restates it."""
    names = set(TrainingSection.model_fields) | set(HardwareSection.model_fields)
    assert not names & set(inspect.signature(training.train).parameters)
    assert not names & {f.name for f in dataclasses.fields(TrainSettings)}
    # the train stage reads both sections whole (each field decides when it reruns), naming no field itself
    assert train_stage.TrainConfig.reads == ("training", "hardware")
    view = train_stage.STAGE.view(load_preset("tiny"))
    assert view.training is not None and set(view.fingerprinted()) >= set(TrainingSection.model_fields) - set(
        train_stage.TrainConfig.added)


def test_a_config_without_a_model_is_refused_though_train_alone_may_take_the_checkpoints() -> None:
    data = load_preset("tiny").to_dict()
    del data["training"]["model"]
    with pytest.raises(ConfigError, match=r"^config\.training\.model is missing$"):
        config_from_dict(data)
    assert TrainingSection().model is None  # train(): the resumed checkpoint's architecture, else large


def test_a_presets_gpu_recipe_replaces_its_training_and_hardware_only_when_asked() -> None:
    from forge.flywheel.config import gpu_recipe, load_preset, preset_names
    from forge.ml.model import DominoTransformer, count_parameters, preset

    cpu, gpu = load_preset("standard"), load_preset("standard", gpu=True)
    assert (cpu.training.model, cpu.hardware.precision, cpu.hardware.compile) == ("large", "auto", False)
    assert (gpu.training.model, gpu.hardware.precision, gpu.hardware.compile) == ("xl", "bf16-mixed", True)
    assert gpu.hardware.accelerator == "gpu" and gpu.training.batch_size > cpu.training.batch_size
    # the rest is the preset's: the golden sets (what every evaluation is compared on) do not change
    assert gpu.evaluation == cpu.evaluation and gpu.data.samples_per_shard == cpu.data.samples_per_shard
    # the reference's size class (its catalog's 3.3M), not a name for the large model
    assert 3_000_000 < count_parameters(DominoTransformer(preset("xl"))) < 3_500_000
    # an explicit override still wins over the recipe
    assert load_preset("standard", gpu=True, model="large").training.model == "large"
    for name in preset_names():  # every recipe a preset holds is a valid configuration
        assert load_preset(name, gpu=True).preset == name
        assert "gpu" not in load_preset(name).to_dict()  # the block is not a setting of its own
    assert gpu_recipe("quick") == {} and load_preset("quick", gpu=True) == load_preset("quick")
