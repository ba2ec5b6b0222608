"""Importing papermill, nbformat and nbconvert without jsonschema's slowest optional extra.

nbformat validates notebooks with jsonschema, and jsonschema imports ``rfc3987_syntax`` eagerly
whenever it is installed (JupyterLab's dependencies install it); that module builds 38 lark
parsers at import, about 0.65 s of every loop process's 1.0 s of notebook imports here
(upstream: python-jsonschema/jsonschema#1428). It only serves the "iri" string formats, which
the notebook schema does not use, so the loop process goes without it.
"""

from __future__ import annotations

import sys


def skip_iri_format_checker() -> None:
    """Make ``rfc3987_syntax`` unimportable in this process, unless jsonschema already has it."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # None in sys.modules: ImportError, skipped
