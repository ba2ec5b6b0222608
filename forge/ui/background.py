"""The loop the dashboard's Start button runs: ``python -m forge.ui.background --root DIR`` runs one
iteration with the archive kept up to date (:data:`forge.ui.loop_hooks.HOOKS`), as the flywheel
command does. Started through :func:`forge.flywheel.loop.start_in_background`, in a session of its
own, so that it outlives the kernel that started it.
"""

from __future__ import annotations

import sys

from forge.commandline import ArgumentParser, run_cli
from forge.flywheel.loop import run_loop
from forge.ui.loop_hooks import HOOKS


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"{sys.executable} -m {__spec__.name}", description="one flywheel iteration")
    parser.add_argument("--root", default=".", help="workspace folder holding state.yaml (default: .)")
    args = parser.parse_args(argv)
    return run_loop(args.root, once=True, say=lambda msg: print(msg, flush=True), **HOOKS)


if __name__ == "__main__":
    sys.exit(run_cli(main))
