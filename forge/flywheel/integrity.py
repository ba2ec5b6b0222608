"""What keeps the flywheel's record from being falsified quietly: digests the state vouches for.

The loop is the only writer of ``state.yaml`` while it runs, and it binds what it records to content:

- **stage results**: when a stage finishes, the sha256 of its result file goes into
  ``current.digests["result.<stage>"]``; recording the iteration checks every one (an edited result
  is never recorded), and a resumed loop runs a stage whose result changed since again;
- **the chain of weights**: each history entry records its checkpoint's sha256
  (``digests["checkpoint"]``), and an iteration that starts from iteration N's weights must start
  from exactly those bytes; a missing hash is an error, never a skipped check;
- **the golden sets**: their shards' and tokenized val/test arrays' digests are pinned in
  ``state.yaml`` (``golden``) when first made; generate solves a shard that differs from its pin again,
  tokenize rebuilds a split that differs, and evaluation refuses to score one. Other golden sets (a
  changed ``golden_*`` field) start a new comparison series: iterations are compared (delta, best)
  only within their series;
- **the training data**: the train split's arrays must be the bytes the tokenize result recorded.

What it cannot tell: someone who rewrites a file *and* every digest that vouches for it (the result,
state.yaml's digests and pin) makes a change indistinguishable from a real one (docs/records.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge.digests import DigestMemo, sha256_file
from forge.errors import ForgeError
from forge.flywheel.config import Config
from forge.flywheel.paths import Workspace
from forge.flywheel.records import GOLDEN, GOLDEN_FIELDS, Current, GoldenPin, HistoryEntry, golden_key

if TYPE_CHECKING:
    from forge.flywheel.state import State

GOLDEN_SPLITS = ("val", "test")
CHECKPOINT = "checkpoint"


class IntegrityError(ForgeError):
    """A file does not hold what the record vouches for; the message names it and what to do."""


def same_series(entries: list[HistoryEntry], config: Config | Any) -> list[HistoryEntry]:
    """The entries scored on the golden sets ``config`` makes: only these are compared with an iteration
    run with ``config`` (an entry recorded without its config, migrated from version 1, is taken as one)."""
    key = golden_key(config)
    return [e for e in entries if e.digests.get(GOLDEN, golden_key(e.config) if e.config else key) == key]


# ---------------------------------------------------------------------------------------------- results


def result_key(stage: str) -> str:
    return f"result.{stage}"


def result_file(ws: Workspace, iteration: int, stage: str) -> Path:
    return ws.results(iteration) / f"{stage}.json"


def record_result(ws: Workspace, cur: Current, stage: str) -> None:
    """Vouch for ``stage``'s result file as it is now (the stage just finished, or the loop first sees it)."""
    path = result_file(ws, cur.iteration, stage)
    if path.is_file():
        cur.digests[result_key(stage)] = sha256_file(path)


def changed_result(ws: Workspace, cur: Current, stage: str) -> str | None:
    """Why ``stage``'s result file is not the one the loop recorded when the stage finished, or None."""
    want = cur.digests.get(result_key(stage))
    if want is None:
        return None
    path = result_file(ws, cur.iteration, stage)
    if not path.is_file():
        return f"{ws.rel(path)} is gone since the {stage} stage finished"
    if sha256_file(path) != want:
        return f"{ws.rel(path)} changed since the {stage} stage finished (sha256 {want[:12]}... recorded)"
    return None


def set_aside(ws: Workspace, cur: Current, stage: str) -> Path | None:
    """Move a changed result out of the way (kept beside it as ``<stage>.json.changed``) so the stage runs again."""
    path = result_file(ws, cur.iteration, stage)
    cur.digests.pop(result_key(stage), None)
    if not path.is_file():
        return None
    kept = path.with_name(path.name + ".changed")
    os.replace(path, kept)
    return kept


# ---------------------------------------------------------------------------------------------- weights


def expected_start(ws: Workspace, previous: HistoryEntry) -> str:
    """sha256 of the weights ``previous`` recorded: its history entry's, else (recorded before
    history held it) its train result's. Neither: an IntegrityError, never a skipped check."""
    sha = previous.digests.get(CHECKPOINT)
    if sha:
        return sha
    try:
        data = json.loads(result_file(ws, previous.iteration, "train").read_text())
        sha = data["outputs"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        sha = None
    if not isinstance(sha, str) or not sha:
        raise IntegrityError(f"iteration {previous.iteration} recorded no sha256 of its weights (history "
                             f"digests.checkpoint, nor its train result): the chain of weights cannot be checked; "
                             f"restore them, or start a new workspace from its checkpoint as a baseline")
    return sha


def check_start(ws: Workspace, previous: HistoryEntry, path: Path, sha: str | None = None) -> None:
    """The weights about to be (or that were) trained on are exactly those ``previous`` recorded."""
    want = expected_start(ws, previous)
    got = sha if sha is not None else (sha256_file(path) if path.is_file() else None)
    if got != want:
        what = "is missing" if got is None else f"has sha256 {got[:12]}..."
        raise IntegrityError(f"{ws.rel(path)} {what}, but iteration {previous.iteration} recorded its weights as "
                             f"{want[:12]}...: not the weights iteration {previous.iteration} trained; restore them "
                             f"(training from other weights would be recorded as starting from iteration "
                             f"{previous.iteration})")


# ---------------------------------------------------------------------------------------------- golden sets


def current_pin(state: State, config: Config | Any) -> GoldenPin | None:
    """The pin of the golden sets ``config`` makes, if they are the pinned ones."""
    pin = state.golden
    return pin if pin is not None and pin.key == golden_key(config) else None


def split_digests(data_dir: Path, split: str, memo: DigestMemo | None = None) -> dict[str, str] | None:
    """``{"tokens": "sha256:...", ...}`` of a split's array files as they are (None: a file is missing)."""
    from forge.ml.tokenize import ARRAY_NAMES

    found = {}
    for name in ARRAY_NAMES:
        path = data_dir / split / f"{name}.npy"
        if not path.is_file():
            return None
        # the train split is rebuilt every iteration (its replay window moves): a change there is routine
        found[name] = "sha256:" + (memo.sha256(path, rewritten=split == "train") if memo is not None
                                   else sha256_file(path))
    return found


def split_problem(data_dir: Path, split: str, want: dict[str, str] | None, memo: DigestMemo | None = None,
                  whose: str = "recorded") -> str | None:
    """Why the split's array files are not the ones ``want`` names, or None."""
    if not want:
        return None
    have = split_digests(data_dir, split, memo)
    if have is None:
        return f"{data_dir / split} is incomplete"
    for name, sha in want.items():
        if have.get(name) != sha:
            return f"{data_dir / split / (name + '.npy')} is not the {whose} one ({sha[7:19]}...)"
    return None


def series_pin(ws: Workspace, state: State) -> tuple[GoldenPin, str | None]:
    """The pin of the golden sets the iteration in progress is scored on, made (a first pin, or a new
    comparison series) where the configuration's golden sets are not the pinned ones; with a note for
    the user when it was."""
    cur = state.current
    assert cur is not None
    config = state.config_of(cur.iteration)
    key = golden_key(config)
    pin = state.golden
    note = None
    if pin is None or pin.key != key:
        series = pin.series + 1 if pin is not None else 1
        if pin is not None:
            note = (f"golden sets changed ({', '.join(GOLDEN_FIELDS)}): iteration {cur.iteration} starts comparison "
                    f"series {series}, compared only with iterations scored on the same sets")
        else:
            note = f"golden sets pinned (series {series}): every evaluation checks their digests"
        pin = state.golden = GoldenPin(key=key, series=series, since=cur.iteration)
    return pin, note


def pin_golden_shards(ws: Workspace, state: State, shards: dict[str, str]) -> str | None:
    """Pin the golden shards' sha256s from a generate result the loop just vouched for (``shards``: its
    outputs, workspace path -> sha256), or check them against the pin (IntegrityError)."""
    pin, note = series_pin(ws, state)
    cur = state.current
    assert cur is not None
    prefix = ws.rel(ws.golden(state.config_of(cur.iteration).data.hand_size)) + "/"
    found = {rel: sha for rel, sha in shards.items() if rel.startswith(prefix)}
    if not pin.shards:
        pin.shards = found
    for rel, sha in pin.shards.items():
        if found.get(rel) != sha:
            raise IntegrityError(f"golden shard {rel} is not the one pinned (sha256 {sha[:12]}...): the "
                                 "golden sets are fixed for this workspace's history; `retry` solves it again")
    return note


def pin_golden_splits(ws: Workspace, state: State, splits: dict[str, dict[str, str]]) -> str | None:
    """Pin the tokenized golden splits' checksums from a tokenize result the loop just vouched for
    (``splits``: its outputs, split -> array -> checksum), or check them against the pin (IntegrityError)."""
    pin, note = series_pin(ws, state)
    found = {s: splits.get(s) for s in GOLDEN_SPLITS}
    if not pin.splits and all(found.values()):
        pin.splits = dict(found)
    for split, sums in pin.splits.items():
        if found.get(split) != sums:
            raise IntegrityError(f"the tokenized golden {split} split is not the one pinned: the golden sets "
                                 "are fixed for this workspace's history; `retry` tokenizes it again")
    return note
