"""Command-line plumbing shared by every command (the oracle's and the CLIs): user mistakes become one line
on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from forge.errors import ForgeError, InputError, Terminated, describe_os_error

#: The commands as a person types them, for the messages of every layer. They are text, never run:
#: the code behind them is the CLI layer, which nothing below it names (tests/test_architecture.py).
FLYWHEEL = "python -m forge.cli.flywheel"
TRAIN = "python -m forge.cli.train"


class UsageError(InputError):
    """A mistake in what the user asked for on the command line; reported without a traceback."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (through :func:`run_cli`), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def number(kind: type = int, minimum: float = 1):
    """An argparse ``type`` that parses ``kind`` and insists on a finite value ``>= minimum``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; turn user-facing errors and Ctrl+C/SIGTERM into a message and an exit status.

    Any :class:`~forge.errors.ForgeError` and any OSError (a missing file, a full disk) is one
    line on stderr and exit 2; Ctrl+C exits 130 and SIGTERM 143, after the code under way has
    recorded where it stopped. Set FORGE_DEBUG=1 to get the traceback instead.
    """
    prog = Path(sys.argv[0]).stem if argv is None else "forge"
    if prog == "__main__":
        prog = Path(sys.argv[0]).parent.name
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return main(argv)
    except (ForgeError, OSError) as exc:
        if os.environ.get("FORGE_DEBUG"):
            raise
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"{prog}: {'terminated (' + exc.signame + ')' if term else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if term else signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)


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
