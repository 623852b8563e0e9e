"""A run folder (``save_dir/save_name``) and its state, decided in one place.

A run folder holds ``config.yaml`` (the effective configuration), ``versions.json``,
``latest_model.pth`` (USB's checkpoint), ``eval_history.jsonl``, ``log.txt`` and, once the
run is finished, ``summary.json`` (written atomically at the very end). Its state is one of

* ``finished``: it has ``summary.json``; resuming it returns that summary and touches nothing
  (USB would evaluate the last checkpoint again and rewrite it);
* ``resume``: resume is set and the checkpoint to resume from exists (and is readable, and
  the configuration is the run's own);
* ``new``: nothing to continue (an absent or empty folder, or resume set on a run killed
  before its first checkpoint, which starts over);

or it is **refused** with a one-line :class:`~semi_usb.errors.ConfigError` /
:class:`~semi_usb.errors.CheckpointError`: another configuration in the folder, an existing
run without ``--resume``, a missing or unreadable checkpoint. A run folder is never deleted
(USB's ``train.py`` rmtree's an existing run). ``semilearn train`` (:func:`decide`),
``semilearn compare`` (:func:`state_of`, :func:`check_same_experiment`) and ``semilearn eval``
(:func:`config_path`) read the folder through this module. Nothing here imports torch at
module level.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from .errors import CheckpointError, ConfigError

SUMMARY = "summary.json"
CHECKPOINT = "latest_model.pth"
CONFIG = "config.yaml"
HISTORY = "eval_history.jsonl"

NEW, RESUME, FINISHED = "new", "resume", "finished"

# Keys that say where and how a run executes, not what it computes: they may differ when a
# run is resumed (another machine, more loader workers, the DDP rendezvous of the new launch).
RUNTIME_KEYS = frozenset({
    "save_dir", "save_name", "load_path", "resume", "overwrite", "use_tensorboard", "use_wandb", "use_aim",
    "num_log_iter", "eval_batch_size", "data_dir", "num_workers", "gpu", "rank", "world_size", "dist_url",
    "dist_backend", "multiprocessing_distributed", "semi_usb_num_threads", "semi_usb_nonfinite_patience",
    "verbose",  # issue 20: console output only
})


@dataclass(frozen=True)
class RunFolder:
    """The decision for one run: its folder, its state and, when finished, its summary."""

    path: str
    state: str  # NEW, RESUME or FINISHED
    summary: Optional[dict] = None


def run_dir(args: Any) -> str:
    """``save_dir/save_name``."""
    return os.path.join(args.save_dir, args.save_name)


def checkpoint_path(path: str) -> str:
    """The checkpoint USB writes in (and semi_usb resumes from) the run folder ``path``."""
    return os.path.join(path, CHECKPOINT)


def config_path(path: str) -> str:
    """The run's saved configuration in the folder ``path``."""
    return os.path.join(path, CONFIG)


def is_finished(path: str) -> bool:
    """A run is finished once it has its summary (written atomically, at the very end)."""
    return os.path.isfile(os.path.join(path, SUMMARY))


def state_of(path: str) -> str:
    """The state of the run folder ``path`` from its files alone, for a run that resumes from
    its own checkpoint (``compare``'s runs): FINISHED, RESUME or NEW."""
    if is_finished(path):
        return FINISHED
    return RESUME if os.path.isfile(checkpoint_path(path)) else NEW


def read_summary(path: str) -> dict | None:
    """The summary of a finished run (its ``summary.json``), or None if it has none yet."""
    summary = os.path.join(path, SUMMARY)
    if not os.path.isfile(summary):
        return None
    try:
        with open(summary, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"run {path} has an unreadable summary.json ({type(exc).__name__}: {exc}): "
                          "move it away to evaluate the run's checkpoint again") from None


def experiment_changes(args: Any, path: str) -> list:
    """``key=saved (now new)`` for each key, runtime keys aside, whose value differs from the
    ``config.yaml`` of the run in ``path`` (empty when it has none)."""
    from .config import to_yaml_dict

    saved_file = config_path(path)
    if not os.path.isfile(saved_file):
        return []
    with open(saved_file, encoding="utf-8") as f:
        saved = yaml.safe_load(f) or {}
    now = yaml.safe_load(yaml.safe_dump(to_yaml_dict(args)))  # the same types as the saved file
    return [f"{k}={saved[k]!r} (now {now[k]!r})" for k in sorted(now)
            if k in saved and k not in RUNTIME_KEYS and saved[k] != now[k]]


def check_same_experiment(args: Any, path: str) -> None:
    """Refuse to continue (or count as done) a run with another configuration: USB resumes
    whatever it is given, so a changed budget or schedule would silently mix two experiments
    in one run folder."""
    changes = experiment_changes(args, path)
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise ConfigError(f"run {path} was started with {', '.join(changes[:3])}{more}: continue it with its own "
                          "configuration (its config.yaml), or start a new run from its checkpoint "
                          "(another --save_name, --load_path to the checkpoint)")


def decide(args: Any) -> RunFolder:
    """Finished, resume or new for the run ``args`` configures; refused with a one-line error.

    A finished run (``summary.json``) is reported as such when resume is set. Otherwise an
    existing run directory with a checkpoint is resumed when ``resume`` is set and the
    configuration is the run's own, and refused otherwise; a directory that exists without a
    checkpoint is refused unless it is empty. The checkpoint to resume from is read here, so
    that a corrupt one fails before anything is written. Nothing is created here: the worker
    makes the directory once the algorithm (data, network) is built.
    """
    path = run_dir(args)
    done = read_summary(path) if args.resume else None
    if done is not None:
        check_same_experiment(args, path)
        return RunFolder(path, FINISHED, done)
    has_ckpt = os.path.isfile(args.load_path)
    if args.resume and has_ckpt:
        from .checkpoint import load_checkpoint

        load_checkpoint(args.load_path)  # one-line error if unreadable; USB would train from scratch
    if args.resume and not has_ckpt and os.path.abspath(args.load_path) != os.path.abspath(checkpoint_path(path)):
        raise CheckpointError(f"resume requested but checkpoint not found: {args.load_path}")
    if os.path.isdir(path) and os.listdir(path):
        if args.resume and has_ckpt:
            check_same_experiment(args, path)
            return RunFolder(path, RESUME)
        if is_finished(path) and not args.resume:
            raise ConfigError(f"run {path} already exists and is finished: choose another save_name or save_dir")
        if not args.resume:
            raise ConfigError(f"run {path} already exists: pass --resume to continue it, or choose another save_name")
        if not has_ckpt and any(f.endswith(".pth") for f in os.listdir(path)):
            raise CheckpointError(f"run {path} has no {os.path.basename(args.load_path)} to resume from")
    return RunFolder(path, RESUME if args.resume and has_ckpt else NEW)


def write_run_files(args: Any) -> None:
    """``config.yaml`` (the effective configuration) and ``versions.json`` (packages, hardware)."""
    from .config import to_yaml_dict
    from .summary import hardware, versions

    path = run_dir(args)
    with open(config_path(path), "w", encoding="utf-8") as f:
        yaml.safe_dump(to_yaml_dict(args), f, sort_keys=True)
    with open(os.path.join(path, "versions.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions(), "hardware": hardware()}, f, indent=1)


@contextlib.contextmanager
def run_lock(path: str):
    """Hold an exclusive lock on the run folder (``flock`` on ``.lock``; the OS drops it when
    the process dies) while this process writes it: a second ``train`` or ``compare`` on the
    same run is refused instead of interleaving checkpoints. With the lock held, temporary
    checkpoint files left by a writer that was killed are removed."""
    from .checkpoint import temp_files

    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX: no lock)
        yield
        return
    with open(os.path.join(path, ".lock"), "a", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"run {path} is in use by another process: wait for it to end, "
                              "or choose another save_name") from None
        for stale in temp_files(path):
            os.remove(stale)
        yield


def trim_history(path: str, it: int) -> None:
    """Drop evaluations logged after the checkpoint we resume from (they will be redone)."""
    hist = os.path.join(path, HISTORY)
    if not os.path.isfile(hist):
        return
    with open(hist, encoding="utf-8") as f:
        rows = [line for line in f if line.strip() and json.loads(line)["it"] <= it]
    with open(hist, "w", encoding="utf-8") as f:
        f.writelines(rows)
