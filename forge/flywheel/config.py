"""Flywheel configuration: every value that shapes an iteration, in sections, loaded from a preset.

The sections are typed, validated models, each field declared once: ``data`` (the deals and how they
are sampled), ``evaluation`` (the golden sets), ``training`` and ``hardware`` (what
:func:`forge.ml.training.train` takes, declared in :mod:`forge.ml.settings`) and ``loop`` (when to stop,
what to keep on disk). A value out of range is refused on load with one line naming it
(``config.training.lr must be at most 1e+12, got 1e+300``).

Presets live in ``templates/presets/<name>.yaml`` (the single source of their values); the chosen
configuration is copied into ``state.yaml`` at ``init`` so a workspace keeps running with the values it
started with even if a preset file changes later. Field names are unique across sections, so a field is
also known by its name alone: stage fingerprints, the history's records and ``--set``-style overrides
use the flat names, and a ``state.yaml`` written before the sections existed (flat) still loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from forge.errors import InputError
from forge.ml.settings import MAX_SEED, SELECTIONS, HardwareSection, Section, TrainingSection
from forge.oracle.rules import MAX_HAND, N_DECLS
from forge.validation import first_problem

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
PRESETS = TEMPLATES / "presets"
KEEP_SHARDS = ("golden", "all")
RETENTIONS = ("prune", "keep")
#: A preset's block of the settings it takes on a CUDA GPU (load_preset(gpu=True)).
GPU_BLOCK = "gpu"
#: Which of a preset's recipes init takes: its GPU recipe when a CUDA GPU is present, or the one named.
RECIPES = ("auto", "cpu", "gpu")
#: The most new training deals one iteration takes (and one ``--seed-range``).
MAX_SEEDS_PER_ITER = 100_000

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Decl = Annotated[int, Field(ge=0, le=N_DECLS - 1)]


class ConfigError(InputError):
    """A configuration value is missing or invalid; the message names the field."""


class DataSection(Section):
    """The deals an iteration solves and how their states are sampled into training data."""

    hand_size: int = Field(ge=1, le=MAX_HAND)  # dominoes per hand (7 = full deals; fewer = reduced games)
    seeds_per_iter: int = Field(ge=1, le=MAX_SEEDS_PER_ITER)  # new training deals per iteration
    samples_per_shard: int = Field(ge=1, le=1_000_000)  # training states sampled from each shard
    global_seed: Seed  # sampling seed of the tokenizer
    replay_iters: int = Field(ge=0, le=100_000)  # earlier iterations whose states are trained on again
    # Which states training samples: "all" (the spec's rule), "decisions" (only states where a legal move can
    # lose points: most states have one legal move or only optimal ones, and teach the policy nothing) or
    # "mixed" (decisions, and a quarter of the samples among the other states, which the value and Q heads
    # need). Golden sets always hold every state.
    train_states: Literal[SELECTIONS] = "all"  # type: ignore[valid-type]
    # "golden" deletes an iteration's training shards once it is recorded (tokens are kept, and any shard is
    # regenerated from its seed when needed again, e.g. for replay); "all" keeps every shard.
    keep_shards: Literal[KEEP_SHARDS] = "golden"  # type: ignore[valid-type]


class EvaluationSection(Section):
    """The fixed golden sets every iteration is scored on, and the play-outs."""

    golden_val_seeds: list[Seed] = Field(min_length=1)
    golden_test_seeds: list[Seed] = Field(min_length=1)
    golden_decls: list[Decl] = Field(min_length=1)
    golden_samples_per_shard: int = Field(ge=1, le=1_000_000)
    playout_deals: int = Field(ge=0, le=100_000)  # golden test deals played out by the model (0 = skip)

    @model_validator(mode="after")
    def _apart(self) -> Self:
        if set(self.golden_val_seeds) & set(self.golden_test_seeds):
            raise ValueError("golden_val_seeds and golden_test_seeds overlap")
        return self

    @property
    def golden_seeds(self) -> set[int]:
        return set(self.golden_val_seeds) | set(self.golden_test_seeds)


class LoopSection(Section):
    """When the loop stops, what it does beside training, and what it keeps on disk."""

    stop_iterations: int | None = Field(None, ge=0)  # done after this many iterations
    stop_total_seeds: int | None = Field(None, ge=0, le=MAX_SEED)  # done once this many training seeds were used
    stop_target_qgap: float | None = Field(None, ge=0)  # done once val Q-gap <= this
    # Solve the next iteration's deals while this one trains (on cluster workers, or spare local cores).
    prefetch_next: bool = False
    # Disk (forge.flywheel.retention, docs/disk.md): with retention "prune", once an iteration is recorded every
    # older one but the newest retain_last and (retain_best) the best keeps only its record, stage results,
    # training curve and gzip-compressed notebooks and logs: its checkpoints, HTML pages and W&B debug files
    # go, and the token-cache entries of its deals once it leaves the replay window. "keep": nothing is pruned.
    retention: Literal[RETENTIONS] = "prune"  # type: ignore[valid-type]
    retain_last: int = Field(3, ge=1, le=100_000)
    retain_best: bool = True
    retain_images: int = Field(10, ge=0, le=100_000)  # of the pruned iterations, every Nth keeps its plots (0: none)
    retain_logs: int = Field(10, ge=1, le=100_000)  # loop and kernel logs kept, newest first


class Config(Section):
    """The whole configuration. The training section's defaults are :func:`forge.ml.training.train`'s;
    the flywheel names its model."""

    preset: str
    data: DataSection
    evaluation: EvaluationSection
    training: TrainingSection
    hardware: HardwareSection = HardwareSection()
    loop: LoopSection = LoopSection()

    def flat(self) -> dict[str, Any]:
        """Every field by its name alone (fingerprints, the history's records, W&B)."""
        out: dict[str, Any] = {"preset": self.preset}
        for name in SECTIONS:
            out.update(getattr(self, name).model_dump())
        return out

    def to_dict(self) -> dict[str, Any]:
        """The sectioned form, as ``state.yaml`` and the presets hold it."""
        return self.model_dump()

    def get(self, name: str) -> Any:
        """A field by its name alone."""
        return getattr(getattr(self, FIELD_SECTION[name]), name)

    def updated(self, changes: Mapping[str, Any]) -> Config:
        """This configuration with ``changes`` (by flat name or ``section.field``), validated again."""
        return config_from_dict({**self.to_dict(), **changes})


#: The sections, by name, and which section each field belongs to (field names are unique across sections).
SECTIONS: dict[str, type[Section]] = {name: f.annotation for name, f in Config.model_fields.items()
                                      if isinstance(f.annotation, type) and issubclass(f.annotation, Section)}
FIELD_SECTION: dict[str, str] = {field: section for section, model in SECTIONS.items() for field in model.model_fields}
assert len(FIELD_SECTION) == sum(len(m.model_fields) for m in SECTIONS.values()), "a field name in two sections"


def field_default(name: str) -> Any:
    """A field's default (what a configuration written before the field existed ran with)."""
    return SECTIONS[FIELD_SECTION[name]].model_fields[name].get_default(call_default_factory=True)


def _sectioned(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every field under its section: flat names (a state.yaml written before the sections,
    an override) and ``section.field`` names are moved in; a section given whole is copied."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            out[key] = {**out.get(key, {}), **value}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            continue
        section, _, name = str(key).rpartition(".")
        if not section and name in FIELD_SECTION:
            section = FIELD_SECTION[name]
        if section in SECTIONS and name in SECTIONS[section].model_fields:
            out.setdefault(section, {})
            if not isinstance(out[section], dict):
                raise ConfigError(f"config.{section} must be a mapping, got {out[section]!r}")
            out[section][name] = value
        else:
            out[key] = value  # preset, or an unknown name that validation names
    return out


def config_from_dict(data: Any) -> Config:
    """Validate a mapping (sectioned, or flat as written before the sections) into a Config; ConfigError
    names the first bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
    try:
        config = Config.model_validate(_sectioned(data))
    except ValidationError as err:
        raise ConfigError(first_problem(err, "config")) from None
    if config.training.model is None:  # train() may take the checkpoint's; the flywheel names its model
        raise ConfigError("config.training.model is missing")
    return config


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def _read_preset(name: str) -> dict[str, Any]:
    path = PRESETS / f"{name}.yaml"
    if name not in preset_names():  # a name from the folder, never a path (``../x``, ``/tmp/y``)
        raise ConfigError(f"unknown preset {name!r} (choose from: {', '.join(preset_names())})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name!r} is not a mapping of sections")
    return data


def gpu_recipe(name: str) -> dict[str, Any]:
    """The preset's ``gpu`` block: the settings it takes when training runs on a CUDA GPU (by
    ``section.field`` or flat name), or {} when it has none."""
    block = _read_preset(name).get(GPU_BLOCK) or {}
    if not isinstance(block, Mapping):
        raise ConfigError(f"preset {name!r}: {GPU_BLOCK} must be a mapping of settings")
    return dict(block)


def takes_gpu_recipe(recipe: str, name: str, cuda_present: Callable[[], bool]) -> bool:
    """Whether ``recipe`` (:data:`RECIPES`) takes preset ``name``'s GPU recipe: "gpu" asks for it (a
    preset without one is refused), "auto" takes it when ``cuda_present()`` (asked only then: it
    starts torch, which configuration never imports), "cpu" never."""
    has_recipe = bool(gpu_recipe(name))
    if recipe == "gpu" and not has_recipe:
        raise ConfigError(f"preset {name} has no GPU recipe (no {GPU_BLOCK} block in templates/presets/{name}.yaml)")
    if recipe != "auto" or not has_recipe:
        return recipe == "gpu"
    return cuda_present()


def load_preset(name: str, gpu: bool = False, **overrides: Any) -> Config:
    """The named preset from templates/presets, with ``overrides`` (by field name) applied; ``gpu``
    applies its GPU recipe first (its ``gpu`` block, :func:`gpu_recipe`), so a workspace started on a
    GPU machine records the settings it runs with, not the CPU's."""
    data = _read_preset(name)
    data.pop(GPU_BLOCK, None)
    recipe = gpu_recipe(name) if gpu else {}
    return config_from_dict({**data, **recipe, **{k: v for k, v in overrides.items() if v is not None},
                             "preset": name})
