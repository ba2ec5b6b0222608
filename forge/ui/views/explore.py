"""The explore notebook's choices and answers: any iteration's checkpoint, any golden deal, the model
playing it against the oracle, and the oracle's answer at any state of a deal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forge.errors import InputError
from forge.flywheel.stages import train
from forge.ml.playout import Position, oracle_policy
from forge.oracle.play import legal_moves, play
from forge.oracle.rules import DECL_NAMES
from forge.oracle.shard_rows import ShardRows
from forge.oracle.state import initial_state
from forge.ui.views.display import Options, choose, show
from forge.ui.views.playouts import deal_html, model_policy, record_playouts, seat_policy
from forge.ui.views.positions import board_at, board_html

#: Who sits where in a watched play-out: label -> (team 0's player, team 1's player).
SEATS: dict[str, tuple[str, str]] = {
    "model (team 0) vs oracle (team 1)": ("model", "oracle"),
    "oracle (team 0) vs model (team 1)": ("oracle", "model"),
    "model on all four seats": ("model", "model"),
}


def checkpoint_choices(ctx: Any) -> list[tuple[str, Path]]:
    """Every iteration's kept checkpoint still on disk, the newest first: the iteration in progress
    (or one trained by hand and not yet recorded by the loop), then the history."""
    out = []
    pending = train.STAGE.read(ctx.ws, ctx.state.iteration)
    if pending is not None and (ctx.ws.root / pending.checkpoint).is_file():
        label = f"iteration {ctx.state.iteration} (trained, not yet recorded)"
        out.append((label, ctx.ws.root / pending.checkpoint))
    for h in reversed(ctx.state.history):
        path = ctx.ws.root / h.checkpoint if h.checkpoint else None
        if path is not None and path.is_file():
            gap = h.metric("val", "q_gap")
            out.append((f"iteration {h.iteration}" + (f" (val Q-gap {gap:.3f})" if gap is not None else ""), path))
    return out


def deal_choices(ctx: Any) -> list[tuple[str, Path]]:
    """The golden deals on disk: test deals first, then validation deals."""
    out = []
    for split in ("test", "val"):
        for path in ctx.golden_shards(split):
            if path.is_file():
                rows = ShardRows(path)
                out.append((f"{split}: seed {rows.seed} {DECL_NAMES[rows.decl_id]}", path))
    return out


def watch_html(checkpoint: str | os.PathLike, shard: str | os.PathLike, seats: str = next(iter(SEATS))) -> str:
    """The deal played out with the model and the oracle in the chosen seats, trick by trick."""
    if seats not in SEATS:
        raise InputError(f"seats must be one of: {', '.join(SEATS)}; got {seats!r}")
    model = model_policy(checkpoint)
    by_name = {"model": model, "oracle": oracle_policy}
    team0, team1 = (by_name[who] for who in SEATS[seats])
    result, recorder = record_playouts(seat_policy(team0, team1), [shard])
    deal = result.deals[0]
    return deal_html(result, recorder, (deal.seed, deal.decl_id), seats)


def state_after(rows: ShardRows, moves: str) -> int:
    """The packed state reached from the opening by ``moves`` (local indices, e.g. ``"0 2 1"``),
    or the state written out in hex (``"0x1ff00000000"``)."""
    text = moves.strip()
    if text.lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            raise InputError(f"{text!r} is not a packed state in hex") from None
    state = initial_state(rows.hand_size)
    for k, part in enumerate(text.replace(",", " ").split()):
        if not part.isdigit():
            raise InputError(f"move {k + 1}: {part!r} is not a local index (0..{rows.hand_size - 1})")
        legal = legal_moves(state, rows.hands, rows.decl_id)
        if int(part) not in legal:
            raise InputError(f"move {k + 1}: local index {part} is not legal there (legal: {legal})")
        state = play(state, int(part), rows.hands, rows.decl_id).child
    return state


def example_moves(rows: ShardRows, plies: int = 3) -> str:
    """A move sequence that is legal in this deal: the oracle's best line from the opening (the
    lowest-index best move at each ply), for the query box's hint."""
    state, moves = initial_state(rows.hand_size), []
    for _ in range(plies):
        board = board_at(rows, state)
        if not board.legal:
            break
        moves.append(board.best[0])
        state = play(state, moves[-1], rows.hands, rows.decl_id).child
    return " ".join(map(str, moves))


def query_html(shard: str | os.PathLike, moves: str = "", checkpoint: str | os.PathLike | None = None) -> str:
    """The oracle's answer at a state of the deal (and the model's move there, given a checkpoint),
    with the local indices legal there and a sequence that works in this deal."""
    rows = ShardRows(shard)
    state = state_after(rows, moves)
    try:
        board = board_at(rows, state)
    except KeyError:
        raise InputError(f"state {state:#x} is not reachable in seed {rows.seed} {DECL_NAMES[rows.decl_id]}") from None
    hint = (f'<div class="forge-query-hint" style="font:12px system-ui,sans-serif;color:#555">moves are local '
            f"indices (a domino's place in its player's dealt hand, 0..{rows.hand_size - 1}); legal next here: "
            f"{' '.join(map(str, board.legal)) or 'none'}; the oracle's line from the opening in this deal: "
            f"<code>{example_moves(rows)}</code></div>")
    if not board.legal:
        return board_html(board, f"state {state:#x}: the hand is over", css_class="forge-query") + hint
    model_move = None
    if checkpoint is not None:
        pos = Position(rows, state, rows.lookup(state), board.legal)
        model_move = int(model_policy(checkpoint)([pos])[0])
    where = f"after moves {moves.strip()}" if moves.strip() else "the opening"
    return board_html(board, f"state {state:#x}: {where}", model_move=model_move,
                      css_class="forge-query") + hint


def first(options: Options, wanted: object = None) -> list[tuple[str, Any]]:
    """``options`` with the one matching ``wanted`` (its label, its value, or its file's name) first.

    None keeps the order. Anything else must match: a mistyped parameter is an error, not a
    silent fall-back to another deal.
    """
    options = list(options)
    if wanted is None:
        return options
    for k, (label, value) in enumerate(options):
        names = {label, str(value), Path(value).name if isinstance(value, (str, os.PathLike)) else None}
        if str(wanted) in names or label.startswith(f"iteration {wanted} ") or label == f"iteration {wanted}":
            return [options[k], *options[:k], *options[k + 1:]]
    raise InputError(f"{wanted!r} is not among the choices: {', '.join(label for label, _ in options) or 'none'}")


def watch(ctx: Any, iteration: int | None = None, deal: str | None = None) -> None:
    """Choose a checkpoint, a golden deal and the seats; see the deal played out trick by trick."""
    checkpoints, deals = checkpoint_choices(ctx), deal_choices(ctx)
    if not checkpoints or not deals:
        missing = "no trained iteration yet" if not checkpoints else "no golden deals on disk yet"
        show(f'<div class="forge-playout">nothing to watch: {missing} (run an iteration first)</div>')
        return
    choose(watch_html, checkpoint=first(checkpoints, iteration), shard=first(deals, deal),
           seats=[(s, s) for s in SEATS])


def query(ctx: Any, iteration: int | None = None, deal: str | None = None, moves: str = "") -> None:
    """Choose a golden deal and type moves (or a packed state): see the oracle's Q there and the model's move."""
    checkpoints, deals = checkpoint_choices(ctx), deal_choices(ctx)
    if not deals:
        show('<div class="forge-query">nothing to query: no golden deals on disk yet</div>')
        return
    models = first(checkpoints, iteration) + [("no model", None)]
    choose(query_html, shard=first(deals, deal), moves=moves, checkpoint=models)
