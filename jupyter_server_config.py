# JupyterLab for this project, started from here:
#   jupyter lab --config=jupyter_server_config.py --notebook-dir=. notebooks/00_status.ipynb
# After a notebook is saved, git compares it through its nbstripout filter, so `git status` stays clean
# when the notebook is its committed self once stripped (see forge/ui/git_save.py).
c = get_config()  # noqa: F821 - provided by Jupyter when it reads this file
c.ContentsManager.post_save_hook = "forge.ui.git_save.post_save"
