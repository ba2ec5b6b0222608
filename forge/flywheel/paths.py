"""Where a workspace keeps things: one definition for the loop, the stages and the panels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STOP_FILE = ".flywheel.stop"
STATE_FILE = "state.yaml"
#: The loop's heartbeat (forge.flywheel.beat): a small file of its own, never the whole state.yaml.
HEARTBEAT_FILE = ".flywheel.heartbeat"
#: The finished iterations, one JSON line each (forge.flywheel.history); state.yaml keeps a summary.
HISTORY_FILE = "history.jsonl"
#: A person's note per iteration (forge.flywheel.notes), beside the record.
NOTES_FILE = "notes.jsonl"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Workspace:
        return cls(Path(root).resolve())

    def shards(self, hand_size: int) -> Path:
        """Training shards (flat, named by seed and declaration)."""
        return self.root / "data" / f"shards-h{hand_size}"

    def golden(self, hand_size: int) -> Path:
        return self.root / "data" / f"golden-h{hand_size}"

    @property
    def token_cache(self) -> Path:
        return self.root / "data" / "tokens" / "cache"

    @property
    def dataset(self) -> Path:
        """The tokenized dataset the current iteration trains and evaluates on."""
        return self.root / "data" / "tokens" / "dataset"

    def run_dir(self, iteration: int) -> Path:
        return self.root / "runs" / f"iter-{iteration:04d}"

    def results(self, iteration: int) -> Path:
        return self.run_dir(iteration) / "results"

    def archive(self, iteration: int) -> Path:
        return self.root / "archive" / f"iter-{iteration:04d}"

    def attempt(self, iteration: int, number: int) -> Path:
        """Where failed attempt ``number`` of an iteration keeps its executed notebook."""
        return self.archive(iteration) / f"attempt-{number}"

    def progress(self, iteration: int) -> Path:
        """The running stage's progress (deals done, epoch/step/loss, ...), for the panel."""
        return self.run_dir(iteration) / "progress.json"

    def stage_log(self, iteration: int, stage: str) -> Path:
        """What the stage printed, line by line, as it ran (the panel shows its tail)."""
        return self.run_dir(iteration) / "logs" / f"{stage}.log"

    @property
    def digests(self) -> Path:
        """Memo of file digests (shards, checkpoints) by file identity, shared with the token store
        (which names shards by content): see forge.digests."""
        from forge.digests import MEMO_NAME

        return self.token_cache / MEMO_NAME

    @property
    def loop_logs(self) -> Path:
        return self.root / "runs" / "logs"

    def rel(self, path: str | os.PathLike) -> str:
        """``path`` relative to the workspace (how state.yaml and results name files), else as given."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    @property
    def retention_summary(self) -> Path:
        """forge.flywheel.retention's cache of its markers: removing it makes the next pass visit every
        iteration once (and rebuild it from the markers)."""
        return self.root / "runs" / "retention.json"

    @property
    def heartbeat(self) -> Path:
        return self.root / HEARTBEAT_FILE

    @property
    def history(self) -> Path:
        return self.root / HISTORY_FILE

    @property
    def notes(self) -> Path:
        return self.root / NOTES_FILE

    @property
    def stop_file(self) -> Path:
        return self.root / STOP_FILE


def find_root(root: str | os.PathLike | None = None, start: str | os.PathLike | None = None) -> Path:
    """The workspace: ``root`` if given, else ``start`` (default cwd) or its parent, whichever holds state.yaml.

    A notebook's kernel starts in the notebook's folder (``notebooks/``) while state.yaml sits in
    the workspace root above it; looking only one level up keeps a stray state.yaml further up
    from being picked by accident. Without one, ``start`` is returned so the error names it.
    """
    if root is not None:
        return Path(root).resolve()
    here = Path(start if start is not None else Path.cwd()).resolve()
    for candidate in (here, here.parent):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return here
