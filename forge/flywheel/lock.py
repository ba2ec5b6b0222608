"""One loop per workspace: an flock'ed lock file naming its holder, plus a heartbeat.

The kernel releases an flock when its process dies, so a lock that can be taken while
state.yaml says ``running`` means the loop that set it is gone: it crashed.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge.errors import ForgeError
from forge.flywheel import beat as beats
from forge.flywheel.paths import HEARTBEAT_FILE
from forge.flywheel.state import State, StateStore, now

LOCK_FILE = ".flywheel.lock"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0


class LockHeld(ForgeError):
    """Another loop holds the workspace."""


class FlywheelLock:
    """Exclusive, non-blocking lock on ``<root>/.flywheel.lock`` for the loop's lifetime."""

    def __init__(self, root: str | os.PathLike):
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> FlywheelLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(10):  # a status probe holds a shared lock for microseconds; wait it out
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    os.close(fd)
                    raise LockHeld(f"another flywheel loop is running here: {describe_holder(self.path)}") from None
                time.sleep(0.05)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    if not info:
        return f"{path} is locked"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')} (lock {path})"


def lock_is_held(root: str | os.PathLike) -> bool:
    path = Path(root) / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def heartbeat_age(state: State, root: str | os.PathLike | None = None) -> float | None:
    """Seconds since the loop running ``state.current`` last beat (its heartbeat file, where ``root`` is given)."""
    if root is not None:
        beats.overlay(root, state.current)
    if state.current is None or not state.current.heartbeat:
        return None
    beat = dt.datetime.fromisoformat(state.current.heartbeat)
    return (dt.datetime.now(dt.UTC) - beat).total_seconds()


def liveness(root: str | os.PathLike, state: State) -> str:
    """The status as seen from outside: state.yaml's status, or ``crashed`` for a dead loop."""
    if state.status != "running":
        return state.status
    cur = state.current
    if cur is not None and cur.host == socket.gethostname() and cur.pid and not pid_alive(cur.pid):
        return "crashed"
    if not lock_is_held(root):
        return "crashed"
    age = heartbeat_age(state, root)
    if age is not None and age > STALE_SECONDS:
        return "crashed"
    return "running"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Beat every few seconds while an iteration runs: ``.flywheel.heartbeat`` (:mod:`forge.flywheel.beat`),
    a small file of its own, never the whole state.yaml; ``current.heartbeat`` follows in memory and
    readers (:func:`forge.flywheel.state.load_state`) see the file's.

    A failed write (a full disk for a moment, a file briefly locked by a backup tool) is
    reported once and retried at the next beat: the thread never dies, so a live loop is never
    shown as crashed because of a transient error.
    """

    def __init__(self, store: StateStore, interval: float = HEARTBEAT_SECONDS,
                 fields: Callable[[], dict[str, Any]] | None = None):
        self.store, self.interval, self.fields = store, interval, fields  # fields: what the loop's clock adds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flywheel-heartbeat", daemon=True)
        self.failures = 0

    def beat(self) -> None:
        store = self.store
        with store._lock:  # a snapshot of what runs now; nothing of state.yaml is written
            cur = store.state.current
            if cur is None:
                return
            stamp = now()
            cur.__dict__["heartbeat"] = stamp
            data = {"pid": os.getpid(), "host": socket.gethostname(), "iteration": cur.iteration, "at": stamp,
                    "t": time.time()}
            if self.fields is not None:
                data.update(self.fields())
        beats.write(store.root, data)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                if self.failures:
                    print(f"heartbeat: writing {HEARTBEAT_FILE} works again (after {self.failures} failure(s))",
                          file=sys.stderr)
                self.failures = 0
            except Exception as exc:  # noqa: BLE001 - any error: try again at the next beat
                if not self.failures:
                    print(f"heartbeat: could not write {HEARTBEAT_FILE} ({exc}); retrying", file=sys.stderr)
                self.failures += 1

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
