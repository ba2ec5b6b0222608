"""The headless flywheel: run iterations stage by stage until stopped, failed or done."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from forge.errors import ForgeError
from forge.flywheel.lock import FlywheelLock, Heartbeat
from forge.flywheel.paths import Workspace
from forge.flywheel.runner import IterationKernel, StageFailed, execute_stage
from forge.flywheel.stages import read_result
from forge.flywheel.state import STAGES, State, StateStore, begin_iteration, now, plan_seeds

RUN = "python -m forge.cli.flywheel"


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
        gap = (state.history[-1].get("val") or {}).get("q_gap")
        if gap is not None and gap <= cfg.stop_target_qgap:
            return f"val Q-gap {gap:.3f} <= target {cfg.stop_target_qgap}"
    return None


def _history_entry(ws: Workspace, state: State, seconds: float) -> dict[str, Any]:
    cur = state.current
    assert cur is not None
    results = {stage: read_result(ws, cur.iteration, stage) or {} for stage in STAGES}
    train, ev = results["train"], results["evaluate"]
    return {
        "iteration": cur.iteration,
        "seeds": cur.seeds,
        "seed_range": cur.seed_range,
        "total_seeds": state.total_seeds + len(cur.seeds),
        "checkpoint": train.get("checkpoint"),
        "started_from": train.get("started_from"),
        "val": ev.get("val"),
        "test": ev.get("test"),
        "playout": ev.get("playout"),
        "delta_prev": ev.get("delta_prev"),
        "delta_best": ev.get("delta_best"),
        "is_best": ev.get("is_best", False),
        "wandb": ev.get("wandb"),
        "notebooks": dict(cur.notebooks),
        "timings": {**cur.timings, "total": round(seconds, 2)},
        "started_at": cur.started_at,
        "finished_at": now(),
    }


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
    root: str = ".",
    once: bool = False,
    seeds: list[int] | None = None,
    no_wandb: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Run iterations until the stop condition, an error, a stop request or Ctrl+C (or one with ``once``)."""
    ws = Workspace.at(root)
    with FlywheelLock(ws.root):
        ws.stop_file.unlink(missing_ok=True)  # a stop asked for while no loop ran is stale
        store = StateStore(ws.root)
        _check_startable(store.state)
        if store.state.status == "done":
            say(f"flywheel is done: {stop_reason(store.state) or 'stop condition met'}")
            return 0
        while True:
            reason = stop_reason(store.state)
            if reason:
                with store.edit() as st:
                    st.status = "done"
                    st.next_action = "raise the stop condition in state.yaml (config.stop_*) and set status: ready"
                say(f"done: {reason}")
                return 0
            code = _run_iteration(ws, store, seeds, no_wandb, say)
            seeds = None
            if code is not None:
                return code
            if once:
                return 0


def _run_iteration(ws: Workspace, store: StateStore, seeds: list[int] | None, no_wandb: bool,
                   say: Callable[[str], None]) -> int | None:
    """One iteration; returns an exit code to stop the loop, None to go on."""
    with store.edit() as st:
        if seeds and st.current is not None and st.current.seeds != seeds:
            raise FlywheelError(f"iteration {st.current.iteration} is already under way with seeds "
                                f"{st.current.seeds}; finish it before asking for other seeds")
        cur = begin_iteration(st, seeds)
        st.next_action = f"wait: iteration {cur.iteration} is running"
    say(f"iteration {cur.iteration}: seeds {cur.seeds[0]}..{cur.seeds[-1]} ({len(cur.seeds)} deals)")
    start = time.perf_counter()
    with Heartbeat(store), IterationKernel(ws, cur.iteration) as kernel:
        for stage in STAGES:
            if stage in cur.stages_completed:
                say(f"  {stage:9s} already done")
                continue
            if ws.stop_file.exists():
                ws.stop_file.unlink()
                with store.edit() as st:
                    st.status, st.current.stage = "ready", None
                    st.next_action = f"stopped on request; `{RUN}` resumes iteration {cur.iteration} at {stage}"
                say(f"stopped on request before {stage}")
                return 0
            with store.edit() as st:
                st.current.stage = stage
            t0 = time.perf_counter()
            try:
                done = execute_stage(ws, stage, cur.iteration, no_wandb, kernel)
            except StageFailed as exc:
                with store.edit() as st:
                    st.status = "failed"
                    st.last_error = f"{stage}: {exc.summary}"
                    st.current.notebooks[stage] = ws.rel(exc.notebook)
                    st.next_action = (f"read {ws.rel(exc.notebook)}, fix the cause, "
                                      f"then `{RUN} retry` (finished stages are kept)")
                _index(ws)
                say(f"  {stage:9s} FAILED: {exc.summary}\n  see {exc.notebook}")
                return 1
            except KeyboardInterrupt:
                with store.edit() as st:
                    st.status, st.current.stage = "ready", None
                    st.last_error = f"interrupted (Ctrl+C) during {stage} of iteration {cur.iteration}"
                    st.next_action = f"`{RUN}` resumes iteration {cur.iteration} at {stage}"
                raise
            took = round(time.perf_counter() - t0, 2)
            with store.edit() as st:
                st.current.stages_completed.append(stage)
                st.current.timings[stage] = took
                st.current.notebooks[stage] = ws.rel(done.notebook)
                st.current.stage = None
            say(f"  {stage:9s} {took:7.1f}s  -> {ws.rel(done.notebook)}")
    with store.edit() as st:
        entry = _history_entry(ws, st, time.perf_counter() - start)
        st.history.append(entry)
        if (entry.get("wandb") or {}).get("report"):
            st.wandb["report"] = entry["wandb"]["report"]
        st.next_seed = max(st.next_seed, max(entry["seeds"]) + 1)
        st.current, st.status, st.last_error = None, "ready", None
        upcoming = plan_seeds(st.config, st.next_seed)
        st.next_action = f"`{RUN}` runs iteration {entry['iteration'] + 1} (seeds {upcoming[0]}..{upcoming[-1]})"
    _index(ws)
    _announce(entry, say)
    return None


def _index(ws: Workspace) -> None:
    from forge.flywheel.archive import write_index

    write_index(ws.root)


def _announce(entry: dict[str, Any], say: Callable[[str], None]) -> None:
    val = entry.get("val") or {}
    parts = [f"{k} {val[k]:.4f}" for k in ("accuracy", "q_gap", "blunder_rate") if isinstance(val.get(k), float)]
    say(f"iteration {entry['iteration']} done: val {', '.join(parts) or 'n/a'}")
    if entry.get("is_best"):
        say(f"  new best: {entry.get('checkpoint')}")


def retry(root: str = ".") -> str:
    """failed (or crashed) -> ready, keeping the iteration's finished stages."""
    from forge.flywheel.lock import LockHeld

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

