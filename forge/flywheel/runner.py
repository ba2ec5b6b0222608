"""Execute stage notebooks with papermill, in one kernel kept for the loop's lifetime, into the archive.

Starting a kernel and importing numba, torch and Lightning costs seconds; the loop pays it once
and every stage notebook of every iteration runs in the same kernel. Before each notebook the
kernel's namespace and execution counter are reset (IPython's own ``reset``), so a notebook sees
exactly what it would see when run by hand in a fresh kernel. A kernel that died is started
again before the next notebook.

The executed notebook is written under a temporary name and renamed into place when papermill
is done, so the archive never holds a truncated notebook; a failed stage's notebook goes to
``archive/iter-NNNN/attempt-K/`` (every attempt is kept) with the number of its failing cell as
the user sees it, papermill's injected-parameters cell not counted. Each archived notebook opens
with a note (:mod:`forge.flywheel.archive_header`: iteration, stage, who ran it, a link back to the
index) and is then handed to the caller's ``on_notebook`` (the front ends export its HTML beside it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forge.errors import ForgeError, describe_os_error
from forge.flywheel.archive_header import HEADER_TAG, add_header
from forge.flywheel.paths import NOTEBOOKS, Workspace
from forge.flywheel.progress import LOOP_ENV

if TYPE_CHECKING:
    from forge.flywheel.stages.base import Stage

#: Called with each executed stage notebook once it is archived (a failed attempt's too).
OnNotebook = Callable[[Path], None]

KERNEL_NAME = "forge"
#: Environment of the loop's kernel: quiet (summaries, not progress bars; no secrets echoed) and,
#: like the CLIs, OpenMP threads that sleep rather than spin while waiting (spinning threads made
#: training in a kernel up to 4x slower on a busy machine).
KERNEL_ENV = {"FORGE_HEADLESS": "1", LOOP_ENV: "1", "WANDB_SILENT": "true", "TQDM_DISABLE": "1",
              "PYTHONWARNINGS": "ignore"}


#: A fresh namespace and execution count, as in a new kernel. IPython's reset also drops the module
#: dunders (``__spec__``, ...) that multiprocessing's spawn reads from ``__main__``: keep those.
_RESET = """
def _forge_reset(ip=get_ipython()):
    keep = {k: v for k, v in ip.user_ns.items() if len(k) > 4 and k[:2] == k[-2:] == "__"}
    ip.reset(new_session=True)
    ip.user_ns.update(keep)
_forge_reset()
"""


#: Cells papermill adds to an executed notebook, which the user never sees in the source.
PAPERMILL_CELLS = {"injected-parameters", "papermill-error-cell-tag"}
#: The anchor papermill puts on the failing cell (kept by the HTML export).
ERROR_ANCHOR = "papermill-error-cell"


class StageFailed(ForgeError):
    """A stage notebook raised (or its kernel died); the message names the cell and the exception."""

    def __init__(self, stage: str, summary: str, notebook: Path | None, cell: int | None = None,
                 error: str | None = None):
        super().__init__(f"stage {stage} failed: {summary}")
        self.stage, self.summary, self.notebook, self.cell = stage, summary, notebook, cell
        self.error = error  # the name of the exception the notebook raised, if it raised one


@dataclass(frozen=True)
class Executed:
    stage: str
    notebook: Path


def ensure_kernel() -> str:
    """Register a kernelspec that runs this interpreter, so notebooks import this forge.

    Safe when several processes do it at once (two loops, parallel tests): the spec is written in a
    folder of its own and renamed into place, and a stale one is corrected by an atomic write.
    """
    import json
    import shutil
    import tempfile

    from ipykernel.kernelspec import get_kernel_dict, write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    from forge.atomic import atomic_write_text

    kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    dest, overrides = kernels / KERNEL_NAME, {"display_name": "Python (forge)"}
    spec = dest / "kernel.json"
    if not spec.is_file():
        kernels.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{KERNEL_NAME}-", dir=kernels))
        try:
            write_kernel_spec(tmp / KERNEL_NAME, overrides=overrides)
            os.rename(tmp / KERNEL_NAME, dest)
        except OSError:
            if not spec.is_file():  # not another process winning the race: a real failure
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if sys.executable not in json.loads(spec.read_text()).get("argv", []):
        atomic_write_text(spec, json.dumps({**get_kernel_dict(), **overrides}, indent=1))
    KernelSpecManager().get_kernel_spec(KERNEL_NAME)  # fails loudly here, not inside papermill
    return KERNEL_NAME


class LoopKernel:
    """The one kernel of a running loop; its own output (warnings, crashes) goes to a log file."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.km = self._manager()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        self.log = ws.loop_logs / f"kernel-{stamp}-{os.getpid()}.log"

    def __enter__(self) -> LoopKernel:
        """Launch the kernel now, so it boots on another core while this process imports papermill."""
        try:
            self.start()
        except Exception:  # noqa: BLE001 - the first stage starts it again and reports why
            pass
        return self

    @staticmethod
    def _manager():
        from jupyter_client.manager import AsyncKernelManager

        return AsyncKernelManager(kernel_name=ensure_kernel())

    def start(self) -> None:
        from jupyter_core.utils import run_sync

        self.log.parent.mkdir(parents=True, exist_ok=True)
        cwd = self.ws.root / "archive"
        cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            run_sync(self.km.start_kernel)(
                extra_arguments=["--HistoryManager.hist_file=:memory:"], cwd=str(cwd),
                env={**os.environ, **KERNEL_ENV}, stdout=log, stderr=log,  # OMP_WAIT_POLICY: see forge/__init__
            )

    def ready(self) -> None:
        """A live kernel with a fresh namespace (started again if it died, even while being asked)."""
        from jupyter_core.utils import run_sync

        for attempt in range(2):
            if not self.km.has_kernel or not run_sync(self.km.is_alive)():
                self.restart()
            try:
                run_sync(self._reset)()
                return
            except RuntimeError:  # "Kernel died before replying": start a new one, once
                if attempt:
                    raise
                self.restart()

    def restart(self) -> None:
        self.stop()
        self.km = self._manager()  # a manager does not start twice cleanly: take a new one
        self.start()

    async def _reset(self) -> None:
        kc = self.km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=120)
            reply = await kc.execute_interactive(_RESET, silent=True, store_history=False, timeout=60,
                                                 output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise ForgeError(f"could not reset the kernel: {reply['content'].get('evalue')}")
        finally:
            kc.stop_channels()

    def stop(self) -> None:
        """Shut the kernel down now (the next notebook starts a new one)."""
        from jupyter_core.utils import run_sync

        if self.km.has_kernel:
            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception as err:  # noqa: BLE001 - a kernel that is already gone is fine
                print(f"warning: kernel shutdown: {err}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def failing_cell(notebook: Path) -> tuple[int | None, str | None]:
    """(number, cell id) of the first cell with an error, numbered as in the source notebook."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook has no cell to point at
        return None, None
    number = 0
    for cell in nb.cells:
        if set(cell.get("metadata", {}).get("tags", [])) & (PAPERMILL_CELLS | {HEADER_TAG}):
            continue
        number += 1
        if cell.cell_type == "code" and (
            any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            or cell.get("metadata", {}).get("papermill", {}).get("exception")
        ):
            return number, cell.get("id")
    return None, None


#: papermill's own bookkeeping lines, and the plain-text stand-ins of rich outputs: not worth a log line.
_LOG_NOISE = re.compile(r"^(Executing Cell \d+|Ending Cell \d+|Executing notebook|Input Notebook|Output Notebook"
                        r"|Working directory|<IPython\.core\.display\.\w+ object>|forge status panel$)")


class _StageLogHandler(logging.Handler):
    """A display-only, unbuffered log (the panel tails it live). A failed write (a full disk) is
    dropped: nothing is left in a buffer for ``close`` to fail on and mask the stage's real outcome."""

    def __init__(self, path: Path):
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self._fd, (self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:  # noqa: BLE001, S110 - display-only: losing a line beats failing the stage
            pass

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        super().close()


class _QuietDeadKernel(logging.Filter):
    """After Ctrl+C or SIGTERM the kernel is stopped mid-cell, and nbclient's pending execution then fails
    with DeadKernelError, which asyncio reports later as a task exception "never retrieved", traceback and
    all. That is the interruption the loop has already said in one line: the report is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "DeadKernelError"


_QUIET_DEAD_KERNEL = _QuietDeadKernel()


def _papermill_log(path: Path) -> logging.Handler:
    """Send what the notebook prints (papermill's log_output) to the stage's log file, for the panel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _StageLogHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: not _LOG_NOISE.match(record.getMessage().strip()))
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def execute_stage(ws: Workspace, stage: Stage, iteration: int, kernel: LoopKernel, no_wandb: bool = False,
                  attempt: int = 1, on_notebook: OnNotebook | None = None,
                  note: list[str] | None = None) -> Executed:
    """Run ``stage``'s notebook for ``iteration``; a failure keeps its notebook as attempt ``attempt``.

    The archived notebook opens with a note (:mod:`forge.flywheel.archive_header`): ``note``'s parts,
    by default that the loop ran it and when."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    name = stage.notebook
    out_dir = ws.archive(iteration)
    out_dir.mkdir(parents=True, exist_ok=True)
    running = out_dir / f".{Path(name).stem}.running.ipynb"
    params = {"root": str(ws.root), "iteration": iteration, "no_wandb": no_wandb, "progress": False}
    handler = _papermill_log(ws.stage_log(iteration, stage.name))
    try:
        kernel.ready()
        pm.execute_notebook(
            str(NOTEBOOKS / name), str(running), parameters=params, kernel_name=KERNEL_NAME,
            progress_bar=False, log_output=True, km=kernel.km,
        )
    except PapermillExecutionError as exc:
        kept = _keep_attempt(ws, iteration, attempt, running, stage, on_notebook)
        cell, _ = failing_cell(kept) if kept else (None, None)
        where = f"cell {cell}" if cell else f"cell {exc.exec_count}"
        raise StageFailed(stage.name, f"{where}: {exc.ename}: {exc.evalue}".strip(), kept, cell, exc.ename) from None
    except (RuntimeError, OSError, TimeoutError) as exc:  # the kernel died or never started; a full disk
        kept = _keep_attempt(ws, iteration, attempt, running, stage, on_notebook)
        # papermill writing the executed notebook is the loop's own write: a failure there names no file
        detail = str(exc) if not isinstance(exc, OSError) else describe_os_error(exc, ws.rel(running))
        raise StageFailed(stage.name, f"{type(exc).__name__}: {detail}{_disk_note(ws)}", kept) from None
    except BaseException:  # Ctrl+C, SIGTERM: no attempt to keep, and no half-run notebook left behind
        running.unlink(missing_ok=True)
        logging.getLogger("asyncio").addFilter(_QUIET_DEAD_KERNEL)
        raise
    finally:
        logging.getLogger("papermill").removeHandler(handler)
        handler.close()
    target = out_dir / name
    os.replace(running, target)
    _note(target, ws, [f"iteration {iteration}", f"stage {stage.name}"]
          + (note or [f"run by the loop, finished {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"]))
    if on_notebook is not None:
        on_notebook(target)
    return Executed(stage.name, target)


def _note(notebook: Path, ws: Workspace, parts: list[str]) -> None:
    """The archive note on top of an archived notebook; a failure is reported, never fatal."""
    try:
        add_header(notebook, ws.root / "archive", parts)
    except Exception as exc:  # noqa: BLE001 - the executed notebook is the record; the note is a convenience
        print(f"warning: could not add the archive note to {notebook}: {exc}", file=sys.stderr)


def _disk_note(ws: Workspace, low: int = 4 << 20) -> str:
    """Why a kernel may have died or a write failed: the workspace's disk is (nearly) full."""
    import shutil

    try:
        free = shutil.disk_usage(ws.root).free
    except OSError:
        return ""
    return f" (No space left on device: {free // 1024} KB free under {ws.root})" if free < low else ""


def _keep_attempt(ws: Workspace, iteration: int, attempt: int, running: Path, stage: Stage,
                  on_notebook: OnNotebook | None) -> Path | None:
    """Move a failed run's notebook to ``attempt-K/`` (with its HTML); None if nothing readable was written."""
    import nbformat

    if not running.is_file():
        return None
    try:
        nbformat.read(running, as_version=4)
    except Exception:  # noqa: BLE001 - truncated (a full disk): nothing worth keeping
        running.unlink(missing_ok=True)
        return None
    dest = ws.attempt(iteration, attempt) / stage.notebook
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(running, dest)
    _note(dest, ws, [f"iteration {iteration}", f"stage {stage.name}", f"failed attempt {attempt} (the loop's run)"])
    if on_notebook is not None:
        on_notebook(dest)
    return dest
