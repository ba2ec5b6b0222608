"""``python -m forge.cli.generate``: the oracle's generate command, also ``python -m forge.oracle.generate``.

The oracle layer holds the command (:func:`forge.oracle.generate.main`), so that its documented
module path runs it without reaching up into this layer; this module makes it a CLI like the others.
"""

from __future__ import annotations

import sys

from forge.commandline import run_cli
from forge.oracle.generate import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
