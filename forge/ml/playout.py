"""Play-out evaluation: a policy plays all four seats of golden deals, scored by the exact Q table.

Per-state metrics score moves on states the oracle reaches; a play-out also scores the states
the policy's own mistakes lead to. Every move's regret is the mover's best legal Q minus the
Q of the move made (points, >= 0), read from the deal's shard; a hand's points lost is the sum
over its moves, for both teams. With exact Q the hand's actual result telescopes to
``V(start) - lost_team0 + lost_team1`` (team-0 units), which the play-out checks against the
points actually scored trick by trick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from forge.ml.inference import inference_net
from forge.ml.model import DominoTransformer, move_scores
from forge.ml.store import MissingDataError, read_manifest
from forge.ml.tokenize import featurize
from forge.oracle.play import legal_moves, play
from forge.oracle.rules import DECL_NAMES, ILLEGAL_Q, N_PLAYERS
from forge.oracle.shard_rows import ShardRows
from forge.oracle.solve import Solution
from forge.oracle.state import initial_state, mover

#: A deal's exact table: solved in memory, or rows read from its shard on demand.
Table = Solution | ShardRows


@dataclass(frozen=True)
class Position:
    """What a policy sees at one decision: the state, the deal and the state's oracle row."""

    solution: Table
    state: int
    row: int  # row of ``state`` in ``solution``
    legal: list[int]  # local indices allowed by the rules

    @property
    def player(self) -> int:
        return int(mover(self.state))


#: A policy picks one legal local index per position (a batch, so models run once per step).
Policy = Callable[[Sequence[Position]], Sequence[int]]


@dataclass
class DealPlayout:
    seed: int
    decl_id: int
    hand_size: int
    optimal_value: int  # V at the first lead (team-0 units)
    outcome: int  # points team 0 won minus team 1's, as played
    lost: list[int] = field(default_factory=lambda: [0, 0])  # regret summed per team

    @property
    def points_lost(self) -> int:
        return sum(self.lost)


@dataclass
class PlayoutResult:
    deals: list[DealPlayout]

    def summary(self) -> dict[str, float]:
        """Means over deals: points lost per hand (both teams), per team, and the outcome's error."""
        if not self.deals:
            return {"playout_deals": 0}
        lost = np.array([d.lost for d in self.deals], dtype=np.float64)
        out = {
            "playout_deals": len(self.deals),
            "playout_points_lost": float(lost.sum(1).mean()),
            "playout_points_lost_team0": float(lost[:, 0].mean()),
            "playout_points_lost_team1": float(lost[:, 1].mean()),
            "playout_outcome_error": float(np.mean([abs(d.outcome - d.optimal_value) for d in self.deals])),
            "playout_perfect_hands": float(np.mean([d.points_lost == 0 for d in self.deals])),
        }
        for decl in sorted({d.decl_id for d in self.deals}):
            ds = [d.points_lost for d in self.deals if d.decl_id == decl]
            out[f"playout_points_lost/{DECL_NAMES[decl]}"] = float(np.mean(ds))
        return out


def _regret(sol: Table, row: int, player: int, move: int) -> int:
    q = sol.q_row(row).astype(np.int64)
    legal = q != ILLEGAL_Q
    if not legal[move]:
        raise ValueError(f"seed {sol.seed} decl {sol.decl_id}: policy chose illegal local index {move}")
    sign = 1 if player % 2 == 0 else -1
    return int((sign * q[legal]).max() - sign * q[move])


def play_out(policy: Policy, solutions: Sequence[Table]) -> PlayoutResult:
    """Play every deal from the first lead to the end, in lockstep (one policy call per play)."""
    states = [initial_state(s.hand_size) for s in solutions]
    results = [
        DealPlayout(s.seed, s.decl_id, s.hand_size, s.value(s.lookup(st)), 0)
        for s, st in zip(solutions, states)
    ]
    for step in range(N_PLAYERS * max((s.hand_size for s in solutions), default=0)):
        live = [k for k, s in enumerate(solutions) if step < N_PLAYERS * s.hand_size]
        positions = []
        for k in live:
            sol, st = solutions[k], states[k]
            positions.append(Position(sol, st, sol.lookup(st), legal_moves(st, sol.hands, sol.decl_id)))
        moves = policy(positions)
        for k, pos, move in zip(live, positions, moves):
            move = int(move)
            if move not in pos.legal:
                raise ValueError(f"policy chose local index {move}, not among legal {pos.legal}")
            sol, res = solutions[k], results[k]
            res.lost[pos.player % 2] += _regret(sol, pos.row, pos.player, move)
            stepped = play(pos.state, move, sol.hands, sol.decl_id)
            states[k] = stepped.child
            res.outcome += stepped.points
    for res in results:  # exact Q: the played result must telescope (see module docstring)
        expected = res.optimal_value - res.lost[0] + res.lost[1]
        if res.outcome != expected:
            raise AssertionError(f"seed {res.seed} decl {res.decl_id}: played {res.outcome}, Q says {expected}")
    return PlayoutResult(results)


def oracle_policy(positions: Sequence[Position]) -> list[int]:
    """The oracle's own choice (the tokenizer's target rule: best Q for the mover, lowest index)."""
    out = []
    for pos in positions:
        q = pos.solution.q_row(pos.row).astype(np.int64)
        sign = 1 if pos.player % 2 == 0 else -1
        scored = [(-sign * q[i], i) for i in pos.legal]
        out.append(min(scored)[1])
    return out


class ModelPolicy:
    """A DominoTransformer as a policy: tokenize each position (format v1), argmax over legal of
    the head it plays by."""

    def __init__(self, model: DominoTransformer, device: str | torch.device = "cpu", move_head: str = "policy"):
        self.model = inference_net(model, device)
        self.device = torch.device(device)
        self.move_head = move_head

    def __call__(self, positions: Sequence[Position]) -> list[int]:
        parts = []
        for pos in positions:
            sol = pos.solution
            q = sol.q_row(pos.row)[None, :]
            v = np.array([sol.value(pos.row)], dtype=np.int8)
            feats = featurize(np.array([pos.state]), v, q, sol.hands, sol.decl_id)
            parts.append(feats)
        batch = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])).to(self.device)
                 for k in ("tokens", "masks", "players")}
        legal = torch.zeros(len(positions), 7, dtype=torch.bool)
        for j, pos in enumerate(positions):
            legal[j, pos.legal] = True
        with torch.inference_mode():
            out = self.model(batch["tokens"], batch["masks"], batch["players"])
            logits = move_scores(out, self.move_head).float().cpu()
        return logits.masked_fill(~legal, float("-inf")).argmax(-1).tolist()


def golden_shards(data_dir: str | Path, split: str) -> list[Path]:
    """Shard paths behind a split of a tokenized dataset, in manifest order."""
    manifest = read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise MissingDataError(f"{data_dir}: no split {split!r} in the manifest")
    return [Path(s["path"]) for s in manifest["splits"][split]["sources"]]


def play_out_shards(policy: Policy, shards: Sequence[str | Path]) -> PlayoutResult:
    """Play-out over shard files, all deals in lockstep; each shard decodes only the row groups
    holding the states actually visited (see :mod:`forge.oracle.shard_rows`)."""
    return play_out(policy, [ShardRows(p) for p in shards])
