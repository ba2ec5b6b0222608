"""Execute one stage notebook with papermill into the iteration's archive folder."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from forge.flywheel.paths import NOTEBOOKS, STAGE_NOTEBOOKS, Workspace

KERNEL_NAME = "forge"


class StageFailed(RuntimeError):
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


def _logged_kernel_manager(log_path: Path) -> type:
    """A kernel manager that sends the kernel's own stdout/stderr (warnings, crashes) to a log file."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            with open(log_path, "ab") as log:
                kw["stdout"] = kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return LoggedKernelManager


def _quiet_env() -> dict[str, str]:
    """Stage kernels print summaries, not progress bars, and never echo secrets."""
    return {"FORGE_HEADLESS": "1", "WANDB_SILENT": "true", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}


def execute_stage(ws: Workspace, stage: str, iteration: int, no_wandb: bool = False) -> Executed:
    """Run ``stage``'s notebook for ``iteration``; on error the partial notebook stays archived."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source = NOTEBOOKS / STAGE_NOTEBOOKS[stage]
    out_dir = ws.archive(iteration)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / STAGE_NOTEBOOKS[stage]
    params = {"root": str(ws.root), "iteration": iteration, "no_wandb": no_wandb, "progress": False}
    logs = ws.run_dir(iteration) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in _quiet_env()}
    os.environ.update(_quiet_env())
    try:
        pm.execute_notebook(
            str(source), str(target), parameters=params, kernel_name=ensure_kernel(),
            cwd=str(out_dir), progress_bar=False, log_output=False,
            kernel_manager_class=_logged_kernel_manager(logs / f"{stage}.kernel.log"),
        )
    except PapermillExecutionError as exc:
        summary = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}".strip()
        _export(target)
        raise StageFailed(stage, summary, target) from None
    finally:
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
