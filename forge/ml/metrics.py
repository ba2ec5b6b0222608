"""Move-quality metrics against the oracle, in one place so training, eval and notebooks agree.

Definitions (per sample; Q turned into the mover's perspective first, team 1 minimises):
- ``accuracy``: the prediction equals the oracle's target (lowest index among ties), as
  published figures count it.
- ``zero_regret``: the prediction is among the oracle's optimal moves, ties included.
- ``q_gap``: best legal Q minus the predicted move's Q, in points (>= 0); ``blunder_rate`` is
  the share of gaps > 10 and ``p99_gap`` their 99th percentile (nearest rank).
- ``value_mae`` / ``q_mae``: absolute error of the value head / of the Q head on legal moves,
  in points (the reference's definitions); ``game_value_mae``: that of the V read off the Q head,
  its best legal Q (:func:`forge.ml.model.game_value`). Each is present only when those
  predictions are passed in: callers pass a head's outputs only if it was trained
  (:func:`forge.ml.module.trained_heads`), since an untrained head's error means nothing.
- ``q_gap/<decl>``: mean gap per declaration; ``q_gap/depth<k>``: mean gap over states after k
  completed tricks (given the samples' depths); ``n/<decl>`` and ``n/depth<k>`` (ints): how many
  states each of those means is over (every depth, 0 when a depth has none).
- ``decision_q_gap``: mean gap over decisions only, the states where a legal move can lose
  points (on every other state any legal move is optimal, so its gap is 0); ``decision_share``:
  their share of the states. ``q_gap = decision_q_gap * decision_share``.
- ``tie_rate``: share of samples with more than one optimal move; ``tiebreak/slot<i>``:
  among predictions of slot i, the share that are optimal but not the target (a tie broken
  another way). Sum over slots of (share of predictions in slot i) * tiebreak/slot<i> is
  exactly zero_regret - accuracy.

Predictions never take an illegal move: logits are masked by ``legal`` before the argmax.
Gaps are whole points (Q are integers), so they accumulate in a histogram: exact percentiles in
constant memory over any number of batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from forge.ml.catalog import BLUNDER_THRESHOLD as BLUNDER_THRESHOLD  # defined by the catalogue
from forge.oracle.rules import DECL_NAMES, MAX_HAND, N_DECLS, TOTAL_POINTS

MAX_GAP = 2 * TOTAL_POINTS
_NEG = -1000


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def team_sign(teams) -> Tensor:
    """+1 for team 0 movers, -1 for team 1 (whose Q the oracle minimises)."""
    return 1 - 2 * _t(teams).long()


def mover_q(qvals, teams, legal) -> Tensor:
    """Q in the mover's perspective (int64); illegal slots set far below any legal Q."""
    q = _t(qvals).long() * team_sign(teams).unsqueeze(-1)
    return q.masked_fill(_t(legal) == 0, _NEG)


def predict(logits, legal) -> Tensor:
    """Argmax over legal moves only (lowest index on exact ties)."""
    logits = _t(logits).float()
    return logits.masked_fill(_t(legal) == 0, float("-inf")).argmax(-1)


def move_gaps(preds, qvals, legal, teams) -> Tensor:
    """Points the predicted move loses against the best legal move (int64, >= 0)."""
    q = mover_q(qvals, teams, legal)
    return q.max(-1).values - q.gather(-1, _t(preds).long().unsqueeze(-1)).squeeze(-1)


class MoveMetrics:
    """Accumulates move-quality statistics over batches; ``compute()`` gives the dict above."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.gap_hist = torch.zeros(N_DECLS, MAX_GAP + 1, dtype=torch.int64)
        self.depth_gaps = torch.zeros(MAX_HAND, dtype=torch.int64)  # summed gap per tricks played
        self.depth_n = torch.zeros(MAX_HAND, dtype=torch.int64)
        self.correct = 0
        self.ties = 0
        self.decisions = 0
        self.pred_slot = torch.zeros(MAX_HAND, dtype=torch.int64)
        self.tiebreak_slot = torch.zeros(MAX_HAND, dtype=torch.int64)
        self.value_abs = 0.0
        self.value_n = 0
        self.game_value_abs = 0.0
        self.game_value_n = 0
        self.q_abs = 0.0
        self.q_n = 0

    @torch.no_grad()
    def update(
        self,
        logits,
        qvals,
        legal,
        teams,
        targets,
        decls,
        value=None,
        values=None,
        q=None,
        depths=None,
        game_value=None,
    ) -> None:
        """logits/q (B,7), value (the value head's) and game_value (B,) as the model gives them (in
        units of 42 points, mover's perspective); qvals/legal/teams/targets/values/decls as in the store;
        ``depths`` (B,) the tricks completed before each state, for the per-depth gaps."""
        logits, legal, teams = _t(logits).detach().cpu(), _t(legal), _t(teams)
        preds = predict(logits, legal)
        qm = mover_q(qvals, teams, legal)
        best = qm.max(-1).values
        gaps = best - qm.gather(-1, preds.unsqueeze(-1)).squeeze(-1)
        decls = _t(decls).long()
        self.gap_hist += torch.bincount(
            decls * (MAX_GAP + 1) + gaps.clamp(0, MAX_GAP), minlength=N_DECLS * (MAX_GAP + 1)
        ).view(N_DECLS, MAX_GAP + 1)
        if depths is not None:
            depths = _t(depths).long().cpu()
            self.depth_gaps += torch.bincount(depths, weights=gaps.double(), minlength=MAX_HAND).long()[:MAX_HAND]
            self.depth_n += torch.bincount(depths, minlength=MAX_HAND)[:MAX_HAND]
        on_target = preds == _t(targets).long()
        self.correct += int(on_target.sum())
        n_opt = (qm == best.unsqueeze(-1)).sum(-1)
        self.ties += int((n_opt > 1).sum())
        self.decisions += int((n_opt < (legal != 0).sum(-1)).sum())  # some legal move is not optimal
        self.pred_slot += torch.bincount(preds, minlength=MAX_HAND)
        self.tiebreak_slot += torch.bincount(preds[(gaps == 0) & ~on_target], minlength=MAX_HAND)
        sign = team_sign(teams).double()
        if value is not None and values is not None:
            pred_v = _t(value).detach().cpu().double() * TOTAL_POINTS
            self.value_abs += float((pred_v - _t(values).double() * sign).abs().sum())
            self.value_n += len(pred_v)
        if game_value is not None and values is not None:
            pred_g = _t(game_value).detach().cpu().double() * TOTAL_POINTS
            self.game_value_abs += float((pred_g - _t(values).double() * sign).abs().sum())
            self.game_value_n += len(pred_g)
        if q is not None:
            pred_q = _t(q).detach().cpu().double() * TOTAL_POINTS
            ok = legal != 0
            err = (pred_q - _t(qvals).double() * sign.unsqueeze(-1)).abs()
            self.q_abs += float(err[ok].sum())
            self.q_n += int(ok.sum())

    @property
    def count(self) -> int:
        return int(self.gap_hist.sum())

    def compute(self) -> dict[str, float]:
        n = self.count
        if n == 0:
            return {"n": 0}
        hist = self.gap_hist.sum(0).double()
        gaps = torch.arange(MAX_GAP + 1, dtype=torch.float64)
        cum = hist.cumsum(0)
        out = {
            "n": n,
            "accuracy": self.correct / n,
            "zero_regret": float(hist[0]) / n,
            "q_gap": float((hist * gaps).sum()) / n,
            "blunder_rate": float(hist[BLUNDER_THRESHOLD + 1 :].sum()) / n,
            "p99_gap": float(torch.searchsorted(cum, 0.99 * n)),
            "tie_rate": self.ties / n,
            "decision_share": self.decisions / n,
        }
        if self.decisions:
            out["decision_q_gap"] = out["q_gap"] * n / self.decisions
        if self.value_n:  # only for heads whose outputs were given: the trained ones
            out["value_mae"] = self.value_abs / self.value_n
        if self.game_value_n:
            out["game_value_mae"] = self.game_value_abs / self.game_value_n
        if self.q_n:
            out["q_mae"] = self.q_abs / self.q_n
        for d in range(N_DECLS):
            nd = int(self.gap_hist[d].sum())
            if nd:
                out[f"q_gap/{DECL_NAMES[d]}"] = float((self.gap_hist[d].double() * gaps).sum()) / nd
                out[f"n/{DECL_NAMES[d]}"] = nd
        depths_given = bool(self.depth_n.sum())
        for k in range(MAX_HAND):
            if self.depth_n[k]:
                out[f"q_gap/depth{k}"] = float(self.depth_gaps[k]) / float(self.depth_n[k])
            if depths_given:  # every depth, an empty one too: a view must say "no states", not omit it
                out[f"n/depth{k}"] = int(self.depth_n[k])
        for i in range(MAX_HAND):
            if self.pred_slot[i]:
                out[f"tiebreak/slot{i}"] = float(self.tiebreak_slot[i]) / float(self.pred_slot[i])
        return out


def compute_metrics(logits, qvals, legal, teams, targets, decls, value=None, values=None, q=None, depths=None,
                    game_value=None):
    """One-shot form of :class:`MoveMetrics` for a single batch."""
    m = MoveMetrics()
    m.update(logits, qvals, legal, teams, targets, decls, value=value, values=values, q=q, depths=depths,
             game_value=game_value)
    return m.compute()
