"""The headless flywheel: run iterations stage by stage until stopped, failed or done.

A stage runs only when its recorded result no longer matches its inputs (see
:mod:`forge.flywheel.fingerprint`); every way a stage can end -- success, a failing cell, a dead
kernel, a full disk, Ctrl+C or SIGTERM -- leaves state.yaml saying what happened and what to do
next, and the next run resumes without hand-editing. Presentation is not the loop's business: a
caller that wants the archive index refreshed passes ``on_record``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forge.errors import ForgeError, describe_os_error, interruption
from forge.flywheel import by_hand
from forge.flywheel.config import config_from_dict
from forge.flywheel.context import context
from forge.flywheel.fingerprint import read_result, stage_status
from forge.flywheel.lock import FlywheelLock, Heartbeat, LockHeld, lock_is_held, pid_alive
from forge.flywheel.paths import Workspace
from forge.flywheel.records import STAGES, Attempt, HistoryEntry, Provenance, describe_error
from forge.flywheel.runner import LoopKernel, StageFailed, execute_stage
from forge.flywheel.state import RUN, State, StateStore, begin_iteration, ensure_reserve, now, plan_seeds

Say = Callable[[str], None]
OnRecord = Callable[[Path], None]


class FlywheelError(ForgeError):
    """The loop cannot start or go on; the message says what to do."""


def stop_reason(state: State) -> str | None:
    """Why the configured stop condition is met, or None."""
    cfg = state.config
    if cfg.stop_iterations is not None and len(state.history) >= cfg.stop_iterations:
        return f"{len(state.history)} iteration(s) done (stop_iterations = {cfg.stop_iterations})"
    if cfg.stop_total_seeds is not None and state.total_seeds >= cfg.stop_total_seeds:
        return f"{state.total_seeds} seeds trained (stop_total_seeds = {cfg.stop_total_seeds})"
    if cfg.stop_target_qgap is not None and state.history:
        gap = state.history[-1].metric("val", "q_gap")
        if gap is not None and gap <= cfg.stop_target_qgap:
            return f"val Q-gap {gap:.3f} <= target {cfg.stop_target_qgap}"
    return None


def _history_entry(ws: Workspace, state: State, seconds: float) -> HistoryEntry:
    cur = state.current
    assert cur is not None
    results = {stage: read_result(ws, cur.iteration, stage) or {} for stage in STAGES}
    train, ev = results["train"], results["evaluate"]
    return HistoryEntry(
        iteration=cur.iteration, seeds=cur.seeds, seed_range=cur.seed_range,
        total_seeds=state.total_seeds + len(cur.seeds), config=state.config,
        checkpoint=train.get("checkpoint"), started_from=train.get("started_from"),
        val=ev.get("val"), test=ev.get("test"), playout=ev.get("playout"),
        delta_prev=ev.get("delta_prev") or {}, delta_best=ev.get("delta_best") or {},
        is_best=bool(ev.get("is_best", False)), flags=list(ev.get("flags") or []), wandb=ev.get("wandb"),
        # the total counts the work of stages run by hand, which the loop's own clock did not see
        notebooks=dict(cur.notebooks), by_hand=list(cur.by_hand), timings={**cur.timings, "total": round(
            seconds + sum(cur.timings.get(s, 0.0) for s in cur.by_hand), 2)},
        started_at=cur.started_at, finished_at=now(),
        fingerprints={s: r["fingerprint"] for s, r in results.items() if "fingerprint" in r},
        provenance=dict(cur.provenance), attempts=list(cur.attempts),
    )


def _check_startable(state: State) -> None:
    if state.status == "failed":
        raise FlywheelError(
            f"iteration {state.iteration} failed: {state.last_error}. Fix the cause, then `{RUN} retry`"
        )
    if state.status == "running":  # we hold the lock, so whoever set this is gone
        stage = state.current.stage if state.current else None
        raise FlywheelError(
            f"the previous loop crashed (iteration {state.iteration}, stage {stage}); recover with `{RUN} retry`"
        )


def run_loop(
    root: str | Path = ".",
    once: bool = False,
    seeds: list[int] | None = None,
    no_wandb: bool = False,
    say: Say = print,
    on_record: OnRecord | None = None,
    config_updates: dict[str, Any] | None = None,
) -> int:
    """Run iterations until the stop condition, an error, a stop request, Ctrl+C or SIGTERM (or one
    with ``once``). ``on_record(root)`` is called whenever an iteration is recorded or fails;
    ``config_updates`` are written into state.yaml's config first (validated like any edit)."""
    ws = Workspace.at(root)
    with FlywheelLock(ws.root):
        ws.stop_file.unlink(missing_ok=True)  # a stop asked for while no loop ran is stale
        store = StateStore(ws.root)
        _check_startable(store.state)
        ensure_reserve(ws.root)
        sweep_leftovers(ws, older_than=600)  # what earlier loops' dead writers left behind
        if config_updates:
            with store.edit() as st:
                st.config = config_from_dict({**st.config.to_dict(), **config_updates})
        if store.state.status == "done":
            say(f"flywheel is done: {stop_reason(store.state) or 'stop condition met'}")
            return 0
        with LoopKernel(ws) as kernel:
            while True:
                reason = stop_reason(store.state)
                if reason:
                    with store.edit() as st:
                        st.status = "done"
                        st.next_action = "raise the stop condition in state.yaml (config.stop_*) and set status: ready"
                    say(f"done: {reason}")
                    return 0
                code = _run_iteration(ws, store, kernel, seeds, no_wandb, say, on_record)
                seeds = None
                if code is not None:
                    return code
                if once:
                    return 0


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


def _fail(ws: Workspace, store: StateStore, stage: str, summary: str, on_record: OnRecord | None,
          notebook: Path | None = None, cell: int | None = None) -> None:
    """Record a failed stage: status, last_error (stage and cause), the attempt, what to do next."""
    with store.edit() as st:
        cur = st.current
        assert cur is not None
        st.status = "failed"
        st.last_error = f"{stage}: {summary}"
        cur.attempts.append(Attempt(number=len(cur.attempts) + 1, stage=stage, error=summary, at=now(), cell=cell,
                                    notebook=ws.rel(notebook) if notebook else None))
        where = f"read {ws.rel(notebook)}" + (f" (cell {cell})" if cell else "") + ", " if notebook else ""
        st.next_action = f"{where}fix the cause, then `{RUN} retry` (finished stages are kept)"
    if on_record is not None:
        on_record(ws.root)


def _run_stage(ws: Workspace, store: StateStore, kernel: LoopKernel, stage: str, no_wandb: bool, say: Say,
               on_record: OnRecord | None) -> bool:
    """Run one stage unless its result still holds; False if it failed (recorded in state.yaml)."""
    cur = store.state.current
    assert cur is not None
    ctx = context(ws.root, cur.iteration, no_wandb=no_wandb, progress=False, state=store.state)
    status = stage_status(ctx, stage)
    if status.done:
        result = read_result(ws, cur.iteration, stage) or {}
        archived = None
        # done by hand (or by a loop that stopped before recording it), or redone by hand since it was archived
        if stage not in cur.notebooks or cur.fingerprints.get(stage) != status.fingerprint:
            try:
                archived = by_hand.archive(ws, stage=stage, iteration=cur.iteration, result=result, kernel=kernel,
                                           no_wandb=no_wandb, attempt=len(cur.attempts) + 1)
            except StageFailed as exc:
                _fail(ws, store, stage, exc.summary, on_record, exc.notebook, exc.cell)
                say(f"  {stage:9s} FAILED to show its result: {exc.summary}")
                return False
        with store.edit() as st:
            if stage not in st.current.stages_completed:
                st.current.stages_completed.append(stage)
            st.current.fingerprints[stage] = status.fingerprint
            if result.get("provenance"):
                st.current.provenance[stage] = Provenance(**result["provenance"])
            if archived is not None:
                st.current.notebooks[stage] = ws.rel(archived.notebook)
                if archived.by_hand and stage not in st.current.by_hand:
                    st.current.by_hand.append(stage)
                if isinstance(result.get("seconds"), (int, float)):
                    st.current.timings[stage] = float(result["seconds"])
        say(f"  {stage:9s} already done" + (f" ({archived.how})" if archived is not None else ""))
        return True
    if status.stale:
        say(f"  {stage:9s} runs again: {'; '.join(status.reasons)}")
    with store.edit() as st:
        later = STAGES[STAGES.index(stage):]
        st.current.stages_completed = [s for s in st.current.stages_completed if s not in later]
        st.current.by_hand = [s for s in st.current.by_hand if s not in later]  # the loop runs them now
        st.current.stage = stage
    t0, since = time.perf_counter(), time.time()
    try:
        try:
            done = execute_stage(ws, stage, cur.iteration, kernel, no_wandb, attempt=len(cur.attempts) + 1)
        except BaseException:
            kernel.stop()  # nothing may still be writing when the leftovers are swept
            sweep_leftovers(ws, since)  # a stage that died mid-write leaves no temp files behind
            raise
    except StageFailed as exc:
        _fail(ws, store, stage, exc.summary, on_record, exc.notebook, exc.cell)
        say(f"  {stage:9s} FAILED: {exc.summary}" + (f"\n  see {ws.rel(exc.notebook)}" if exc.notebook else ""))
        return False
    except KeyboardInterrupt as exc:
        how = interruption(exc)
        with store.edit() as st:
            st.status, st.current.stage = "ready", None
            st.last_error = f"interrupted ({how}) during {stage} of iteration {cur.iteration}"
            st.next_action = f"`{RUN}` resumes iteration {cur.iteration} at {stage}"
        raise
    except Exception as exc:
        summary = f"{type(exc).__name__}: {describe_os_error(exc) if isinstance(exc, OSError) else exc}"
        _fail(ws, store, stage, summary, on_record)
        raise
    took = round(time.perf_counter() - t0, 2)
    result = read_result(ws, cur.iteration, stage) or {}
    with store.edit() as st:
        st.current.stages_completed.append(stage)
        st.current.timings[stage] = took
        st.current.notebooks[stage] = ws.rel(done.notebook)
        if "fingerprint" in result:
            st.current.fingerprints[stage] = result["fingerprint"]
        if result.get("provenance"):
            st.current.provenance[stage] = Provenance(**result["provenance"])
        st.current.stage = None
    ran = store.state.current.provenance.get(stage)
    mark = " (notebook modified: see its diff)" if ran is not None and ran.modified else ""
    say(f"  {stage:9s} {took:7.1f}s  -> {ws.rel(done.notebook)}{mark}")
    return True


def _run_iteration(ws: Workspace, store: StateStore, kernel: LoopKernel, seeds: list[int] | None, no_wandb: bool,
                   say: Say, on_record: OnRecord | None) -> int | None:
    """One iteration; returns an exit code to stop the loop, None to go on."""
    with store.edit() as st:
        if seeds and st.current is not None and st.current.seeds != seeds:
            raise FlywheelError(f"iteration {st.current.iteration} is already under way with seeds "
                                f"{st.current.seeds}; finish it before asking for other seeds")
        cur = begin_iteration(st, seeds)
        st.next_action = f"wait: iteration {cur.iteration} is running"
    say(f"iteration {cur.iteration}: seeds {cur.seeds[0]}..{cur.seeds[-1]} ({len(cur.seeds)} deals)")
    start = time.perf_counter()
    with Heartbeat(store), contextlib.ExitStack() as background:
        for stage in STAGES:
            if ws.stop_file.exists():
                ws.stop_file.unlink()
                with store.edit() as st:
                    st.status, st.current.stage = "ready", None
                    st.next_action = f"stopped on request; `{RUN}` resumes iteration {cur.iteration} at {stage}"
                say(f"stopped on request before {stage}")
                return 0
            if stage == "train" and store.state.config.prefetch_next:
                background.enter_context(Prefetch(ws, store.state, say))
            if not _run_stage(ws, store, kernel, stage, no_wandb, say, on_record):
                return 1
    try:
        entry = _history_entry(ws, store.state, time.perf_counter() - start)
    except ValidationError as exc:  # e.g. a non-finite metric: never recorded
        _fail(ws, store, "evaluate", f"result cannot be recorded: {describe_error(exc)}", on_record)
        say(f"  evaluate  FAILED: {store.state.last_error}")
        return 1
    with store.edit() as st:
        st.history.append(entry)
        if (entry.wandb or {}).get("report"):
            st.wandb["report"] = entry.wandb["report"]
        st.next_seed = max(st.next_seed, max(entry.seeds) + 1)
        st.current, st.status, st.last_error = None, "ready", None
        upcoming = plan_seeds(st.config, st.next_seed)
        st.next_action = f"`{RUN}` runs iteration {entry.iteration + 1} (seeds {upcoming[0]}..{upcoming[-1]})"
    if store.state.config.keep_shards == "golden":
        freed = release_shards(ws, store.state, entry.iteration)
        if freed:
            say(f"  deleted {freed} training shard(s) (tokenized; keep_shards: golden)")
    if on_record is not None:
        on_record(ws.root)
    _announce(entry, say)
    return None


class Prefetch:
    """Solve the next iteration's new deals in the background while this one trains (prefetch_next).

    The shards land where the next generate stage looks and verify there, so it keeps them instead
    of solving again. Deals go to the configured executor: a Ray cluster's workers, or, locally, a
    thread of the loop process solving one deal at a time on one numba thread (training keeps the
    other cores). A failure here only costs the head start; an interrupted prefetch leaves at most
    a hidden temp file, swept at the loop's next start.
    """

    def __init__(self, ws: Workspace, state: State, say: Say):
        cfg, cur = state.config, state.current
        assert cur is not None
        self.seeds = plan_seeds(cfg, max(state.next_seed, max(cur.seeds) + 1))
        self.out, self.cfg, self.say = ws.shards(cfg.hand_size), cfg, say
        self.thread = threading.Thread(target=self._run, name="flywheel-prefetch", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from forge.oracle.deal import train_decl
        from forge.oracle.generate import generate

        try:
            jobs = [(s, train_decl(s)) for s in self.seeds]
            local = self.cfg.executor == "local"
            if local:
                import numba

                numba.set_num_threads(1)  # per thread: the loop's other numba users keep theirs
            for _ in generate(jobs, self.out, self.cfg.hand_size, workers=1 if local else None, progress=False,
                              executor=self.cfg.executor, ray_address=self.cfg.ray_address):
                pass
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
    """Delete the training shards an iteration used (its own and its replay), once it is recorded.

    Their tokens stay in the cache, keyed by content; a later iteration that replays them
    regenerates the same bytes from the seed (same digests, so the cache answers).
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
    parts = [f"{k} {val[k]:.4f}" for k in ("accuracy", "q_gap", "blunder_rate") if k in val]
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
            store = StateStore(ws.root)
            with store.edit() as st:
                if st.status not in ("failed", "running"):
                    raise FlywheelError(f"nothing to retry: status is {st.status}")
                done = st.current.stages_completed if st.current else []
                st.status, st.last_error = "ready", None
                if st.current is not None:
                    st.current.stage = None
                st.next_action = f"`{RUN}` resumes iteration {st.iteration} (done: {', '.join(done) or 'nothing'})"
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


def history_dicts(state: State) -> list[dict[str, Any]]:
    """The history as plain data (for JSON, plots and templates)."""
    return [h.to_dict() for h in state.history]
