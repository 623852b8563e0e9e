"""Crash-safe checkpoint (and summary) files.

A checkpoint or a run's ``summary.json`` is written to a temporary file in the same folder,
flushed to disk and then renamed over the target (``os.replace`` is atomic on POSIX), so a
process killed at any moment leaves either the previous complete file or the new one.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
from typing import Any, Callable

from .errors import CheckpointError, WriteError

# torch is imported by the functions that need it: atomic_write serves ``semilearn report``
# too, which must not import torch.


TEMP_SUFFIX = ".tmp"


def temp_files(folder: str) -> list:
    """The temporary files (``.<name>.<random>.tmp``) that :func:`atomic_write` leaves in
    ``folder`` when its process is killed mid-write; never read, safe to remove once no
    writer is running."""
    return glob.glob(os.path.join(folder, ".*" + TEMP_SUFFIX))


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``:
    a reader sees the old complete file or the new complete one, never a partial one.

    A failed write (a full disk, a read-only folder) leaves ``path`` as it was, removes the
    temporary file and raises :class:`~semi_usb.errors.WriteError` naming ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX, dir=folder)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteError.from_os_error(exc, path) from None
        raise


def append_line(path: str, line: str) -> None:
    """Append one text line to ``path`` (a log of rows: ``eval_history.jsonl``), flushed to
    disk. A failed write (a full disk) cuts the file back to what it held and raises
    :class:`~semi_usb.errors.WriteError`; a kill mid-append leaves a torn last line, which
    the readers of these files drop."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError.from_os_error(exc, path) from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise WriteError.from_os_error(exc, path) from None
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``.

    Serialized in memory first, then written: torch's zip writer turns a failed write
    (a full disk) into a RuntimeError about stream positions; written as bytes, the
    failure stays the OSError (``ENOSPC``) that says what happened."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))


def atomic_json_dump(obj: Any, path: str) -> None:
    """``json.dump(obj, path)`` that never leaves a partial file at ``path`` (a partial
    ``summary.json`` would mark a run finished that has no result)."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=1), mode="w")


def load_checkpoint(path: str, mmap: bool = False) -> dict:
    """Read a checkpoint on the CPU, with a one-line error if it is missing or unreadable.
    ``mmap``: map its tensors instead of reading them (a check that the file is a whole
    checkpoint, before USB's ``load_model`` reads it, once)."""
    import torch

    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # truncated, not a torch file, ...
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a semilearn checkpoint (no 'model' entry)")
    return ckpt
