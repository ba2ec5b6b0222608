"""The flywheel command's ``sync``: upload offline W&B runs and record their URLs.

Runs are logged offline by default (no network needed); this uploads the ones not yet synced
once a key and a connection exist, stores each run's URL in state.yaml's history, and creates
or refreshes a report for the group through W&B's reports API (package ``wandb-workspaces``,
optional: without it the sync still works and says so).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from forge.atomic import atomic_write_text
from forge.errors import ForgeError
from forge.flywheel.lock import FlywheelLock, LockHeld
from forge.flywheel.paths import Workspace
from forge.flywheel.records import TRACKED, HistoryEntry, metric_label
from forge.flywheel.state import StateStore, load_state

SYNC_TIMEOUT_S = 300
CONNECT_TIMEOUT_S = 5.0
_URL = re.compile(r"https?://\S+/runs/\S+")


class SyncError(ForgeError):
    """Syncing cannot start (no key, no runs); the message says what to do."""


def api_key() -> str | None:
    """The W&B key from WANDB_API_KEY or ``wandb login``'s netrc entry, if any."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    try:
        import netrc

        auth = netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1])
    except (OSError, netrc.NetrcParseError):
        return None
    return auth[2] if auth else None


def pending(history: list[HistoryEntry], synced: dict[str, str] | None = None) -> list[HistoryEntry]:
    """History entries with an offline W&B run that has no URL yet (neither recorded nor in ``synced``)."""
    synced = synced or {}
    return [h for h in history if (h.wandb or {}).get("dir") and not (h.wandb or {}).get("url")
            and str(h.iteration) not in synced]


def _synced_file(ws: Workspace) -> Path:
    """URLs of runs uploaded while a loop held state.yaml, recorded there by the next sync."""
    return ws.root / "runs" / "wandb-synced.json"


def _read_synced(ws: Workspace) -> dict[str, str]:
    try:
        data = json.loads(_synced_file(ws).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def reachable(timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """None if W&B's server answers a TCP connection, else why not (checked before any upload)."""
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = url.split("//")[-1].split("/")[0]
    name, _, port = host.partition(":")
    try:
        with socket.create_connection((name, int(port or (443 if url.startswith("https") else 80))), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host} ({exc.strerror or exc}); check the network connection and sync again"


def sync_run(run_dir: Path, timeout: float = SYNC_TIMEOUT_S) -> str:
    """Upload one offline run directory; returns its URL. Raises RuntimeError with wandb's reason."""
    cmd = [sys.executable, "-m", "wandb", "sync", str(run_dir)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer from W&B within {timeout:.0f}s (is there a connection?)") from None
    found = _URL.search(res.stdout + res.stderr)
    if res.returncode != 0 or not found:
        last = (res.stderr or res.stdout).strip().splitlines()
        raise RuntimeError(last[-1] if last else f"wandb sync exited with {res.returncode}")
    return found.group(0).rstrip(".")


def group_report(project: str, group: str) -> str | None:
    """Create or refresh the group's report (Q-gap and accuracy against seeds trained); its URL."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        return None
    report = wr.Report(
        project=project, title=f"forge flywheel: {group}",
        description="Golden-set metrics of each flywheel iteration against seeds trained.",
        blocks=[wr.PanelGrid(
            runsets=[wr.Runset(project=project, filters=f"Config('group') = '{group}'")],
            panels=[wr.LinePlot(x="total_seeds", y=[metric_label(*m)]) for m in TRACKED],
        )],
    )
    report.save()
    return report.url


def sync(root: str | os.PathLike = ".", say: Callable[[str], None] = print, timeout: float | None = None) -> int:
    """Upload pending offline runs, showing progress; returns how many were synced.

    Uploads run without the workspace lock (a running loop is not held up); URLs go to
    ``runs/wandb-synced.json`` first and into state.yaml's history as soon as no loop holds it.
    Without a key, or without a connection to W&B, it says so at once instead of waiting.
    """
    if not api_key():
        raise SyncError("W&B sync needs an API key: run `wandb login` or set WANDB_API_KEY, then sync again")
    ws = Workspace.at(root)
    synced = _read_synced(ws)
    todo = pending(load_state(ws.root).history, synced)
    done = 0
    if todo:
        problem = reachable()
        if problem:
            raise SyncError(problem)
    for i, entry in enumerate(todo, 1):
        say(f"[{i}/{len(todo)}] iteration {entry.iteration}: uploading {entry.wandb['dir']} ...")
        try:
            url = sync_run(ws.root / entry.wandb["dir"], timeout or SYNC_TIMEOUT_S)
        except RuntimeError as exc:
            say(f"[{i}/{len(todo)}] iteration {entry.iteration}: not synced: {exc}")
            continue
        synced[str(entry.iteration)] = url
        atomic_write_text(_synced_file(ws), json.dumps(synced, indent=1))
        say(f"[{i}/{len(todo)}] iteration {entry.iteration}: {url}")
        done += 1
    if not todo and not synced:
        say("nothing to sync: every logged iteration already has a W&B URL")
        return 0
    _record(ws, synced, say, refresh_report=done > 0)
    return done


def _record(ws: Workspace, synced: dict[str, str], say: Callable[[str], None], refresh_report: bool) -> None:
    """Move URLs from the side file into state.yaml, if no loop holds the workspace now; then refresh the
    group report (a network call: outside the lock, so a loop starting meanwhile is not refused)."""
    try:
        with FlywheelLock(ws.root):
            store = StateStore(ws.root)
            with store.edit() as st:
                amended = False
                for h in st.history:
                    url = synced.get(str(h.iteration))
                    if url and h.wandb is not None:
                        h.wandb = {**h.wandb, "url": url, "mode": "synced"}
                        amended = True
                if amended:  # recorded entries changed: history.jsonl is written again, whole and atomically
                    st.history.rewrite()
                    # pruned iterations' runs now synced can go: the retention's next pass visits every one
                    ws.retention_summary.unlink(missing_ok=True)
            _synced_file(ws).unlink(missing_ok=True)
    except LockHeld:
        say(f"a loop is running here: the URLs are kept in {ws.rel(_synced_file(ws))} and recorded in state.yaml "
            "by the next `sync` (nothing is uploaded twice)")
        return
    if not refresh_report:
        return
    wb = load_state(ws.root).wandb
    try:
        report = group_report(wb["project"], wb["group"])
    except Exception as exc:  # noqa: BLE001 - the runs are synced; the report is a convenience
        say(f"group report not refreshed: {exc}")
        return
    if report:
        try:
            with FlywheelLock(ws.root):
                store = StateStore(ws.root)
                with store.edit() as st:
                    st.wandb["report"] = report
        except LockHeld:
            pass  # the loop records the report with its next iteration's W&B run
        say(f"group report: {report}")


def still_pending(root: str | os.PathLike = ".") -> int:
    """Offline runs not uploaded yet (uploaded ones waiting in the side file do not count)."""
    ws = Workspace.at(root)
    return len(pending(load_state(ws.root).history, _read_synced(ws)))
