"""A run's logs: ``log.txt``, the console and TensorBoard's event files.

USB's lines (``print_fn`` and semilearn's bare ``print`` calls) go to ``log.txt`` in USB's
format, and to the console only with ``--verbose`` (a quiet console). A write that
fails (a full disk) stops the run with the one-line :class:`~semi_usb.errors.WriteError`
naming the file, for ``log.txt`` and for TensorBoard alike (docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from typing import Iterator

from .errors import WriteError
from .layout import log_path, tensorboard_path

LOG_FORMAT = "[%(asctime)s %(levelname)s] %(message)s"  # USB's get_logger format


class _RunLogFile(logging.FileHandler):
    """``log.txt``: a failed write (a full disk) stops the run with the one-line
    :class:`~semi_usb.errors.WriteError` naming the file, instead of logging's own traceback
    on stderr (``logging.Handler.handleError``) while the run goes on without its log."""

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            raise WriteError.from_os_error(exc, self.baseFilename) from None
        super().handleError(record)


def run_logger(name: str, path: str | None, level: str, verbose: bool = False) -> logging.Logger:
    """The run's logger, USB's lines (``print_fn``) in ``path/log.txt`` in USB's format, on the
    console (stderr) only when ``verbose``.

    Not USB's ``get_logger``: its ``logging.basicConfig`` puts a console handler on the root
    logger, which prints every line (confusion matrices included) next to the progress line.
    File and console handlers of earlier runs of the same name in this process are dropped."""
    logger = logging.getLogger(name)
    for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler) or getattr(h, "semi_usb_console", False)]:
        logger.removeHandler(h)
        h.close()
    logger.propagate = False
    logger.setLevel(level)
    handlers = []
    if path is not None:
        os.makedirs(path, exist_ok=True)
        handlers.append(_RunLogFile(log_path(path)))
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.semi_usb_console = True
        handlers.append(console)
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(h)
    return logger


class _LogLines:
    """A text stream whose lines go to a logger (semilearn's bare ``print`` calls)."""

    def __init__(self, logger: logging.Logger):
        self.logger, self.buffer = logger, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line)
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def usb_prints(logger: logging.Logger, verbose: bool, stdout: bool = True) -> Iterator[None]:
    """Where semilearn's bare ``print`` calls go (``cifar.py``'s class counts, ``misc.py``'s
    "overlapped by kwargs", ...): into ``logger`` unless ``verbose``; with ``verbose`` on
    stdout, or stderr when stdout is reserved (``stdout=False``: eval's JSON)."""
    if verbose and stdout:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr if verbose else _LogLines(logger)):
        yield


class TensorBoardLog:
    """TensorBoard's event files in ``path/tensorboard``, with the one method semilearn calls
    on its ``TBLog`` (``update``, ``core/hooks/logging.py``).

    TensorBoard writes from a background thread, which keeps a failed write and raises it at
    the next ``add_scalar`` or ``flush``: there it becomes the one-line WriteError naming the
    folder, and the thread's own traceback is not printed (:func:`tensorboard_log`)."""

    def __init__(self, path: str):
        from torch.utils.tensorboard import SummaryWriter

        self.tb_dir = tensorboard_path(path)
        with self._one_line():
            self.writer = SummaryWriter(self.tb_dir)

    @contextlib.contextmanager
    def _one_line(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise WriteError.from_os_error(exc, self.tb_dir) from None

    def update(self, log_dict: dict, it: int, suffix: str | None = None, mode: str = "train") -> None:
        """semilearn's ``TBLog.update``: one scalar per key at iteration ``it``."""
        with self._one_line():
            for key, value in log_dict.items():
                self.writer.add_scalar((suffix or "") + key, value, it)

    def close(self) -> None:
        with self._one_line():
            self.writer.close()


def _quiet_writer_thread(previous, args) -> None:
    """``threading.excepthook`` while a :class:`TensorBoardLog` is open: the writer thread's
    OSError is not printed (the main thread raises it as a WriteError); others are."""
    if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
        return
    previous(args)


@contextlib.contextmanager
def tensorboard_log(path: str, enabled: bool) -> Iterator[TensorBoardLog | None]:
    """A :class:`TensorBoardLog` under ``path`` (or None when not ``enabled``), closed (its
    events on disk) when the block ends; a failed close is the same one-line WriteError."""
    if not enabled:
        yield None
        return
    log = TensorBoardLog(path)
    previous = threading.excepthook
    threading.excepthook = functools.partial(_quiet_writer_thread, previous)
    try:
        yield log
    except BaseException:
        with contextlib.suppress(OSError):  # the block's own error is the one to report
            log.close()
        raise
    else:
        log.close()
    finally:
        threading.excepthook = previous
