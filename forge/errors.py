"""The one exception root of forge: every problem a user can act on is a :class:`ForgeError`.

Each layer raises its own subclass (``ShardError``, ``StoreError``, ``CheckpointError``,
``ConfigError``, ``StateError``, ...), all defined next to the code that raises them; the
command-line entry points turn any ForgeError into one line on stderr and exit status 2
(:func:`forge.commandline.run_cli`). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ForgeError(Exception):
    """A problem the user can act on; its message says what and, where it helps, what to do."""


class InputError(ForgeError, ValueError):
    """A request that cannot be honoured as asked (a bad argument, an out-of-range value)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what systemd, Kubernetes and ``kill`` send), handled exactly like Ctrl+C."""

    def __init__(self, signame: str = "SIGTERM"):
        super().__init__(signame)
        self.signame = signame


def interruption(exc: BaseException) -> str:
    """How a KeyboardInterrupt came about, for records: ``Ctrl+C`` or the signal's name."""
    return exc.signame if isinstance(exc, Terminated) else "Ctrl+C"


def describe_os_error(exc: OSError, default_file: str | None = None) -> str:
    """An OSError as one line that names its file (``[Errno 28]`` alone names nothing); ``default_file``
    names the file being written when the error itself does not."""
    files = [str(f) for f in (exc.filename, exc.filename2) if f] or ([default_file] if default_file else [])
    what = exc.strerror or str(exc)
    return f"{what}: {' -> '.join(files)}" if files else what
