"""The run folder's layout: every file name, every path, "is it finished", the run lock and
the one reader of the evaluation history. Every module that touches a run folder (or
compare's ``save_dir``) goes through here; what a run folder's *state* means for a command
(new, resume, finished, refused) is :mod:`semi_usb.run_folder`.

A run folder, ``save_dir/save_name``, holds

* ``config.yaml``: the effective configuration; ``versions.json``: packages and hardware;
* ``latest_model.pth``: USB's checkpoint (and ``model_best.pth``);
* ``eval_history.jsonl``: one JSON row per evaluation, appended one line at a time;
* ``log.txt`` and ``tensorboard/``: the run's logs;
* ``.lock``: the lock a writing process holds (``flock``);
* at the end ``test_features.npz`` and, last, ``summary.json``: a run is finished once it has it.

``compare``'s ``save_dir`` also holds ``logs/<run>.log`` (each run's console) and
``logs/slurm_jobs.json`` (the SLURM job of each run). Nothing here imports torch, yaml or
any other module of the package but :mod:`semi_usb.errors`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

from .errors import ConfigError

SUMMARY = "summary.json"
CHECKPOINT = "latest_model.pth"
CONFIG = "config.yaml"
VERSIONS = "versions.json"
HISTORY = "eval_history.jsonl"
LOG = "log.txt"
TENSORBOARD = "tensorboard"
FEATURES = "test_features.npz"
LOCK = ".lock"
LOGS = "logs"  # in compare's save_dir
SLURM_JOBS = "slurm_jobs.json"  # in compare's logs folder


# ----------------------------------------------------------------------------- paths
def run_dir(args: Any) -> str:
    """``save_dir/save_name``."""
    return os.path.join(args.save_dir, args.save_name)


def checkpoint_path(path: str) -> str:
    """The checkpoint USB writes in (and semi_usb resumes from) the run folder ``path``."""
    return os.path.join(path, CHECKPOINT)


def config_path(path: str) -> str:
    """The run's saved configuration in the folder ``path``."""
    return os.path.join(path, CONFIG)


def summary_path(path: str) -> str:
    return os.path.join(path, SUMMARY)


def versions_path(path: str) -> str:
    return os.path.join(path, VERSIONS)


def history_path(path: str) -> str:
    return os.path.join(path, HISTORY)


def log_path(path: str) -> str:
    return os.path.join(path, LOG)


def tensorboard_path(path: str) -> str:
    return os.path.join(path, TENSORBOARD)


def features_path(path: str) -> str:
    return os.path.join(path, FEATURES)


def lock_path(path: str) -> str:
    return os.path.join(path, LOCK)


def eval_output_path(checkpoint: str) -> str:
    """Where ``semilearn eval`` writes the summary of ``checkpoint`` unless told:
    ``eval_<checkpoint name>.json`` beside it."""
    name = os.path.splitext(os.path.basename(checkpoint))[0]
    return os.path.join(os.path.dirname(checkpoint), f"eval_{name}.json")


def logs_dir(save_dir: str) -> str:
    """compare's logs folder in ``save_dir``."""
    return os.path.join(save_dir, LOGS)


def console_log_path(log_dir: str, name: str) -> str:
    """The console output of compare's run ``name`` (local process or SLURM job) in the
    logs folder ``log_dir`` (:func:`logs_dir`)."""
    return os.path.join(log_dir, name + ".log")


def slurm_jobs_path(save_dir: str) -> str:
    """{run name: job id} of the runs submitted to SLURM from ``save_dir``."""
    return os.path.join(logs_dir(save_dir), SLURM_JOBS)


# ----------------------------------------------------------------------------- state
def is_finished(path: str) -> bool:
    """A run is finished once it has its summary (written atomically, at the very end)."""
    return os.path.isfile(summary_path(path))


def has_checkpoint(path: str) -> bool:
    return os.path.isfile(checkpoint_path(path))


def is_run(path: str) -> bool:
    """Whether ``path`` is a run folder (it has ``config.yaml`` or ``summary.json``)."""
    return os.path.isfile(summary_path(path)) or os.path.isfile(config_path(path))


def find_runs(paths: Iterable) -> list:
    """Each path as given, except a folder that is not a run but holds runs (a compare
    ``--save_dir``, or a folder of such folders): the run folders under it, sorted, found at
    any depth."""
    def runs_under(p: str) -> list:
        if is_run(p) or not os.path.isdir(p):
            return [p] if is_run(p) else []
        return [r for d in sorted(os.listdir(p)) for r in runs_under(os.path.join(p, d))]

    out = []
    for p in map(str, paths):
        out.extend(runs_under(p) or [p])
    return out


# ----------------------------------------------------------------------------- the lock
def take_lock(path: str):
    """Open ``path/.lock`` and take ``flock`` on it without waiting; returns (file, created),
    None when the folder itself is gone (removed by a process that created it and then
    failed: the caller claims it again), or raises ConfigError when another process holds
    it. Retries when the file it locked was removed meanwhile. The OS drops the lock when
    the file is closed or the process dies."""
    import fcntl

    lock = lock_path(path)
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileNotFoundError:
            return None  # the run folder was removed under us
        except FileExistsError:
            try:
                fd, created = os.open(lock, os.O_RDWR), False
            except FileNotFoundError:
                continue  # removed between the two opens
        f = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ConfigError(f"run {path} is in use by another process: wait for it to end, "
                              "or choose another save_name") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f, created
        f.close()  # we locked a file that is no longer the run's lock: take the new one
    raise ConfigError(f"run {path}: could not take its lock ({lock}): retry")


def lock_held(path: str) -> bool:
    """Whether a process holds the run's lock (``semilearn train`` while it writes the folder)."""
    lock = lock_path(path)
    if not os.path.isfile(lock):
        return False
    import fcntl

    with open(lock, "a", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


# ----------------------------------------------------------------------------- history
class HistoryLineError(ValueError):
    """A line of ``eval_history.jsonl`` that is not an evaluation row: its file, its line
    number (from 1) and why. Each reader turns it into its own one-line error."""

    def __init__(self, path: str, lineno: int, reason: str):
        super().__init__(f"{path}:{lineno}: {reason}")
        self.path, self.lineno, self.reason = path, lineno, reason


def read_history(path: str, *, strict: bool, need: tuple = ("it",)) -> list:
    """The rows of the run's ``eval_history.jsonl`` in file order ([] without the file).

    A row is a JSON object with the keys ``need``, among them an integer ``it``. Rows are appended
    one line at a time, so a kill can leave a torn last line. ``strict=False`` (a run that
    may be resumed: the resume, ``--status``): that last line, if it is not a row, is
    dropped. ``strict=True`` (a finished run: the report): every line must be a row. Any
    other line that is not a row raises :class:`HistoryLineError`; a file that cannot be
    read raises OSError."""
    hist = history_path(path)
    if not os.path.isfile(hist):
        return []
    with open(hist, encoding="utf-8", errors="replace") as f:
        lines = [(n, line) for n, line in enumerate(f.read().split("\n"), 1) if line.strip()]
    rows = []
    for i, (n, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError as exc:
            problem = f"invalid JSON ({getattr(exc, 'msg', exc)})"
        else:
            if isinstance(row, dict) and isinstance(row.get("it"), int) and all(k in row for k in need):
                rows.append(row)
                continue
            problem = "evaluation record needs " + " and ".join(map(repr, need))
        if not strict and i == len(lines) - 1:
            break  # torn by a kill while it was appended
        raise HistoryLineError(hist, n, problem)
    return rows
