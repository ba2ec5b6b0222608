"""Lightning module: the losses that teach the DominoTransformer the oracle, and its optimiser.

Loss = policy_weight * policy loss + value_weight * value loss + q_weight * Q loss. The policy
loss blends cross-entropy to the oracle's target with a soft target softmax(Q_mover /
temperature) over the legal moves: the soft part tells the model how bad each alternative is,
which the single target cannot. The Q loss is the MSE of every legal move's value, the reference
trainer's best recipe; ``move_head`` says which head plays (policy logits, or the highest
predicted Q). Validation accumulates :class:`forge.ml.metrics.MoveMetrics` over the split.

Every checkpoint it writes carries ``weights_sha256``, a digest of its weights that
:mod:`forge.ml.checkpoints` checks on load: a flipped bit is refused, not silently evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from forge.errors import InputError
from forge.ml.checkpoints import WEIGHTS_SHA256, trained_heads, weights_sha256
from forge.ml.data import Batch, decl_of, shuffle_hand_slots
from forge.ml.metrics import MoveMetrics, mover_q, team_sign
from forge.ml.model import (
    MOVE_HEADS,
    VALUE_SCALE,
    DominoTransformer,
    ModelConfig,
    ModelOutput,
    best_legal_q,
    move_scores,
    preset,
)
from forge.ml.schedule import cosine_schedule, lr_factor

#: Checkpoint keys of the training samples the weights have seen in all runs, and of the optimiser
#: state a continuing run resumes (Lightning's own key).
SAMPLES_SEEN = "samples_seen"
OPTIMIZER_STATES = "optimizer_states"


def decision_rows(qvals: Tensor, legal: Tensor) -> Tensor:
    """Per row, whether a legal move can lose points (its legal Q differ; the sign of the team does not
    change that): the states where the policy has something to learn. The same rule as the tokenizer's
    ``forge.ml.tokenize.q_spread(qvals) > 0``, on a batch's tensors (on any device) instead of numpy."""
    ok = legal != 0
    q = qvals.float()
    best = q.masked_fill(~ok, float("-inf")).max(-1).values
    worst = q.masked_fill(~ok, float("inf")).min(-1).values
    return ok.any(-1) & (best > worst)


def policy_loss(
    logits: Tensor, targets: Tensor, qvals: Tensor, legal: Tensor, teams: Tensor,
    soft_weight: float, temperature: float, rows: Tensor | None = None,
) -> Tensor:
    """(1 - w) * CE(target) + w * CE(softmax(Q_mover / T)), over legal moves only; averaged over ``rows``
    (a boolean mask; None: every row; none of them: 0, with the graph kept)."""
    illegal = legal == 0
    logp = F.log_softmax(logits.float().masked_fill(illegal, float("-inf")), -1).masked_fill(illegal, 0.0)
    per_row = -logp.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    if soft_weight:
        q = mover_q(qvals, teams, legal).float().masked_fill(illegal, float("-inf"))
        soft = F.softmax(q / temperature, -1)
        per_row = (1 - soft_weight) * per_row + soft_weight * -(soft * logp).sum(-1)
    if rows is None:
        return per_row.mean()
    return (per_row * rows).sum() / rows.sum().clamp_min(1)


def value_loss(value: Tensor, values: Tensor, teams: Tensor) -> Tensor:
    """MSE of the value head against V in the mover's perspective, in units of 42 points."""
    return F.mse_loss(value.float(), values.float() * team_sign(teams) / VALUE_SCALE)


def q_loss(q: Tensor, qvals: Tensor, legal: Tensor, teams: Tensor) -> Tensor:
    """MSE of the Q head against the mover's Q on legal moves, in units of 42 points."""
    target = qvals.float() * team_sign(teams).unsqueeze(1) / VALUE_SCALE
    ok = legal != 0
    return F.mse_loss(q.float()[ok], target[ok])


class DominoModule(L.LightningModule):
    """Trains a :class:`DominoTransformer`; hyper-parameters (model config included) live in the
    checkpoint, so ``DominoModule.load_from_checkpoint`` rebuilds the same network."""

    def __init__(
        self,
        model_config: dict | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        soft_weight: float = 0.7,
        temperature: float = 3.0,
        value_weight: float = 0.5,
        q_weight: float = 0.0,
        shuffle_hands: bool = False,
        warmup_frac: float = 0.02,
        min_lr_ratio: float = 0.05,
        policy_weight: float = 1.0,
        move_head: str = "policy",
        policy_states: str = "all",
    ):
        super().__init__()
        check_heads(policy_weight, q_weight, move_head)
        config = ModelConfig(**model_config) if model_config else preset("large")
        self.save_hyperparameters()
        self.hparams["model_config"] = config.to_dict()
        self.model = DominoTransformer(config)
        self.val_metrics = MoveMetrics()
        self.test_metrics = MoveMetrics()
        #: Training samples these weights have seen, over every run that trained them (checkpointed).
        self.samples_seen = 0
        #: Where the LR schedule stands (0..1, flat beyond), when a run lays it over a budget or a
        #: horizon of samples rather than its own steps (forge.ml.schedule); None: over the steps.
        self.lr_progress: Callable[[], float] | None = None
        #: An optimiser state to go on from (a continuing run), loaded when the optimiser is made.
        self.optimizer_state: dict | None = None

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> DominoModule:
        return cls(model_config=preset(name).to_dict(), **kwargs)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def trained_heads(self) -> tuple[str, ...]:
        return trained_heads(self.hparams)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[WEIGHTS_SHA256] = weights_sha256(checkpoint["state_dict"])
        checkpoint[SAMPLES_SEEN] = self.samples_seen

    def forward(self, batch: Batch) -> ModelOutput:
        return self.model(batch["tokens"], batch["masks"], batch["players"])

    @property
    def move_head(self) -> str:
        return self.hparams.move_head

    def losses(self, out: ModelOutput, batch: Batch) -> dict[str, Tensor]:
        hp = self.hparams
        parts = {"value_loss": value_loss(out.value, batch["values"], batch["teams"])}
        loss = hp.value_weight * parts["value_loss"]
        if hp.policy_weight:
            rows = decision_rows(batch["qvals"], batch["legal"]) if hp.policy_states == "decisions" else None
            parts["policy_loss"] = policy_loss(
                out.logits, batch["targets"], batch["qvals"], batch["legal"], batch["teams"],
                hp.soft_weight, hp.temperature, rows,
            )
            loss = loss + hp.policy_weight * parts["policy_loss"]
        if hp.q_weight:
            parts["q_loss"] = q_loss(out.q, batch["qvals"], batch["legal"], batch["teams"])
            loss = loss + hp.q_weight * parts["q_loss"]
        parts["loss"] = loss
        return parts

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.hparams.shuffle_hands:
            batch = shuffle_hand_slots(batch)  # global RNG: seeded by the run's seed
        parts = self.losses(self(batch), batch)
        n = len(batch["targets"])
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, batch_size=n)
        self.log("train/loss_epoch", parts["loss"].detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=n)
        return parts["loss"]

    def _eval_step(self, batch: Batch, metrics: MoveMetrics, prefix: str) -> None:
        out = self(batch)
        n = len(batch["targets"])
        for k, v in self.losses(out, batch).items():
            self.log(f"{prefix}/{k}", v, on_epoch=True, batch_size=n)
        heads = self.trained_heads  # an untrained head's error means nothing: not reported
        metrics.update(
            move_scores(out, self.move_head), batch["qvals"], batch["legal"], batch["teams"], batch["targets"],
            decl_of(batch), value=out.value if "value" in heads else None, values=batch["values"],
            q=out.q if "q" in heads else None, game_value=best_legal_q(out, batch["legal"]) if "q" in heads else None,
        )

    def _log_metrics(self, metrics: MoveMetrics, prefix: str) -> None:
        values = {k: v for k, v in metrics.compute().items() if k != "n" and not k.startswith("n/")}  # counts
        self.log(f"{prefix}/q_gap", float(values.pop("q_gap")), prog_bar=True)
        self.log_dict({f"{prefix}/{k}": float(v) for k, v in values.items()})
        metrics.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def make_optimizer(self) -> torch.optim.AdamW:
        """AdamW at the peak LR; biases, norms and embeddings take no weight decay. Apart from
        :meth:`configure_optimizers` so that a caller with another schedule (a time budget) can
        reuse it."""
        hp = self.hparams
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            (decay if p.ndim >= 2 and "embeddings" not in name else no_decay).append(p)
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
        )

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        opt = self.make_optimizer()
        if self.optimizer_state is not None:
            opt.load_state_dict(self.optimizer_state)  # Adam's moments go on; the rate is the schedule's
            for group in opt.param_groups:
                group["lr"] = hp.lr
                group.pop("initial_lr", None)
        progress = self.lr_progress
        if progress is not None:
            factor = lambda _step: lr_factor(progress(), hp.warmup_frac, hp.min_lr_ratio)  # noqa: E731
        else:
            factor = cosine_schedule(max(1, int(self.trainer.estimated_stepping_batches)), hp.warmup_frac,
                                     hp.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def check_heads(policy_weight: float, q_weight: float, move_head: str) -> None:
    """InputError for a recipe whose playing head would not be trained."""
    if move_head not in MOVE_HEADS:
        raise InputError(f"move_head must be one of {', '.join(MOVE_HEADS)}, got {move_head!r}")
    trained = {"policy": policy_weight, "q": q_weight}
    if not trained[move_head]:
        raise InputError(f"move_head {move_head!r} plays by a head this run does not train "
                         f"({move_head}_weight is 0)")

