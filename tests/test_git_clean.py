"""`git status` stays clean while people work: a notebook saved in JupyterLab with its outputs shows as
unmodified when it is its committed self once stripped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.notebooks import git, repo_with_filter

from forge.ui.git_save import post_save

REPO = Path(__file__).resolve().parents[1]


def saved_by_jupyterlab(committed: str, source_edit: str | None = None) -> str:
    """The notebook as JupyterLab writes it after running it: outputs, counts, the kernel's language_info."""
    nb = json.loads(committed)
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"}
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            cell["execution_count"] = k
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran\n"] * 50}]
    if source_edit:
        nb["cells"][-1]["source"] = source_edit
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


@pytest.mark.slow
def test_a_notebook_saved_with_its_outputs_is_clean_for_git_status(tmp_path: Path) -> None:
    repo = repo_with_filter(tmp_path / "repo")
    book = repo / "notebooks" / "03_train.ipynb"
    book.parent.mkdir()
    committed = (REPO / "notebooks" / "03_train.ipynb").read_text()
    book.write_text(committed)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "notebooks")
    blob = git(repo, "ls-files", "-s", "--", "notebooks/03_train.ipynb")

    book.write_text(saved_by_jupyterlab(committed))  # run and saved in JupyterLab
    os.utime(book, (1, 1))  # another mtime than the one git recorded, whatever the clock's resolution
    assert git(repo, "status", "--porcelain") == " M notebooks/03_train.ipynb\n"  # by size alone
    assert git(repo, "diff") == ""  # its content, through the filter, is the committed notebook
    post_save(model={"type": "notebook"}, os_path=str(book))  # what JupyterLab calls after the save
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "ls-files", "-s", "--", "notebooks/03_train.ipynb") == blob  # the index's content is untouched

    book.write_text(saved_by_jupyterlab(committed, "print('an edit')"))  # a real change still shows
    post_save(model={"type": "notebook"}, os_path=str(book))
    assert git(repo, "status", "--porcelain") == " M notebooks/03_train.ipynb\n"
    post_save(model={"type": "file"}, os_path=str(repo / "elsewhere.txt"))  # not a notebook: nothing done


def test_jupyterlab_started_as_the_readme_says_runs_the_hook() -> None:
    from traitlets.config.loader import PyFileConfigLoader
    from traitlets.utils.importstring import import_item

    config = PyFileConfigLoader("jupyter_server_config.py", path=str(REPO)).load_config()
    assert import_item(config.ContentsManager.post_save_hook) is post_save
    readme = (REPO / "README.md").read_text()
    assert "jupyter lab --config=jupyter_server_config.py" in readme
