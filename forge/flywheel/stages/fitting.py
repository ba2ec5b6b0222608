"""The train stage's training runs: :func:`forge.ml.training.train`, in this process or, for several
devices or nodes, in child processes.

One :class:`TrainSettings` describes a run. In this process it becomes ``train``'s arguments; with
several devices or nodes (a notebook kernel cannot become one process per device) it is written as
JSON beside the run, and this module, started with ``python -m`` as a child process, reads it back
and trains with exactly the same arguments. Lightning's DDP launcher starts the other ranks by
running that same command again. The child and its ranks die with the process that started them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from forge.atomic import atomic_write_text
from forge.commandline import run_cli
from forge.flywheel.stages.base import StageError
from forge.ml.settings import HardwareSection, TrainingSection

if TYPE_CHECKING:
    from forge.flywheel.progress import StageProgress
    from forge.ml.training import RunResult

SETTINGS_FILE = "train-settings.json"
RESULT_FILE = "train-result.json"


@dataclass(frozen=True)
class TrainSettings:
    """One training run of the train stage: the configuration's training and hardware sections (what
    :func:`forge.ml.training.train` takes) and where this run reads, writes and starts from."""

    data: Path
    run_dir: Path
    training: TrainingSection
    hardware: HardwareSection
    resume: Path | None
    from_scratch: bool  # the schedule's peak is the scratch rate
    continuing: bool = False  # the resume checkpoint's optimiser state and sample count go on
    progress: bool = True
    wandb: bool = False

    @property
    def multi_process(self) -> bool:
        return self.hardware.multi_process

    def arguments(self) -> dict[str, Any]:
        """``train``'s arguments after the dataset (``data``)."""
        return {"training": self.training, "hardware": self.hardware, "run_dir": self.run_dir,
                "resume": self.resume, "from_scratch": self.from_scratch, "continuing": self.continuing,
                "progress": self.progress, "wandb": self.wandb}

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(training=self.training.model_dump(), hardware=self.hardware.model_dump())
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Self:
        data = json.loads(text)
        for name in ("data", "run_dir", "resume"):
            data[name] = Path(data[name]) if data[name] is not None else None
        data["training"] = TrainingSection.model_validate(data["training"])
        data["hardware"] = HardwareSection.model_validate(data["hardware"])
        return cls(**data)


def fit(settings: TrainSettings, progress: StageProgress, callbacks: Sequence[Any] = ()) -> RunResult:
    """Train as ``settings`` say, reporting to ``progress``; ``callbacks`` are extra Lightning
    callbacks (a notebook's live curve), which only a run in this process can take."""
    from forge.flywheel.quiet import quiet_lightning
    from forge.flywheel.train_progress import TrainProgress
    from forge.ml.training import train

    if settings.multi_process:
        progress.update(phase=f"training in {settings.hardware.processes} processes", force=True)
        return _in_child_processes(dataclasses.replace(settings, progress=False))
    with quiet_lightning():  # notebooks get the stage's summary, not Lightning's start-up chatter
        return train(settings.data, **settings.arguments(),
                     trainer_kwargs={"callbacks": [TrainProgress(progress), *callbacks],
                                     "enable_model_summary": False})


def _in_child_processes(settings: TrainSettings) -> RunResult:
    """This module as a child process (Lightning's launcher starts one process per device), its output
    shown here as it runs; the child dies with this process."""
    from forge.ml.training import result_from_dict

    settings_file, result_file = settings.run_dir / SETTINGS_FILE, settings.run_dir / RESULT_FILE
    atomic_write_text(settings_file, settings.to_json())
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", __spec__.name, str(settings_file), str(result_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="")
            tail = (tail + [line.strip()])[-5:]
    finally:  # an interrupted notebook or loop takes its training processes with it
        if proc.poll() is None:
            proc.kill()
    if proc.wait() != 0:
        raise StageError(f"training in {settings.hardware.processes} processes failed (exit {proc.returncode}): "
                         + " | ".join(tail))
    return result_from_dict(json.loads(result_file.read_text()))


def main(argv: list[str] | None = None) -> int:
    """In the child: train with the settings file's arguments; rank 0 writes the result file."""
    from forge.ml.training import result_dict, train
    from forge.oracle.local_pool import die_with_parent

    die_with_parent(os.getppid())  # never outlive the stage (the ranks Lightning starts run this too)
    settings_file, result_file = (Path(a) for a in (sys.argv[1:] if argv is None else argv))
    settings = TrainSettings.from_json(settings_file.read_text())
    result = train(settings.data, **settings.arguments())
    if result.global_rank != 0:  # a DDP worker: rank 0 reports the run
        return 0
    atomic_write_text(result_file, json.dumps(result_dict(result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
