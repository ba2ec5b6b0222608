"""Shared command-line plumbing: user mistakes become one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


class UsageError(Exception):
    """A mistake in what the user asked for; reported without a traceback."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (through :func:`run_cli`), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def number(kind: type = int, minimum: float = 1):
    """An argparse ``type`` that parses ``kind`` and insists on ``>= minimum``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; turn user-facing errors and Ctrl+C into a message and an exit status.

    Set FORGE_DEBUG=1 to get the traceback instead.
    """
    from forge.oracle.shard import ShardError

    prog = Path(sys.argv[0]).stem if argv is None else "forge"
    try:
        return main(argv)
    except (UsageError, ShardError, ValueError, OSError) as exc:
        if os.environ.get("FORGE_DEBUG"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove we can write there, or raise UsageError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {path}: {exc.strerror or exc}") from None
    return path


def parse_seed_range(text: str) -> range:
    """``A:B`` is seeds A..B-1 (half-open, like a Python slice)."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise UsageError(f"seed range must look like A:B (seeds A..B-1), got {text!r}")
    a, b = (int(p) for p in parts)
    if a < 0:
        raise UsageError(f"seeds must be non-negative, got {text!r}")
    if b < a:
        raise UsageError(f"seed range {text!r} is reversed (A:B means seeds A..B-1)")
    if b == a:
        raise UsageError(f"seed range {text!r} is empty (A:B means seeds A..B-1)")
    return range(a, b)
