"""The headless flywheel: run iterations stage by stage until stopped, failed or done.

A stage runs only when its recorded result no longer matches its inputs (see
:mod:`forge.flywheel.stages.fingerprint`); every way a stage can end -- success, a failing cell, a dead
kernel, a full disk, Ctrl+C or SIGTERM -- leaves state.yaml saying what happened and what to do
next, and the next run resumes without hand-editing. Presentation is not the loop's business: a
caller that wants the archive's HTML passes ``on_notebook`` (each executed notebook archived) and
``on_record`` (an iteration recorded or failed). :func:`refusal` is the one rule for whether a loop
may start; :func:`start_in_background` starts one that outlives its caller (the dashboard's Start).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import ValidationError

from forge.commandline import FLYWHEEL
from forge.errors import ForgeError, describe_os_error, interruption
from forge.flywheel import by_hand, integrity, retention
from forge.flywheel.context import context
from forge.flywheel.history import seeds_counted
from forge.flywheel.lock import LOCK_FILE, FlywheelLock, Heartbeat, LockHeld, describe_holder, lock_is_held, pid_alive
from forge.flywheel.paths import STATE_FILE, Workspace
from forge.flywheel.records import Attempt, HistoryEntry
from forge.flywheel.runner import OnNotebook, StageFailed
from forge.flywheel.stage_runner import NotebookRunner, RunnerFactory, StageRunner
from forge.flywheel.stages import REGISTRY, Stage, later, stage_status
from forge.flywheel.stages import evaluate as evaluate_stage
from forge.flywheel.stages import generate as generate_stage
from forge.flywheel.stages import tokenize as tokenize_stage
from forge.flywheel.stages import train as train_stage
from forge.flywheel.state import (
    BrokenStateFile,
    State,
    StateStore,
    begin_iteration,
    ensure_reserve,
    finish_recording,
    load_state,
    now,
    plan_seeds,
)
from forge.flywheel.timekeeping import SPAN, TOTAL, Clock, fold_crash, span
from forge.ml.catalog import REFERENCE_FIVE
from forge.validation import first_problem

Say = Callable[[str], None]
OnRecord = Callable[[Path], None]
#: How long :func:`start_in_background` waits for the new loop to claim the workspace before returning.
START_WAIT_SECONDS = 20.0


class FlywheelError(ForgeError):
    """The loop cannot start or go on; the message says what to do."""


def stop_reason(state: State) -> str | None:
    """Why the configured stop condition is met, or None."""
    cfg = state.config
    if cfg.loop.stop_iterations is not None and len(state.history) >= cfg.loop.stop_iterations:
        return f"{len(state.history)} iteration(s) done (stop_iterations = {cfg.loop.stop_iterations})"
    if cfg.loop.stop_total_seeds is not None and state.total_seeds >= cfg.loop.stop_total_seeds:
        return f"{state.total_seeds} seeds trained (stop_total_seeds = {cfg.loop.stop_total_seeds})"
    if cfg.loop.stop_target_qgap is not None and state.history:
        gap = state.history[-1].metric("val", "q_gap")
        if gap is not None and gap <= cfg.loop.stop_target_qgap:
            return f"val Q-gap {gap:.3f} <= target {cfg.loop.stop_target_qgap}"
    return None


class IncompleteIteration(ForgeError):
    """The iteration's train or evaluate result is missing or unreadable, so it cannot be recorded."""


def _history_entry(ws: Workspace, state: State) -> HistoryEntry:
    """The iteration's record, from the results the loop vouched for (their digests), with the chain of
    weights checked: a result edited since its stage finished, or weights that are not the ones recorded,
    are never recorded (IncompleteIteration, IntegrityError); its timings are true over every run
    (forge.flywheel.timekeeping)."""
    cur = state.current
    assert cur is not None
    for name in REGISTRY:
        changed = integrity.changed_result(ws, cur, name)
        if changed or integrity.result_key(name) not in cur.digests:
            raise IncompleteIteration(f"{changed or f'the loop vouched for no {name} result'}: not recorded; "
                                      f"`{FLYWHEEL} retry` runs the {name} stage again")
    train = train_stage.STAGE.read(ws, cur.iteration)
    ev = evaluate_stage.STAGE.read(ws, cur.iteration)
    if train is None or ev is None:
        raise IncompleteIteration(f"the {'train' if train is None else 'evaluate'} result of iteration "
                                  f"{cur.iteration} is missing or unreadable")
    config = state.config_of(cur.iteration)
    weights = integrity.sha256_file(ws.root / train.outputs.checkpoint)
    if weights != train.outputs.sha256 or ev.checkpoint != train.checkpoint:
        raise IncompleteIteration(f"{train.outputs.checkpoint} is not the checkpoint the train stage recorded: "
                                  f"`{FLYWHEEL} retry` trains again")
    if train.started_from.startswith("iteration "):
        before = state.entry(int(train.started_from.split()[1]))
        start = ((train.inputs or {}).get("start") or {}).get("sha256")
        if before is None or start is None:
            raise IncompleteIteration(f"the train result of iteration {cur.iteration} says it started from "
                                      f"{train.started_from} but records no such weights' sha256")
        integrity.check_start(ws, before, ws.root / (train.resume or before.checkpoint or ""), start)
    fingerprints = {}
    for stage in REGISTRY.values():
        result = stage.read(ws, cur.iteration)
        if result is not None and result.fingerprint is not None:
            fingerprints[stage.name] = result.fingerprint
    finished = now()
    timings = {**cur.timings, TOTAL: round(cur.timings.get(TOTAL, 0.0) + sum(
        cur.timings.get(s, 0.0) for s in cur.by_hand), 2)}  # stages run by hand: work the loops' clocks did not see
    if (took := span(cur.started_at, finished)) is not None:
        timings[SPAN] = took
    return HistoryEntry(
        iteration=cur.iteration, seeds=cur.seeds, seed_range=cur.seed_range,
        total_seeds=seeds_counted(state.history, cur.seeds), config=config,
        checkpoint=train.checkpoint, started_from=train.started_from,
        val=ev.val, test=ev.test, playout=ev.playout, delta_prev=ev.delta_prev, delta_best=ev.delta_best,
        is_best=ev.is_best, flags=list(ev.flags), wandb=ev.wandb,
        notebooks=dict(cur.notebooks), by_hand=list(cur.by_hand), timings=timings,
        usage={k: dict(v) for k, v in cur.usage.items()},
        started_at=cur.started_at, finished_at=finished, fingerprints=fingerprints,
        provenance=dict(cur.provenance), attempts=list(cur.attempts),
        digests={**{k: v for k, v in cur.digests.items() if k.startswith("result.")},
                 integrity.CHECKPOINT: weights, integrity.GOLDEN: integrity.golden_key(config)},
    )


@dataclass(frozen=True)
class Refusal:
    """Why no loop may start on a workspace's state: what each front end words its own way."""

    kind: Literal["running", "failed", "crashed", "done"]
    iteration: int | None  # None for "running": the running loop's state is its own
    detail: str  # the lock's holder; the last error; the stage the dead loop was in; why the stop condition holds


def refusal(state: State) -> Refusal | None:
    """Whether a loop may start on ``state``, no loop holding the workspace (the lock says that):
    the one rule, for the loop itself and for the dashboard's Start."""
    if state.status == "failed":
        return Refusal("failed", state.iteration, str(state.last_error))
    if state.status == "running":  # no loop holds the workspace, so whoever set this is gone
        return Refusal("crashed", state.iteration, str(state.current.stage if state.current else None))
    if state.status == "done":
        return Refusal("done", state.iteration, stop_reason(state) or "stop condition met")
    return None


def _check_startable(state: State) -> None:
    refused = refusal(state)
    if refused is None or refused.kind == "done":
        return
    if refused.kind == "failed":
        raise FlywheelError(
            f"iteration {state.iteration} failed: {refused.detail}. Fix the cause, then `{FLYWHEEL} retry`"
        )
    raise FlywheelError(f"the previous loop crashed (iteration {state.iteration}, stage {refused.detail}); "
                        f"recover with `{FLYWHEEL} retry`")


def run_loop(
    root: str | Path = ".",
    once: bool = False,
    seeds: list[int] | None = None,
    no_wandb: bool = False,
    say: Say = print,
    on_record: OnRecord | None = None,
    config_updates: dict[str, Any] | None = None,
    on_notebook: OnNotebook | None = None,
    runner: RunnerFactory = NotebookRunner,
) -> int:
    """Run iterations until the stop condition, an error, a stop request, Ctrl+C or SIGTERM (or one
    with ``once``). ``on_record(root)`` is called whenever an iteration is recorded or fails, and
    ``on_notebook(path)`` for every executed stage notebook archived (a failed attempt's too);
    ``config_updates`` are written into state.yaml's config first (validated like any edit);
    ``runner`` makes what runs the stages (their notebooks, in one papermill kernel)."""
    ws = Workspace.at(root)
    with FlywheelLock(ws.root):
        ws.stop_file.unlink(missing_ok=True)  # a stop asked for while no loop ran is stale
        store = StateStore(ws.root)
        _check_startable(store.state)
        ensure_reserve(ws.root)
        sweep_leftovers(ws, older_than=600)  # what earlier loops' dead writers left behind
        sweep_state_temps(ws)
        retention.apply(ws.root, store.state, say)  # finishes a prune a kill interrupted
        if config_updates:
            with store.edit() as st:
                st.config = st.config.updated(config_updates)
        if store.state.status == "done":
            say(f"flywheel is done: {stop_reason(store.state) or 'stop condition met'}")
            return 0
        with runner(ws, no_wandb) as stages:
            return Loop(ws, store, stages, no_wandb, say, on_record, on_notebook).run(once, seeds)


class Loop:
    """One loop's hold on a workspace: its state store, its stage runner, its hooks, and the clock and
    heartbeat of the iteration under way, held once for every stage it runs."""

    def __init__(self, ws: Workspace, store: StateStore, runner: StageRunner, no_wandb: bool = False,
                 say: Say = print, on_record: OnRecord | None = None, on_notebook: OnNotebook | None = None):
        self.ws, self.store, self.runner, self.no_wandb = ws, store, runner, no_wandb
        self.say, self.on_record, self.on_notebook = say, on_record, on_notebook
        self.clock = Clock()
        self.heartbeat: Heartbeat | None = None

    def run(self, once: bool = False, seeds: list[int] | None = None) -> int:
        store = self.store
        # the next iteration's deals, solved while this one trains and evaluates (prefetch_next): joined
        # when the next iteration starts (or the loop ends), never waited for on Ctrl+C or a failure
        with contextlib.ExitStack() as ahead:
            while True:
                reason = stop_reason(store.state)
                if reason:
                    with store.edit() as st:
                        st.status = "done"
                        st.next_action = "raise the stop condition in state.yaml (config.stop_*) and set status: ready"
                    self.say(f"done: {reason}")
                    return 0
                code = self.iteration(seeds, ahead)
                seeds = None
                if code is not None:
                    return code
                if once:
                    return 0

    # ------------------------------------------------------------------------------------------ iteration

    def iteration(self, seeds: list[int] | None, ahead: contextlib.ExitStack) -> int | None:
        """One iteration; returns an exit code to stop the loop, None to go on. ``ahead`` holds the
        previous iteration's prefetch, joined before this one's first stage (its wait counts here)."""
        ws, store, say = self.ws, self.store, self.say
        self.clock = Clock()
        with store.edit() as st:
            if seeds and st.current is not None and st.current.seeds != seeds:
                raise FlywheelError(f"iteration {st.current.iteration} is already under way with seeds "
                                    f"{st.current.seeds}; finish it before asking for other seeds")
            cur = begin_iteration(st, seeds)
            st.next_action = f"wait: iteration {cur.iteration} is running"
        ahead.close()  # after the start is stamped: the wait is in the iteration's total and in its span
        say(f"iteration {cur.iteration}: seeds {cur.seeds[0]}..{cur.seeds[-1]} ({len(cur.seeds)} deals)")
        with Heartbeat(store, fields=lambda: self.clock.beat_fields()) as self.heartbeat:
            for stage in REGISTRY.values():
                if ws.stop_file.exists():
                    ws.stop_file.unlink()
                    with store.edit() as st:
                        self.clock.lap(st.current)
                        st.status, st.current.stage = "ready", None
                        st.next_action = (f"stopped on request; `{FLYWHEEL}` resumes iteration {cur.iteration} at "
                                          f"{stage.name}")
                    say(f"stopped on request before {stage.name}")
                    return 0
                if stage.prefetch_alongside and store.state.config.loop.prefetch_next:
                    ahead.enter_context(Prefetch(ws, store.state, say))
                if not self.stage(stage):
                    return 1
        self.heartbeat = None
        try:
            with store.edit() as st:
                self.clock.lap(st.current)
            entry = _history_entry(ws, store.state)
        except (ValidationError, IncompleteIteration, integrity.IntegrityError) as exc:  # e.g. a non-finite metric
            why = first_problem(exc) if isinstance(exc, ValidationError) else str(exc)
            self.fail(evaluate_stage.STAGE.name, f"result cannot be recorded: {why}")
            say(f"  evaluate  FAILED: {store.state.last_error}")
            return 1
        with store.edit() as st:
            st.history.append(entry)  # appended to history.jsonl before state.yaml counts it
            finish_recording(st, entry)
        if store.state.config.data.keep_shards == "golden":
            freed = release_shards(ws, store.state, entry.iteration)
            if freed:
                say(f"  deleted {freed} training shard(s) (tokenized; keep_shards: golden)")
        retention.apply(ws.root, store.state, say, entry.iteration)
        if self.on_record is not None:
            self.on_record(ws.root)
        _announce(entry, say)
        self._notices()
        return None

    # ------------------------------------------------------------------------------------------ a stage

    def stage(self, stage: Stage) -> bool:
        """Run one stage unless its result still holds; False if it failed (recorded in state.yaml)."""
        ws, store, say = self.ws, self.store, self.say
        cur = store.state.current
        assert cur is not None
        name = stage.name
        changed = integrity.changed_result(ws, cur, name)
        if changed and _redone_by_hand(ws, stage, cur.iteration):  # vouched for as the loop first sees it
            with store.edit() as st:
                st.current.digests.pop(integrity.result_key(name), None)
                st.current.notebooks.pop(name, None)  # archived again, as run by hand
        elif changed:  # edited after the loop vouched for it: never reused, never recorded
            with store.edit() as st:
                kept = integrity.set_aside(ws, st.current, name)
            say(f"  {name:9s} runs again: {changed}" + (f" (kept as {ws.rel(kept)})" if kept else ""))
        self._notices()
        ctx = context(ws.root, cur.iteration, no_wandb=self.no_wandb, progress=False, state=store.state)
        status = stage_status(ctx, stage)
        if status.done:
            return self._already_done(stage, status.fingerprint)
        if status.stale:
            say(f"  {name:9s} runs again: {'; '.join(status.reasons)}")
        with store.edit() as st:
            redo = later(name)
            st.current.stages_completed = [s for s in st.current.stages_completed if s not in redo]
            st.current.by_hand = [s for s in st.current.by_hand if s not in redo]  # the loop runs them now
            # its result is about to be replaced, vouched for again when it finishes (a later stage found
            # already done keeps its digest: its result must still be the one the loop recorded)
            st.current.digests.pop(integrity.result_key(name), None)
            st.current.stage = name
            self.clock.start(name)
        if self.heartbeat is not None:
            self.heartbeat.beat()  # the stage and its start, for the seconds a kill would cut short
        since = time.time()
        try:
            try:
                done = self.runner.run(stage, cur.iteration, len(cur.attempts) + 1, self.on_notebook)
            except BaseException:
                self.runner.stop()  # nothing may still be writing when the leftovers are swept
                sweep_leftovers(ws, since)  # a stage that died mid-write leaves no temp files behind
                raise
        except StageFailed as exc:
            self.fail(name, exc.summary, exc.notebook, exc.cell, exc.error)
            say(f"  {name:9s} FAILED: {exc.summary}" + (f"\n  see {ws.rel(exc.notebook)}" if exc.notebook else ""))
            return False
        except KeyboardInterrupt as exc:
            how = interruption(exc)
            with store.edit() as st:
                self.clock.stop(st.current)  # the stopped attempt's seconds count
                self.clock.lap(st.current)
                st.status, st.current.stage = "ready", None
                st.last_error = f"interrupted ({how}) during {name} of iteration {cur.iteration}"
                st.next_action = f"`{FLYWHEEL}` resumes iteration {cur.iteration} at {name}"
            raise
        except Exception as exc:
            summary = f"{type(exc).__name__}: {describe_os_error(exc) if isinstance(exc, OSError) else exc}"
            self.fail(name, summary, error=type(exc).__name__)
            raise
        result = stage.read(ws, cur.iteration)
        if not self._vouch(name, result, fresh=True):
            return False
        took = self._record(stage, result, result.fingerprint if result is not None else None, done.notebook,
                            ran=True)
        ran = store.state.current.provenance.get(name)
        mark = " (notebook modified: see its diff)" if ran is not None and ran.modified else ""
        say(f"  {name:9s} {took:7.1f}s  -> {ws.rel(done.notebook)}{mark}")
        return True

    def _already_done(self, stage: Stage, fingerprint: str) -> bool:
        """A stage whose result holds: archived if the loop has not archived this result (done by hand,
        or by a loop that stopped before recording it), vouched for and recorded."""
        cur = self.store.state.current
        assert cur is not None
        name = stage.name
        result = stage.read(self.ws, cur.iteration)
        archived = None
        # done by hand (or by a loop that stopped before recording it), or redone by hand since it was archived
        if result is not None and (name not in cur.notebooks or cur.fingerprints.get(name) != fingerprint):
            try:
                archived = self.runner.show(stage, cur.iteration, result, len(cur.attempts) + 1, self.on_notebook)
            except StageFailed as exc:
                self.fail(name, exc.summary, exc.notebook, exc.cell, exc.error)
                self.say(f"  {name:9s} FAILED to show its result: {exc.summary}")
                return False
        if not self._vouch(name, result, fresh=False):
            return False
        self._record(stage, result, fingerprint, archived.notebook if archived else None, ran=False, archived=archived)
        self.say(f"  {name:9s} already done" + (f" ({archived.how})" if archived is not None else ""))
        return True

    def _record(self, stage: Stage, result: Any, fingerprint: str | None, notebook: Path | None, ran: bool,
                archived: by_hand.Archived | None = None) -> float:
        """The one way a finished stage enters the iteration: completed, with its fingerprint, provenance
        and archived notebook; ``ran``: the loop just ran it (its seconds and usage counted, returned),
        else found done (``archived``: archived now, a run by hand counted as its result says)."""
        name, took = stage.name, 0.0
        with self.store.edit() as st:
            cur = st.current
            if name not in cur.stages_completed:
                cur.stages_completed.append(name)
            if fingerprint is not None:
                cur.fingerprints[name] = fingerprint
            if result is not None and result.provenance is not None:
                cur.provenance[name] = result.provenance
            if notebook is not None:
                cur.notebooks[name] = self.ws.rel(notebook)
            if ran:
                took = self.clock.stop(cur)  # summed over the stage's attempts
                self.clock.lap(cur)
                cur.stage = None
            elif archived is not None:
                if archived.by_hand and name not in cur.by_hand:
                    cur.by_hand.append(name)
                if result is not None and result.seconds is not None:
                    # by hand: the person's run (added to the total at the record); a loop stopped before
                    # recording it: its attempts were timed already, the result's own seconds are at most that
                    own = float(result.seconds)
                    cur.timings[name] = own if archived.by_hand else max(own, cur.timings.get(name, 0.0))
        return took

    def _vouch(self, name: str, result: Any, fresh: bool) -> bool:
        """Record the digest of a finished stage's result (``fresh``: the loop just ran it; else kept if the
        loop recorded one already: a result changed since was set aside before the stage), and pin or check
        the golden sets it made; False if they are not the pinned ones (recorded as the stage's failure)."""
        try:
            with self.store.edit() as st:
                if fresh or integrity.result_key(name) not in st.current.digests:
                    integrity.record_result(self.ws, st.current, name)
                pin = REGISTRY[name].pin_golden
                note = pin(self.ws, st, result) if pin is not None and result else None
        except integrity.IntegrityError as exc:
            self.fail(name, str(exc))
            self.say(f"  {name:9s} FAILED: {exc}")
            return False
        if note:
            self.say(f"  note: {note}")
        return True

    def fail(self, stage: str, summary: str, notebook: Path | None = None, cell: int | None = None,
             error: str | None = None) -> None:
        """Record a failed stage: status, last_error (stage and cause), the attempt, what to do next.
        ``error``: the name of the exception the stage raised, if it raised one."""
        if error == BrokenStateFile.__name__:
            # the stage found state.yaml broken and was told to restore the backup; the loop, which holds the
            # state, has written a good state.yaml since (its store writes back over an invalid file)
            summary = (f"{BrokenStateFile.problem_of(summary)}; the loop has written state.yaml again since (from "
                       f"its own copy), so `{FLYWHEEL} retry` goes on")
        ws = self.ws
        with self.store.edit() as st:
            cur = st.current
            assert cur is not None
            self.clock.stop(cur)  # the failed attempt's seconds count
            self.clock.lap(cur)
            st.status = "failed"
            st.last_error = f"{stage}: {summary}"
            cur.attempts.append(Attempt(number=len(cur.attempts) + 1, stage=stage, error=summary, at=now(), cell=cell,
                                        notebook=ws.rel(notebook) if notebook else None))
            where = f"read {ws.rel(notebook)}" + (f" (cell {cell})" if cell else "") + ", " if notebook else ""
            st.next_action = f"{where}fix the cause, then `{FLYWHEEL} retry` (finished stages are kept)"
        if self.on_record is not None:
            self.on_record(ws.root)

    def _notices(self) -> None:
        for note in self.store.take_notices():
            self.say(f"  note: {note}")


def _redone_by_hand(ws: Workspace, stage: Stage, iteration: int) -> bool:
    """A result that changed since the loop vouched for it because a person ran the stage's notebook
    again (its result says so): taken, as any result run by hand, on its word (docs/records.md)."""
    result = stage.read(ws, iteration)
    return result is not None and result.ran_by == "hand"


_PID_TEMP = re.compile(r"^\..+\.(tmp|old)-(\d+)$")  # the token store's split folders being written
_ATOMIC_TEMP = re.compile(r"^\..+\.tmp$")  # forge.atomic's temp files


def sweep_leftovers(ws: Workspace, since: float | None = None, older_than: float | None = None) -> list[Path]:
    """Remove temp files a writer that died mid-write left behind (a killed kernel, a full disk).

    Only under the workspace's data/, runs/ and archive/, and only what cannot belong to a live
    writer: a token-store folder whose writer's pid is gone, or an atomic-write temp file made
    ``since`` a stage started (the loop holds the workspace and its kernel has stopped) or last
    touched more than ``older_than`` seconds ago (at a loop's start).
    """
    now = time.time()
    removed = []
    for top in ("data", "runs", "archive"):
        for path in (ws.root / top).rglob(".*"):
            name = path.name
            m = _PID_TEMP.match(name)
            atomic = _ATOMIC_TEMP.match(name) is not None and path.is_file()
            mtime = path.stat().st_mtime if atomic else 0.0
            stale = (m is not None and not pid_alive(int(m.group(2)))) or (atomic and (
                (since is not None and mtime >= since) or (older_than is not None and now - mtime > older_than)))
            if stale:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
    return removed


#: Temp files of state.yaml's atomic writes (forge.atomic: ``.<name>.<random>.tmp``) and of its backups.
_STATE_TEMP = re.compile(rf"^\.{re.escape(STATE_FILE)}(\..+)?\.[^.]+\.tmp$")


def sweep_state_temps(ws: Workspace, older_than: float = 60.0) -> list[Path]:
    """Remove temp copies of state.yaml a killed writer left in the workspace (called holding the lock;
    ``older_than`` spares one that a command outside the lock, a W&B sync, is writing right now)."""
    removed = []
    for path in ws.root.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if _STATE_TEMP.match(path.name) and time.time() - path.stat().st_mtime > older_than:
                path.unlink()
                removed.append(path)
    return removed



class Prefetch:
    """Solve the next iteration's new deals in the background while this one trains and evaluates
    (prefetch_next), and tokenize them into the token cache at the configured sampling.

    The shards land where the next generate stage looks and verify there, so it keeps them instead
    of solving again, and the next tokenize stage finds their states cached. Deals go to the
    configured executor: a Ray cluster's workers, or, locally, a thread of the loop process solving
    one deal at a time on one numba thread (training keeps the other cores). A failure here only
    costs the head start; an interrupted prefetch leaves at most a hidden temp file, swept at the
    loop's next start.
    """

    def __init__(self, ws: Workspace, state: State, say: Say):
        cfg, cur = state.config, state.current
        assert cur is not None
        self.seeds = plan_seeds(cfg, max(state.next_seed, max(cur.seeds) + 1))
        # what the next iteration's stages will read: its generate stage's solving, its tokenize stage's sampling
        self.solve, self.tokens = generate_stage.STAGE.view(cfg), tokenize_stage.STAGE.view(cfg)
        self.ws, self.say = ws, say
        self.thread = threading.Thread(target=self._run, name="flywheel-prefetch", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from forge.oracle.deal import train_decl
        from forge.oracle.generate import generate

        cfg = self.solve
        try:
            jobs = [(s, train_decl(s)) for s in self.seeds]
            local = cfg.hardware.executor == "local"
            if local:
                import numba

                numba.set_num_threads(1)  # per thread: the loop's other numba users keep theirs
            hand, where = cfg.data.hand_size, cfg.hardware
            for solved in generate(jobs, self.ws.shards(hand), hand, workers=1 if local else None, progress=False,
                                   executor=where.executor, ray_address=where.ray_address):
                tokenize_stage.cache_ahead(self.ws, self.tokens, solved.path)
        except Exception as exc:  # noqa: BLE001 - the next generate stage solves them itself
            self.error = exc

    def __enter__(self) -> Prefetch:
        self.thread.start()
        self.say(f"  prefetch  solving the next iteration's deals {self.seeds[0]}..{self.seeds[-1]} in the background")
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is not None:
            return  # Ctrl+C, SIGTERM, a failure: do not wait; the daemon thread ends with the process
        self.thread.join()
        if self.error is not None:
            self.say(f"  prefetch  did not finish ({type(self.error).__name__}: {self.error}); the next iteration "
                     "solves those deals itself")


def release_shards(ws: Workspace, state: State, iteration: int) -> int:
    """Delete the training shards an iteration used (its own and any of its window solved again),
    once it is recorded.

    Their tokens stay in the cache, keyed by content; a later iteration whose window holds them reads
    them there by the digests this iteration recorded (and solves a deal again, byte-identical, only
    if its states are not cached at the sampling it asks for).
    """
    ctx = context(ws.root, iteration, state=state)
    freed = 0
    for seed in ctx.seeds + ctx.replay_seeds():
        path = ctx.shard(seed)
        if path.is_file():
            path.unlink()
            freed += 1
    return freed


def _announce(entry: HistoryEntry, say: Say) -> None:
    val = entry.val or {}
    parts = [f"{k} {val[k]:.4f}" for k in ("accuracy", *REFERENCE_FIVE) if k in val]
    say(f"iteration {entry.iteration} done: val {', '.join(parts) or 'n/a'}")
    if entry.is_best:
        say(f"  new best: {entry.checkpoint}")
    for flag in entry.flags:
        say(f"  worse than the best: {flag}")


def retry(root: str | Path = ".") -> str:
    """failed (or crashed) -> ready, keeping the iteration's finished stages."""
    ws = Workspace.at(root)
    try:
        with FlywheelLock(ws.root):
            sweep_state_temps(ws)
            store = StateStore(ws.root)
            with store.edit() as st:
                if st.status not in ("failed", "running"):
                    raise FlywheelError(f"nothing to retry: status is {st.status}")
                done = st.current.stages_completed if st.current else []
                if st.status == "running":  # a killed loop: count the seconds it spent since its last lap
                    fold_crash(ws.root, st.current)
                st.status, st.last_error = "ready", None
                if st.current is not None:
                    st.current.stage = None
                st.next_action = f"`{FLYWHEEL}` resumes iteration {st.iteration} (done: {', '.join(done) or 'nothing'})"
                return st.next_action
    except LockHeld as exc:
        raise FlywheelError(f"cannot retry while a loop runs: {exc}") from None


def request_stop(root: str | Path = ".") -> str:
    """Ask the running loop to stop before its next stage (the stage under way finishes first).

    Refused when no loop runs: a stop file left behind would otherwise stop the next loop at once.
    """
    ws = Workspace.at(root)
    if not lock_is_held(ws.root):
        raise FlywheelError("no flywheel loop is running here; nothing to stop")
    ws.stop_file.touch()
    return f"asked the loop to stop after its current stage ({ws.stop_file})"



@dataclass(frozen=True)
class Started:
    """A loop started by :func:`start_in_background`."""

    iteration: int
    pid: int
    log: Path  # runs/loop-<UTC time>.log: what it prints
    claimed: bool  # it holds the iteration in state.yaml (False: not yet, after the wait)
    exit_code: int | None = None  # it exited at once (a mistake it reported in the log)


def start_in_background(root: str | os.PathLike, runner: ModuleType, env: dict[str, str] | None = None,
                        wait: float = START_WAIT_SECONDS) -> Started | Refusal:
    """Start one iteration in a detached loop: ``runner`` (a module whose ``python -m`` runs
    :func:`run_loop` once, with its caller's hooks) in a session of its own, so that it outlives the
    process that started it; its output goes to ``runs/loop-<UTC time>.log``.

    Returns a :class:`Refusal` if a loop runs already or the state allows none (:func:`refusal`),
    else, once the loop has claimed the iteration in state.yaml (or exited, or ``wait`` seconds
    passed), what was started. A state.yaml that does not load raises StateError.
    """
    ws = Workspace.at(root)
    if lock_is_held(ws.root):
        return Refusal("running", None, describe_holder(ws.root / LOCK_FILE))
    state = load_state(ws.root)
    refused = refusal(state)
    if refused is not None:
        return refused
    # No loop holds the lock, so a stop file is a leftover that would stop the new loop at once.
    ws.stop_file.unlink(missing_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    log = ws.root / "runs" / f"loop-{stamp}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", runner.__spec__.name, "--root", str(ws.root)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ws.root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    # Watch state.yaml rather than probing the lock: a probe taken just as the child asks for the
    # lock would make the child fail with "another loop is running".
    deadline = time.monotonic() + wait
    claimed = False
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return Started(state.iteration, proc.pid, log, False, code)
        try:
            now_ = load_state(ws.root)
        except ForgeError:
            now_ = None
        if now_ is not None and now_.current is not None and now_.current.pid == proc.pid:
            claimed = True
            break
        time.sleep(0.1)
    threading.Thread(target=proc.wait, name="forge-loop-reaper", daemon=True).start()  # no zombie left behind
    return Started(state.iteration, proc.pid, log, claimed)
