"""Play-outs trick by trick: who played what, what the oracle would have played, and what each
mistake cost.

:func:`forge.ml.playout.play_out` takes any policy; :class:`Recorder` wraps one to keep every
position and move, so a finished play-out can be replayed and drawn. :func:`seat_policy` lets the
model play one team's seats against the oracle on the other's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from html import escape

import polars as pl

from forge.errors import InputError
from forge.flywheel.stages.evaluate import EvaluateResult
from forge.ml.evaluate import playout_deal
from forge.ml.loading import load_module
from forge.ml.playout import DealPlayout, ModelPolicy, PlayoutResult, Policy, Position, golden_shards, play_out
from forge.oracle.play import play
from forge.oracle.rules import DECL_NAMES, N_PLAYERS, domino_name, team_of
from forge.oracle.shard import read_shard_info
from forge.oracle.shard_rows import ShardRows
from forge.oracle.state import unpack_state
from forge.ui.views.display import choose, frame_html, show
from forge.ui.views.dominoes import BAD, BEST, hands_html, tile
from forge.ui.views.positions import Board, board_at

DealKey = tuple[int, int]  # (seed, decl_id)


class Recorder:
    """A policy that asks ``policy`` and remembers every position and the move chosen there."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.moves: dict[DealKey, list[tuple[Position, int]]] = {}

    def __call__(self, positions: Sequence[Position]) -> list[int]:
        chosen = [int(m) for m in self.policy(positions)]
        for pos, move in zip(positions, chosen):
            self.moves.setdefault((pos.solution.seed, pos.solution.decl_id), []).append((pos, move))
        return chosen


def seat_policy(team0: Policy, team1: Policy) -> Policy:
    """Team 0's seats (players 0 and 2) played by ``team0``, team 1's by ``team1``: each asked once per step."""

    def policy(positions: Sequence[Position]) -> list[int]:
        out: list[int] = [0] * len(positions)
        for team, who in ((0, team0), (1, team1)):
            mine = [k for k, pos in enumerate(positions) if team_of(pos.player) == team]
            if mine:
                for k, move in zip(mine, who([positions[k] for k in mine])):
                    out[k] = int(move)
        return out

    return policy


@dataclass(frozen=True)
class Play:
    """One move of a play-out, scored by the deal's exact Q."""

    trick: int  # 1-based
    board: Board
    move: int
    points: int  # team-0 points the move scored (non-zero only when it completes a trick)
    winner: int | None  # who took the trick, on its 4th play

    @property
    def player(self) -> int:
        return self.board.mover

    @property
    def regret(self) -> int:
        return self.board.regret(self.move)


def plays(moves: Sequence[tuple[Position, int]]) -> list[Play]:
    """The recorded moves of one deal, with tricks resolved by the rules."""
    out = []
    for k, (pos, move) in enumerate(moves):
        board = board_at(pos.solution, pos.state)
        step = play(pos.state, move, board.hands, board.decl_id)
        completes = k % N_PLAYERS == N_PLAYERS - 1
        winner = int(unpack_state(step.child).leader) if completes else None
        out.append(Play(k // N_PLAYERS + 1, board, move, step.points, winner))
    return out


def model_policy(checkpoint: str | os.PathLike) -> Policy:
    """A checkpoint's network as a policy (exact inference net, argmax over legal moves of the
    head it was trained to play by)."""
    module = load_module(checkpoint)
    return ModelPolicy(module.model, move_head=module.move_head)


def record_playouts(policy: Policy, shards: Sequence[str | os.PathLike]) -> tuple[PlayoutResult, Recorder]:
    """Play out every shard's deal with ``policy`` (all in lockstep), recording each move."""
    recorder = Recorder(policy)
    return play_out(recorder, [ShardRows(p) for p in shards]), recorder


def plays_frame(deal_plays: Sequence[Play]) -> pl.DataFrame:
    """One row per move: trick, player, domino, its Q and the best Q (mover's side), points lost."""
    rows = []
    for p in deal_plays:
        mq = p.board.mover_q()
        rows.append({"trick": p.trick, "player": f"P{p.player}", "played": domino_name(int(p.board.hands[p.player,
                                                                                                          p.move])),
                     "Q": mq[p.move], "best Q": max(mq.values()), "lost": p.regret,
                     "best moves": ", ".join(domino_name(int(p.board.hands[p.player, i])) for i in p.board.best),
                     "trick to": f"P{p.winner}" if p.winner is not None else "",
                     "points (team 0)": p.points if p.winner is not None else None})
    return pl.DataFrame(rows)


def worst_deal(result: PlayoutResult) -> DealPlayout:
    """The deal with the most points lost (the first of equals)."""
    return max(result.deals, key=lambda d: d.points_lost)


def playout_html(deal: DealPlayout, deal_plays: Sequence[Play], seats: str = "model plays all four seats") -> str:
    """The play-out drawn trick by trick: each trick's four dominoes, mistakes outlined in red with
    the points they lost, who took the trick and the running score."""
    first = deal_plays[0].board
    lost0, lost1 = deal.lost
    header = (f"<b>play-out: seed {deal.seed} · {escape(DECL_NAMES[deal.decl_id])}</b> · {escape(seats)} · "
              f"perfect play gives team 0 {deal.optimal_value:+d}, as played {deal.outcome:+d} · points lost: "
              f"team 0 {lost0}, team 1 {lost1}")
    tricks, score = [], 0
    for t in sorted({p.trick for p in deal_plays}):
        row = [p for p in deal_plays if p.trick == t]
        tiles = []
        for p in row:
            d = int(p.board.hands[p.player, p.move])
            mark = f"P{p.player} ✗ −{p.regret}" if p.regret else f"P{p.player}"
            tiles.append(tile(d, mark, outline=BAD if p.regret else None))
        end = row[-1]
        score += end.points
        taken = (f"→ P{end.winner} takes {abs(end.points)} (team {team_of(end.winner)}); team 0 net {score:+d}"
                 if end.winner is not None else "")
        best_alts = "; ".join(
            f"P{p.player} should play {' or '.join(domino_name(int(p.board.hands[p.player, i])) for i in p.board.best)}"
            for p in row if p.regret)
        tricks.append(f'<div class="forge-trick" style="display:flex;align-items:center;gap:8px">'
                      f'<span style="width:60px">trick {t}</span>{"".join(tiles)}<span>{escape(taken)}</span>'
                      f'<span style="font-size:12px;color:{BAD}">{escape(best_alts)}</span></div>')
    return (f'<div class="forge-playout" style="font:13px/1.5 system-ui,sans-serif;border:1px solid #ddd;'
            f'border-radius:6px;padding:6px 10px;margin:6px 0"><div>{header}</div>'
            f"<div>starting hands:</div>{hands_html(first.hands, first.decl_id)}{''.join(tricks)}"
            f'<div style="color:#555;font-size:12px">red outline: a move that lost points (✗ −n: points the '
            f'oracle says it gave up); <span style="color:{BEST}">blue</span> in a position: the oracle\'s best.'
            f"</div>{frame_html(plays_frame(deal_plays), 'forge-playout-moves')}</div>")


def deal_choices(result: PlayoutResult) -> list[tuple[str, DealKey]]:
    """Dropdown options for the recorded deals, the worst first."""
    ordered = sorted(result.deals, key=lambda d: -d.points_lost)
    return [(f"seed {d.seed} {DECL_NAMES[d.decl_id]}: {d.points_lost} points lost", (d.seed, d.decl_id))
            for d in ordered]


def deal_html(result: PlayoutResult, recorder: Recorder, deal: DealKey,
              seats: str = "model plays all four seats") -> str:
    """One recorded deal of ``result``, by its (seed, declaration)."""
    played = next(d for d in result.deals if (d.seed, d.decl_id) == deal)
    return playout_html(played, plays(recorder.moves[deal]), seats)



def replay_evaluation(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                      deals: int) -> tuple[PlayoutResult, Recorder]:
    """The evaluate stage's play-out again (the first ``deals`` golden test deals), recorded."""
    return record_playouts(model_policy(checkpoint), golden_shards(data_dir, "test")[:deals])


def _deal_of(shard: str | os.PathLike) -> DealKey:
    info = read_shard_info(shard)
    return info.seed, info.decl_id


def evaluated_deals(evaluation: EvaluateResult) -> list[tuple[str, DealKey]]:
    """The evaluate stage's play-outs, worst first, from the points lost per deal it recorded."""
    lost = {deal: v for k, v in evaluation.playout.items() if (deal := playout_deal(k))}
    return [(f"seed {seed} {DECL_NAMES[decl]}: {points:.0f} points lost", (seed, decl))
            for (seed, decl), points in sorted(lost.items(), key=lambda kv: -kv[1])]


def replayed_deal_html(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, deal: DealKey) -> str:
    """One golden test deal played out again by the checkpoint, drawn trick by trick."""
    shards = [p for p in golden_shards(data_dir, "test") if _deal_of(p) == deal]
    if not shards:
        raise InputError(f"seed {deal[0]} declaration {deal[1]} is not a golden test deal of {data_dir}")
    result, recorder = record_playouts(model_policy(checkpoint), shards[:1])
    return deal_html(result, recorder, deal)


def choose_evaluated_deal(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                          evaluation: EvaluateResult) -> None:
    """The evaluation's worst play-out, replayed alone (a dropdown replays another in a live notebook);
    an evaluation recorded without per-deal losses replays them all to find it."""
    options = evaluated_deals(evaluation)
    if options:
        choose(partial(replayed_deal_html, checkpoint, data_dir), deal=options)
        return
    deals = int(evaluation.playout.get("playout_deals", 0))
    choose_deal(*replay_evaluation(checkpoint, data_dir, deals))


def choose_deal(result: PlayoutResult, recorder: Recorder) -> None:
    """Show the worst play-out, with a dropdown over the others in a live notebook."""
    if not result.deals:
        show('<div class="forge-playout">no play-out: the configuration plays out 0 deals (playout_deals)</div>')
        return
    choose(partial(deal_html, result, recorder), deal=deal_choices(result))
