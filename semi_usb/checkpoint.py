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

from .errors import CheckpointError, WriteError, one_line

# torch is imported by the functions that need it: atomic_write serves ``semilearn report``
# too, which must not import torch.


TEMP_SUFFIX = ".tmp"


def temp_files(folder: str) -> list:
    """The temporary files (``.<name>.<random>.tmp``) that :func:`atomic_write` leaves in
    ``folder`` when its process is killed mid-write; never read, safe to remove once no
    writer is running."""
    return glob.glob(os.path.join(folder, ".*" + TEMP_SUFFIX))


def current_umask() -> int:
    """The process's umask (os has no getter: it is set and put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: the mode of any other new file
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


def nonfinite_tensors(state: Any) -> list:
    """The names of the floating-point tensors of ``state`` (modules, state dicts, or dicts
    of them) that hold a NaN or an infinity. One device sync for the whole check (a
    checkpoint's, not a training step's)."""
    import torch

    named = []

    def walk(obj: Any, prefix: str) -> None:
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}{k}" if isinstance(v, torch.Tensor) else f"{prefix}{k}/")
        elif isinstance(obj, torch.Tensor) and obj.is_floating_point():
            named.append((prefix, obj))

    walk(state, "")
    if not named:
        return []
    flags = [torch.isfinite(t).all() for _, t in named]
    if bool(torch.stack([f.to(flags[0].device) for f in flags]).all()):
        return []
    return [name for (name, _), ok in zip(named, flags) if not bool(ok)]


def last_good_checkpoint(checkpoint: str) -> str:
    """What a run stopped for non-finite weights has left: its last checkpoint (the file
    ``checkpoint``), intact since none with non-finite weights is ever written, or none."""
    run = os.path.dirname(checkpoint)
    if os.path.isfile(checkpoint):
        return f"the last checkpoint in {run} is intact"
    return (f"no good checkpoint exists in {run} (none was written before the run diverged): start it again with "
            "other settings (a lower lr, say)")


def check_finite_model(ckpt: dict, path: str, use: str) -> None:
    """Refuse a checkpoint whose model or EMA model holds non-finite weights (a diverged run)."""
    bad = nonfinite_tensors({k: ckpt[k] for k in ("model", "ema_model") if k in ckpt})
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): "
                              f"the run diverged; {use}")


def load_failure(exc: Exception) -> str:
    """Why ``torch.load`` failed, on one line: for the weights-only unpickler, its own
    reason (``WeightsUnpickler error: ...``) without torch's paragraphs of advice."""
    text = str(exc)
    if "mmap can only be used with files saved with" in text:  # torch.load(mmap=True) of a non-zip file
        return "not a checkpoint written by torch.save (not its zip format)"
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = "not a checkpoint of tensors: " + " ".join(text.split())
    return one_line(text)


def load_checkpoint(path: str, mmap: bool = False) -> dict:
    """Read a checkpoint on the CPU, with a one-line error if it is missing or unreadable.
    ``mmap``: map its tensors instead of reading them (a check that the file is a whole
    checkpoint, before USB's ``load_model`` reads it, once)."""
    import torch

    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    import warnings

    try:
        with warnings.catch_warnings():
            # torch/_weights_only_unpickler.py warns about a pickle protocol other than its own
            # before failing on a file that is not a torch checkpoint: two lines before the error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # truncated, not a torch file, ...
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {load_failure(exc)})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a semilearn checkpoint (no 'model' entry)")
    return ckpt
