"""``python -m forge.cli.flywheel sync``: upload offline W&B runs and record their URLs.

Runs are logged offline by default (no network needed); this uploads the ones not yet synced
once a key and a connection exist, stores each run's URL in state.yaml's history, and creates
or refreshes a report for the group through W&B's reports API (package ``wandb-workspaces``,
optional: without it the sync still works and says so).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge.errors import ForgeError
from forge.flywheel.lock import FlywheelLock
from forge.flywheel.paths import Workspace
from forge.flywheel.state import StateStore

SYNC_TIMEOUT_S = 300
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


def pending(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in history if (h.get("wandb") or {}).get("dir") and not (h.get("wandb") or {}).get("url")]


def sync_run(run_dir: Path) -> str:
    """Upload one offline run directory; returns its URL. Raises RuntimeError with wandb's reason."""
    cmd = [sys.executable, "-m", "wandb", "sync", str(run_dir)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=SYNC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer from W&B within {SYNC_TIMEOUT_S}s (is there a connection?)") from None
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
            panels=[wr.LinePlot(x="total_seeds", y=[m]) for m in ("val/q_gap", "val/accuracy", "test/q_gap",
                                                                     "playout/playout_points_lost")],
        )],
    )
    report.save()
    return report.url


def sync(root: str | os.PathLike = ".", say: Callable[[str], None] = print) -> int:
    """Upload pending offline runs; returns how many were synced."""
    if not api_key():
        raise SyncError("W&B sync needs an API key: run `wandb login` or set WANDB_API_KEY, then sync again")
    ws = Workspace.at(root)
    with FlywheelLock(ws.root):
        store = StateStore(ws.root)
        todo = pending(store.state.history)
        if not todo:
            say("nothing to sync: every logged iteration already has a W&B URL")
            return 0
        done = 0
        for entry in todo:
            info = entry["wandb"]
            try:
                url = sync_run(ws.root / info["dir"])
            except RuntimeError as exc:
                say(f"iteration {entry['iteration']}: not synced: {exc}")
                continue
            with store.edit() as st:
                for h in st.history:
                    if h["iteration"] == entry["iteration"]:
                        h["wandb"] = {**h["wandb"], "url": url, "mode": "synced"}
            say(f"iteration {entry['iteration']}: {url}")
            done += 1
        if done:
            wb = store.state.wandb
            try:
                report = group_report(wb["project"], wb["group"])
            except Exception as exc:  # noqa: BLE001 - the runs are synced; the report is a convenience
                report = None
                say(f"group report not refreshed: {exc}")
            if report:
                with store.edit() as st:
                    st.wandb["report"] = report
                say(f"group report: {report}")
        return done
