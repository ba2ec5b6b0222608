"""forge: a notebook-first workspace that trains Texas 42 models against an exact oracle."""

import os

__version__ = "0.2.0"

# On a machine shared with other busy processes, OpenMP threads that spin while they wait made torch
# up to 10x slower (training in a notebook kernel ran 4x slower than from the CLI); sleeping waits
# cost little. OpenMP reads this once, when torch loads it, so it is set here: every CLI, notebook and
# kernel imports forge before torch. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
