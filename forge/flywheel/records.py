"""The typed records inside ``state.yaml``: the iteration in progress and each finished one.

They are pydantic dataclasses in strict mode, so a record is checked field by field whenever it
is built, loaded or changed: a wrong type, an unknown key or a non-finite metric is an error that
names the field (``history[2].val.q_gap``), never a value that some later reader trips over.
Metrics are finite by construction: a diverged model's NaN can never enter the history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from forge.flywheel.config import Config, ConfigError, config_from_dict
from forge.ml.catalog import HIGHER_IS_BETTER as HIGHER_IS_BETTER
from forge.ml.catalog import PRIMARY  # re-exported: the views import them from here
from forge.ml.catalog import TRACKED as TRACKED

#: The stage names state.yaml may hold (its schema): the stage registry, forge.flywheel.stages.REGISTRY,
#: checks on import that it holds these stages in this order.
StageName = Literal["generate", "tokenize", "train", "evaluate"]
_STAGE_NAMES: tuple[str, ...] = get_args(StageName)
#: The metric that decides "best" (lower is better). The metrics whose regressions against the best
#: iteration are flagged, and those better higher, are the catalogue's (forge.ml.catalog).
PRIMARY_METRIC = PRIMARY


#: The configuration fields that decide the golden sets' content (shards and their tokenization).
GOLDEN_FIELDS = ("hand_size", "golden_val_seeds", "golden_test_seeds", "golden_decls", "golden_samples_per_shard",
                 "global_seed")
#: Where a history entry records the key of the golden sets it was scored on (its comparison series).
GOLDEN = "golden"


def golden_key(config: Config | Any) -> str:
    """Identity of the golden sets a configuration (or a stage's view holding GOLDEN_FIELDS) makes (equal
    keys: comparable scores)."""
    fields = {f: config.get(f) for f in GOLDEN_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class MetricSource(Protocol):
    """Anything with metrics by split: a history entry, an evaluate stage's result."""

    def metric(self, split: str, name: str) -> float | None: ...


def better(name: str, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b`` for the metric ``name``."""
    return a > b if name in HIGHER_IS_BETTER else a < b


def best_of(entries: Any, split: str, name: str) -> Any:
    """The entry with the best ``split``/``name`` (the first, on a tie); None if none has it."""
    best = None
    for entry in entries:
        value = entry.metric(split, name)
        if value is not None and (best is None or better(name, value, best.metric(split, name))):
            best = entry
    return best


def metric_label(split: str, name: str) -> str:
    return f"{split}/{name}"
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_assignment=True)

NonNegative = Annotated[int, Field(ge=0)]
#: Metric values: finite numbers (counts such as ``n`` included).
Metrics = dict[str, float]


@dataclass(config=STRICT)
class Attempt:
    """A failed attempt at the current iteration, kept with its executed notebook for review."""

    number: Annotated[int, Field(ge=1)]
    stage: str
    error: str
    at: str
    cell: int | None = None  # the failing cell as the user numbers it (papermill's parameters cell not counted)
    notebook: str | None = None  # archive/iter-NNNN/attempt-K/<stage notebook>.ipynb

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, stage: str) -> str:
        if stage not in _STAGE_NAMES:
            raise ValueError(f"unknown stage (stages: {', '.join(_STAGE_NAMES)}), got {stage!r}")
        return stage


@dataclass(config=STRICT)
class Pretrain:
    """The pretraining phase (iteration 0): a baseline trained at the scratch LR over many deals,
    streamed ``chunk`` deals at a time so that disk use stays bounded."""

    seed_range: Annotated[list[NonNegative], Field(min_length=2, max_length=2)]  # [first, last + 1]
    chunk: Annotated[int, Field(ge=1)]

    @field_validator("seed_range")
    @classmethod
    def _not_empty(cls, rng: list[int]) -> list[int]:
        if rng[1] <= rng[0]:
            raise ValueError(f"pretrain.seed_range must be [first, last + 1] with last >= first, got {rng}")
        return rng


@dataclass(config=STRICT)
class Provenance:
    """Which source a stage notebook ran from, and whether it differs from the committed version."""

    source: str  # notebooks/03_train.ipynb
    source_sha256: str  # of the code cells only
    modified: bool | None = None  # None: no committed version to compare with (not a git checkout)
    diff: str | None = None  # archive file holding the code-cell diff, when modified


def _check_stages(names: list[str]) -> list[str]:
    unknown = [s for s in names if s not in _STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(map(repr, unknown))} "
                         f"(stages: {', '.join(_STAGE_NAMES)}), got {names!r}")
    return names


#: A stage's CPU seconds (``cpu_s``, its attempts summed) and peak resident memory in MB (``peak_rss_mb``,
#: the largest process), measured by the loop (forge.flywheel.usage).
StageUsage = dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]]


@dataclass(config=STRICT)
class Current:
    """The iteration in progress (or interrupted)."""

    iteration: Annotated[int, Field(ge=0)]  # 0: the pretraining phase
    seeds: list[NonNegative]
    seed_range: Annotated[list[NonNegative], Field(min_length=2, max_length=2)]  # [first, last + 1]
    stages_completed: list[str] = Field(default_factory=list)
    stage: str | None = None
    started_at: str | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    usage: dict[str, StageUsage] = Field(default_factory=dict)  # per stage: forge.flywheel.usage
    notebooks: dict[str, str] = Field(default_factory=dict)
    fingerprints: dict[str, str] = Field(default_factory=dict)
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    by_hand: list[str] = Field(default_factory=list)  # stages a person ran in a notebook, not the loop
    # The configuration this iteration runs with, pinned when it starts or resumes: its stages read this,
    # and its history entry records it (an edit of state.yaml's config applies from the next iteration).
    config: Config | None = None
    digests: dict[str, str] = Field(default_factory=dict)  # what the loop vouches for: forge.flywheel.integrity

    @field_validator("config", mode="before")
    @classmethod
    def _valid_config(cls, value: Any) -> Config | None:
        return valid_config(value)

    @field_validator("stages_completed", "by_hand")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        return _check_stages(stages)

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, stage: str | None) -> str | None:
        return stage if stage is None else _check_stages([stage])[0]

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("must name at least one seed")
        return seeds


@dataclass(config=STRICT)
class GoldenPin:
    """The content of the golden val/test sets a workspace's iterations are scored on, pinned when first
    made (:mod:`forge.flywheel.integrity`): each evaluation checks it. Other golden sets (another
    configuration) start a new comparison ``series``."""

    key: str  # forge.flywheel.integrity.golden_key of the configuration that made them
    series: Annotated[int, Field(ge=1)]
    since: Annotated[int, Field(ge=0)]  # the first iteration scored on them
    shards: dict[str, str] = Field(default_factory=dict)  # workspace path -> sha256
    splits: dict[str, dict[str, str]] = Field(default_factory=dict)  # val/test -> array -> "sha256:..."


def valid_config(value: Any) -> Config | None:
    """A Config from a mapping (validated: ValueError naming the field), for the records' validators."""
    if value is None or isinstance(value, Config):
        return value
    try:
        return config_from_dict(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


@dataclass(config=STRICT)
class HistoryEntry:
    """One finished iteration, with the configuration it ran with (None: not recorded, migrated
    from a version-1 state.yaml)."""

    iteration: Annotated[int, Field(ge=0)]  # 0: the pretraining phase
    seeds: list[NonNegative]
    seed_range: Annotated[list[NonNegative], Field(min_length=2, max_length=2)]
    total_seeds: NonNegative
    config: Config | None = None
    checkpoint: str | None = None
    started_from: str | None = None
    val: Metrics | None = None
    test: Metrics | None = None
    playout: Metrics | None = None
    delta_prev: Metrics = Field(default_factory=dict)
    delta_best: Metrics = Field(default_factory=dict)
    is_best: bool = False
    wandb: dict[str, Any] | None = None
    notebooks: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    usage: dict[str, StageUsage] = Field(default_factory=dict)  # per stage: forge.flywheel.usage
    started_at: str | None = None
    finished_at: str | None = None
    fingerprints: dict[str, str] = Field(default_factory=dict)
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)  # tracked metrics that got worse than the best
    by_hand: list[str] = Field(default_factory=list)  # stages a person ran in a notebook, not the loop
    extra: dict[str, Any] = Field(default_factory=dict)  # keys of a migrated entry this version does not know
    # sha256 of what the iteration produced and read, bound into the record (forge.flywheel.integrity):
    # "checkpoint" (its weights), "result.<stage>" (each stage result file), "golden" (the golden sets' pin)
    digests: dict[str, str] = Field(default_factory=dict)

    @field_validator("by_hand")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        return _check_stages(stages)

    @field_validator("config", mode="before")
    @classmethod
    def _valid_config(cls, value: Any) -> Config | None:
        return valid_config(value)

    def metric(self, split: str, name: str) -> float | None:
        value = (getattr(self, split) or {}).get(name)
        return float(value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the configuration by field name (the history's records, tables and diffs compare keys)."""
        data = to_plain(self)
        if self.config is not None:
            data["config"] = self.config.flat()
        return data


def to_plain(record: Any) -> Any:
    """A record (or a list/dict of them) as plain YAML/JSON-able data."""
    if isinstance(record, BaseModel):  # a configuration (its sectioned form)
        return record.model_dump()
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_plain(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, list):
        return [to_plain(r) for r in record]
    if isinstance(record, dict):
        return {k: to_plain(v) for k, v in record.items()}
    return record


