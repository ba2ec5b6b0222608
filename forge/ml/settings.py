"""What a training run takes, declared once: the ``training`` and ``hardware`` sections, which the
flywheel's configuration holds as two of its sections and :func:`forge.ml.training.train` takes as
its arguments (so a new training setting is one field here plus the line that uses it). Light enough
for configuration checks and status views: no torch import.

Each field is validated here and nowhere else; a bad value names its section and field
(:func:`forge.validation.first_problem`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forge.ml.model_presets import PRESETS as MODEL_PRESETS
from forge.oracle.executors import EXECUTORS

#: Precisions training accepts: "auto" (see ``forge.ml.training.resolve_precision``) or Lightning's names.
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
#: Which states training samples (forge.ml.tokenize explains each): "all" is the spec's rule.
SELECTIONS: tuple[str, ...] = ("all", "decisions", "mixed")
#: The W&B project runs go to unless told otherwise (training runs and the flywheel's iterations alike).
WANDB_PROJECT = "forge-texas42"
#: The largest seed (deal, tokenizer or training seed) the flywheel takes: far beyond any real run, and
#: small enough that every seed, and the seeds counted on from it, stay exact in int64 and float64
#: (polars columns, JSON) everywhere they go.
MAX_SEED = 2**48
#: A learning rate far past any stable one (a diverging run is a real experiment: training stops at its
#: first non-finite loss), yet far from overflowing a float32 update (1e300 did, naming nothing).
MAX_LR = 1e12
#: accelerator and strategy are names Lightning knows (cpu, gpu, ddp, fsdp, ...), never a path.
LIGHTNING_NAME = r"^[a-z][a-z0-9_]*$"


class Section(BaseModel):
    """A configuration section: strict types (a bool is no integer, "3" no number), finite numbers, no
    unknown keys, immutable."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", allow_inf_nan=False)


class TrainingSection(Section):
    """One training run's settings. The flywheel's train stage gives each iteration's run its own seed
    (``train_seed + iteration``); with a budget (samples or seconds) the run stops there and ``epochs``
    does not apply."""

    model: str | None = None  # a model preset (forge.ml.model_presets); None: the resumed checkpoint's, else large
    epochs: int = Field(10, ge=1, le=10_000)  # passes over the training split when there is no budget
    lr: float = Field(3e-4, gt=0, le=MAX_LR)  # peak learning rate (fine-tuning, or from scratch without scratch_lr)
    scratch_lr: float | None = Field(None, gt=0, le=MAX_LR)  # peak when training from scratch (None: lr)
    batch_size: int = Field(512, ge=1, le=1 << 20)
    train_seed: int = Field(0, ge=0, le=MAX_SEED)  # Lightning seeds with it modulo 2**32
    val_samples: int | None = Field(None, ge=1)  # golden val samples scored per validation (None: the whole split)
    # A budget (at most one): samples, or seconds of training. The schedule (warm-up and cosine) is laid over
    # it, validation runs once at the end, and the last weights are kept.
    train_samples: int | None = Field(None, ge=1, le=10**15)
    train_seconds: float | None = Field(None, ge=1.0, le=30 * 86400)  # under a second trains nothing
    # One schedule over every sample the weights have seen instead (the flywheel's model across iterations).
    lr_horizon: int | None = Field(None, ge=1, le=10**15)
    # Loss weights of the value head (the state's value) and the Q head (every legal move's Q), beside the
    # policy's 1; targets are points / 42 in the loss, errors reported in points (value MAE, Q-MAE).
    value_weight: float = Field(0.5, ge=0)
    q_weight: float = Field(0.0, ge=0)
    # The states the policy's loss counts: "all" sampled, or only "decisions" (where a legal move can lose
    # points; elsewhere every legal move is best, and the policy's target is a tie-break). The value and Q
    # heads learn from every sampled state either way (train_states says which are sampled).
    policy_states: Literal["all", "decisions"] = "all"

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None and value not in MODEL_PRESETS:
            raise ValueError(f"must be one of {', '.join(MODEL_PRESETS)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        if self.train_samples is not None and self.train_seconds is not None:
            raise ValueError("train_samples and train_seconds are both set: give one training budget")
        return self

    @property
    def budgeted(self) -> bool:
        return self.train_samples is not None or self.train_seconds is not None

    def peak_lr(self, from_scratch: bool) -> float:
        """The schedule's peak: scratch_lr for weights that start from scratch (when set), else lr."""
        return self.scratch_lr if from_scratch and self.scratch_lr is not None else self.lr


class HardwareSection(Section):
    """Where work runs: training through Lightning ("auto" picks bf16-mixed on a CUDA GPU, fp32 on a CPU),
    and deals are solved by local processes or a Ray cluster."""

    precision: Literal[PRECISIONS] = "auto"  # type: ignore[valid-type]
    accelerator: str = Field("auto", pattern=LIGHTNING_NAME)  # auto | cpu | gpu | cuda
    devices: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = 1  # processes/GPUs per node (>1: ddp)
    strategy: str = Field("auto", pattern=LIGHTNING_NAME)  # auto | ddp | ...
    num_nodes: int = Field(1, ge=1, le=4096)
    compile: bool = False  # torch.compile the network (the checkpoint is unchanged by it)
    # Where deals are solved: "local" worker processes (nothing to start) or a Ray cluster at ray_address
    # (HOST:PORT; None: RAY_ADDRESS or a cluster started on this machine). Every executor writes
    # byte-identical shards.
    executor: Literal[EXECUTORS] = "local"  # type: ignore[valid-type]
    ray_address: str | None = None

    @property
    def processes(self) -> int:
        return (self.devices if isinstance(self.devices, int) else 1) * self.num_nodes

    @property
    def multi_process(self) -> bool:
        """Whether training needs processes of its own (DDP), which a notebook kernel cannot become."""
        return self.processes > 1 or self.strategy.startswith("ddp")
