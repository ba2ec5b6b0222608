"""Execute one stage notebook with papermill into the iteration's archive folder."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from forge.errors import ForgeError
from forge.flywheel.notebook_libs import skip_iri_format_checker
from forge.flywheel.paths import NOTEBOOKS, STAGE_NOTEBOOKS, Workspace

KERNEL_NAME = "forge"


class StageFailed(ForgeError):
    """A stage notebook raised; the message names the cell and the exception."""

    def __init__(self, stage: str, summary: str, notebook: Path):
        super().__init__(f"stage {stage} failed: {summary}")
        self.stage, self.summary, self.notebook = stage, summary, notebook


@dataclass(frozen=True)
class Executed:
    stage: str
    notebook: Path


def ensure_kernel() -> str:
    """Register a kernelspec that runs this interpreter, so notebooks import this forge."""
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = Path(sys.prefix)
    spec_dir = prefix / "share" / "jupyter" / "kernels" / KERNEL_NAME
    spec = spec_dir / "kernel.json"
    if not spec.is_file() or sys.executable not in spec.read_text():
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, display_name="Python (forge)", prefix=str(prefix))
    KernelSpecManager().get_kernel_spec(KERNEL_NAME)  # fails loudly here, not inside papermill
    return KERNEL_NAME


def _prompt_client() -> type:
    """A kernel client whose ``wait_for_ready`` ends as soon as the kernel has answered.

    jupyter_client's version ends by waiting until IOPub has been silent for 0.2 s, so every
    stage notebook (papermill makes a client per notebook) paid 0.2 s doing nothing. This one
    sends ``kernel_info`` and returns once its reply is in and IOPub has delivered the kernel's
    ``idle`` status for that request: proof that IOPub is subscribed, and every message of the
    exchange consumed. As upstream, it asks again when the reply takes over 1 s or IOPub stays
    quiet for 0.2 s (a kernel still booting, or an IOPub subscription not yet joined).
    """
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class PromptKernelClient(AsyncKernelClient):
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
            while True:
                msg_id = self.kernel_info()
                reply = await self._message_for(self.shell_channel, msg_id, "kernel_info_reply", 1.0, deadline)
                if reply is not None and await self._message_for(self.iopub_channel, msg_id, "status", 0.2,
                                                                 deadline, state="idle"):
                    self._handle_kernel_info_reply(reply)
                    return
                if not await self.is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

        @staticmethod
        async def _message_for(channel, msg_id: str, msg_type: str, wait: float, deadline: float,
                               state: str | None = None) -> dict | None:
            """The first ``msg_type`` message answering ``msg_id``; None after ``wait`` seconds
            without one (other messages are dropped)."""
            until = min(deadline, time.monotonic() + wait)
            while (left := until - time.monotonic()) > 0:
                try:
                    msg = await channel.get_msg(timeout=left)
                except Empty:
                    return None
                if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == msg_type
                        and (state is None or msg["content"].get("execution_state") == state)):
                    return msg
            return None

    return PromptKernelClient


def _logged_kernel_manager(log_path: Path) -> type:
    """A kernel manager that sends the kernel's own stdout/stderr (warnings, crashes) to a log
    file, and hands out prompt clients (see :func:`_prompt_client`)."""
    from jupyter_client.manager import AsyncKernelManager

    client = _prompt_client()

    class LoggedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.client_factory = client

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            with open(log_path, "ab") as log:
                kw["stdout"] = kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return LoggedKernelManager


def _quiet_env() -> dict[str, str]:
    """Stage kernels print summaries, not progress bars, and never echo secrets."""
    return {"FORGE_HEADLESS": "1", "WANDB_SILENT": "true", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}


class IterationKernel:
    """One kernel for all stage notebooks of an iteration (started by the first, shut down at the end).

    A kernel start plus importing numba, torch, Lightning and matplotlib costs seconds per stage;
    sharing the kernel pays that once per iteration. Stages share no state through it: each
    notebook reads everything it needs from state.yaml and the workspace, exactly as it does
    when stepped through by hand in its own kernel.
    """

    def __init__(self, ws: Workspace, iteration: int):
        logs = ws.run_dir(iteration) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.km = _logged_kernel_manager(logs / "kernel.log")(kernel_name=ensure_kernel())
        self.cwd = ws.archive(iteration)

    def __enter__(self) -> IterationKernel:
        """Launch the kernel now, so it boots on another core while this process imports papermill.

        Launched as papermill would (cwd = the iteration's archive folder, quiet environment, no
        history file). If it fails, the first stage launches it again and reports why.
        """
        from jupyter_core.utils import run_sync

        self.cwd.mkdir(parents=True, exist_ok=True)
        try:
            run_sync(self.km.start_kernel)(
                extra_arguments=["--HistoryManager.hist_file=:memory:"], cwd=str(self.cwd),
                env={**os.environ, **_quiet_env()},
            )
        except Exception:  # noqa: BLE001 - reported by the first stage, which retries the start
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        from jupyter_core.utils import run_sync

        if self.km.has_kernel:
            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception as err:  # noqa: BLE001 - a kernel that is already gone is fine
                print(f"warning: kernel shutdown: {err}", file=sys.stderr)


def execute_stage(ws: Workspace, stage: str, iteration: int, no_wandb: bool = False,
                  kernel: IterationKernel | None = None) -> Executed:
    """Run ``stage``'s notebook for ``iteration``; on error the partial notebook stays archived."""
    skip_iri_format_checker()
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source = NOTEBOOKS / STAGE_NOTEBOOKS[stage]
    out_dir = ws.archive(iteration)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / STAGE_NOTEBOOKS[stage]
    params = {"root": str(ws.root), "iteration": iteration, "no_wandb": no_wandb, "progress": False}
    saved = {k: os.environ.get(k) for k in _quiet_env()}
    os.environ.update(_quiet_env())
    own = kernel is None
    kernel = kernel or IterationKernel(ws, iteration)
    try:
        pm.execute_notebook(
            str(source), str(target), parameters=params, kernel_name=KERNEL_NAME,
            cwd=str(out_dir), progress_bar=False, log_output=False, km=kernel.km,
        )
    except PapermillExecutionError as exc:
        summary = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}".strip()
        _export(target)
        raise StageFailed(stage, summary, target) from None
    except (RuntimeError, OSError, TimeoutError) as exc:  # the kernel died or never started
        _export(target)
        raise StageFailed(stage, f"{type(exc).__name__}: {exc}", target) from None
    finally:
        if own:
            kernel.__exit__(None, None, None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _export(target)
    return Executed(stage, target)


def _export(notebook: Path) -> None:
    """HTML beside the archived notebook; a failed export is reported, never fatal."""
    from forge.flywheel.archive import export_html

    try:
        export_html(notebook)
    except Exception as exc:  # noqa: BLE001 - the .ipynb is the record; HTML is a convenience
        print(f"warning: could not export {notebook} to HTML: {exc}", file=sys.stderr)
