"""The four stage notebooks executed by papermill, in order, as a person steps through an iteration by
hand: on a copy of the shared tiny run after iteration 1 (its iteration 2), headless. The generate,
tokenize and train kernels know their notebook (JPY_SESSION_NAME, as in JupyterLab); evaluate's does
not (plain papermill). Made once per test run (conftest's ``stage_notebooks_by_hand``): the headless
checks read the executed notebooks, the by-hand loop test records a copy of the workspace."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE_FILES = ("01_generate", "02_tokenize", "03_train", "04_evaluate")
#: The stage notebooks run with the kernel told its notebook's name (the last one is not).
NAMED = ("01_generate", "02_tokenize", "03_train")


def run_stage_notebooks(after_one: Path, where: Path) -> dict:
    """Execute the stage notebooks on a copy of ``after_one`` at ``where / "ws"``; the executed notebooks
    go beside it (``where / "<name>.out.ipynb"``, outside the workspace). Returns the workspace, a copy of
    it taken after the tokenize notebook (``after_tokenize``), each executed notebook, and the progress
    file as the generate notebook left it (the panel's last word)."""
    import papermill as pm

    from forge.flywheel.progress import SESSION_ENV
    from forge.flywheel.runner import ensure_kernel

    ws = where / "ws"
    shutil.copytree(after_one, ws, symlinks=True)
    executed = {name: where / f"{name}.out.ipynb" for name in STAGE_FILES}
    after_generate: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        # executed by papermill, not a person: without widgets, as README says (nbclient can hang on a cell
        # whose ipywidgets Output is redrawn, jupyter/nbconvert#2029; it did here once in a dozen runs)
        mp.setenv("FORGE_HEADLESS", "1")
        mp.setenv("TQDM_DISABLE", "1")
        for name in STAGE_FILES:  # as a person would: default parameters, resolved from state.yaml
            if name in NAMED:
                mp.setenv(SESSION_ENV, str(executed[name]))  # the kernel knows its notebook, as in JupyterLab
            else:
                mp.delenv(SESSION_ENV, raising=False)
            pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(executed[name]),
                                parameters={"root": str(ws), "progress": False}, kernel_name=ensure_kernel(),
                                progress_bar=False, cwd=str(ws))
            if name == "01_generate":
                progress = ws / "runs" / "iter-0002" / "progress.json"
                after_generate = json.loads(progress.read_text()) if progress.is_file() else {}
            if name == "02_tokenize":  # a person who went no further: the loop has train and evaluate to run
                shutil.copytree(ws, where / "after-tokenize", symlinks=True)
    return {"ws": str(ws), "after_tokenize": str(where / "after-tokenize"),
            "executed": {k: str(v) for k, v in executed.items()}, "after_generate": after_generate}


def made_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str,
              build: Callable[[Path], dict]) -> dict:
    """``build(folder)``'s result (JSON data), made once per test run: under pytest-xdist the first worker
    to need it builds it under a file lock, the others wait for it and read what it recorded."""
    if worker_id == "master":
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # this run's, common to its workers
    done = shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed to build it left
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
    return json.loads(done.read_text())
