"""``python -m forge.cli.verify FILE...``: the oracle's verify command, also ``python -m forge.oracle.verify``.

The oracle layer holds the command (:func:`forge.oracle.verify.main`), so that its documented
module path runs it without reaching up into this layer; this module makes it a CLI like the others.
"""

from __future__ import annotations

import sys

from forge.commandline import run_cli
from forge.oracle.verify import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
