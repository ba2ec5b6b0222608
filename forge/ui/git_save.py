"""JupyterLab's post-save hook: a saved notebook that git's clean filter turns back into the committed
one shows as unmodified in ``git status``.

git compares a file's size with the size it recorded before it looks at the content; a notebook saved
with its outputs is larger than the committed one (the nbstripout filter removed them on ``git add``),
so ``git status`` listed it as modified while ``git diff`` (which runs the filter) showed nothing.
After each save this hook re-enters the notebook's index entry with the same blob and no recorded
stat (``git update-index --cacheinfo``): git then compares the content through the filter and, if it
is the committed notebook, records the new size and says nothing. The index's content is never
changed, and a real edit still shows.

Enabled by ``jupyter_server_config.py`` at the project root (``jupyter lab --config=...``, as the
README's command does)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def recheck_through_filter(path: str | Path) -> bool:
    """Make git compare ``path`` with its index entry through its clean filter; False when it does not
    apply (not in a repository, untracked, not filtered, or mid-merge)."""
    path = Path(path).resolve()
    folder = path.parent
    attr = _git(folder, "check-attr", "filter", "--", path.name)
    if not attr or attr.rstrip().endswith(": unspecified"):
        return False
    entry = _git(folder, "ls-files", "-s", "--", path.name)
    if not entry or len(entry.splitlines()) != 1:
        return False
    meta, _, _name = entry.rstrip("\n").partition("\t")
    mode, sha, stage = meta.split()
    if stage != "0":
        return False
    prefix = _git(folder, "rev-parse", "--show-prefix")  # --cacheinfo takes a path from the repository's top
    if prefix is None:
        return False
    return _git(folder, "update-index", "--cacheinfo", f"{mode},{sha},{prefix.strip()}{path.name}") is not None


def post_save(model: dict[str, Any] | None = None, os_path: str | None = None, contents_manager: Any = None,
              **_: Any) -> None:
    """``FileContentsManager.post_save_hook``: after a notebook is saved (never fails the save)."""
    if os_path and (model or {}).get("type") == "notebook":
        try:
            recheck_through_filter(os_path)
        except Exception:  # noqa: BLE001, S110 - a convenience for git status; the save itself succeeded
            pass
