"""Input errors: what the ``semilearn`` command reports as one line on stderr, exit status 2.

Every problem with what the user gave (configuration, data, checkpoint, report inputs, the
command line) raises a subclass of :class:`InputError`; ``semi_usb.cli.main`` turns any of
them into ``semilearn <command>: error: <message>`` (``--debug`` shows the traceback). Other
exceptions are bugs and keep their traceback. Each class also keeps the builtin base it had
before this module existed (ValueError or RuntimeError), so ``except ValueError`` still works.
Nothing here imports torch or semilearn.
"""
from __future__ import annotations


class InputError(Exception):
    """Base of every input error; its message is meant to be a single line."""


class ConfigError(InputError, ValueError):
    """A configuration problem (unknown key, wrong type, impossible setting, run folder)."""


class DataError(InputError, ValueError):
    """Missing or unusable data; the message says what was looked at and what to do."""


class CheckpointError(InputError, RuntimeError):
    """A checkpoint is missing, cannot be read, or does not fit the configured method."""


class NonFiniteError(InputError, RuntimeError):
    """Training produced non-finite losses or gradients too many steps in a row."""


class ReportError(InputError, ValueError):
    """A problem with the report's inputs; its message is folded into a single line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class WriteError(InputError, OSError):
    """A file could not be written (a full disk, a read-only or missing folder). Still an
    :class:`OSError` with its ``errno``, ``strerror`` and ``filename``, so ``except OSError``
    keeps working; as text, one line naming the path and what to do."""

    def __str__(self) -> str:
        return (f"cannot write {self.filename} ({self.strerror}): free space on its disk or choose a writable "
                "place, then run the command again (a run continues with --resume True)")

    @classmethod
    def from_os_error(cls, exc: OSError, path: str) -> "WriteError":
        """The :class:`WriteError` for ``exc`` raised while writing ``path``."""
        if isinstance(exc, cls):
            return exc
        return cls(exc.errno, exc.strerror or str(exc), exc.filename or path)


def brief(value, limit: int = 80) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters (``...`` marks a cut):
    a value the user gave may be arbitrarily long or hold newlines, a message must not."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(text, limit: int = 300) -> str:
    """``text`` (an exception's message, say) folded onto one line, at most ``limit``
    characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class UsageError(InputError, ValueError):
    """A command line that names no work to do (e.g. ``train`` without a method or config)."""
