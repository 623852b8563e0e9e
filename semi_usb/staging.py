"""A folder made whole or not at all: ``semilearn data import`` / ``import-idx`` fill a
temporary sibling of their target and rename it into place once every file is written.

* While it is being filled, the sibling is ``.<name>.importing-<random>`` and holds ``flock``
  on itself: nothing that reads ``<name>`` (``train``, a second import) sees a partial folder.
* A failure (a full disk, a bad image, Ctrl-C) removes the sibling and the parent folders
  the import created; a ``SIGKILL`` leaves the hidden sibling, unlocked, which the next
  import of the same target removes.
* The renamed folder carries :data:`MARK` (``.semi_usb_import.json``: source, number of
  files), so that "already exists" can say whether the existing folder is a complete import.

Nothing here imports torch.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
import time

from .errors import DataError

MARK = ".semi_usb_import.json"
STAGING = ".importing-"


def _files_under(folder: str) -> int:
    return sum(len([f for f in files if f != MARK]) for _, _, files in os.walk(folder))


def describe_existing(target: str) -> str:
    """``<target> already exists``, and whether it is a complete import."""
    mark = os.path.join(target, MARK)
    try:
        with open(mark, encoding="utf-8") as f:
            info = json.load(f)
        expected = int(info["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return (f"{target} already exists and is not a complete import (no {MARK}: files put there by hand, or an "
                "import interrupted before this check existed): check it, or remove it and import again")
    found = _files_under(target)
    if found != expected:
        return (f"{target} already exists and is incomplete ({found} of the {expected} files its import wrote): "
                "remove it and import again")
    return (f"{target} already exists and is a complete import ({expected} files from {info.get('source')}): "
            "remove it first to re-import")


def refuse_existing(target: str) -> None:
    if os.path.lexists(target):
        raise DataError(describe_existing(target))


def _remove_abandoned(target: str) -> None:
    """Remove the staging folders of ``target`` whose import is gone (killed: unlocked)."""
    import fcntl

    parent, name = os.path.split(os.path.abspath(target))
    for stale in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}{STAGING}*")):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another import is filling it
        finally:
            os.close(fd)
        shutil.rmtree(stale, ignore_errors=True)


def make_parents(parent: str) -> list:
    """``os.makedirs(parent)``, returning the folders it created (deepest last), so that a
    failed command can remove exactly those."""
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
            created.append(folder)
        except FileExistsError:
            pass
    return created


@contextlib.contextmanager
def staged_folder(target: str, source: str):
    """Yield an empty temporary sibling of ``target`` to fill; when the block ends without
    an error, mark it (:data:`MARK`) and rename it to ``target``. On any error (the
    ``OSError`` of a full disk becomes a one-line :class:`DataError`) or interrupt, nothing
    is left: not the sibling, not the parents made for it."""
    import fcntl

    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    refuse_existing(target)
    try:
        created = make_parents(parent)
    except OSError as exc:
        raise DataError(f"cannot create {parent} ({exc.strerror}): choose a writable place to import into") from None
    work = fd = None
    try:
        _remove_abandoned(target)
        work = tempfile.mkdtemp(prefix=f".{name}{STAGING}", dir=parent)
        os.chmod(work, 0o777 & ~_umask())  # mkdtemp makes 0700: the mode of any other new folder
        fd = os.open(work, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until renamed: a second import leaves it alone
        yield work
        with open(os.path.join(work, MARK), "w", encoding="utf-8") as f:
            json.dump({"source": os.path.abspath(source), "files": _files_under(work),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
        refuse_existing(target)  # made meanwhile by another import
        os.rename(work, target)
        work = None
    except OSError as exc:
        raise DataError(f"cannot write the import of {source} into {target} ({_reason(exc)}): free space on its disk "
                        "or choose a writable place, then import again; nothing was imported") from None
    finally:
        if fd is not None:
            os.close(fd)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _reason(exc: OSError) -> str:
    """The first reason of an OSError, on one line (shutil.copytree gathers one error per
    file into a single ``shutil.Error``: on a full disk, hundreds of kilobytes)."""
    from .errors import one_line

    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        import re

        first = exc.args[0][0]
        why = str(first[-1] if isinstance(first, tuple) else first)  # "[Errno 28] No space left on device: ..."
        match = re.match(r"\[Errno \d+\] ([^:]+)", why)
        return one_line(match.group(1) if match else why, 200)
    return one_line(exc.strerror or exc, 200)


def _umask() -> int:
    from .checkpoint import current_umask

    return current_umask()
