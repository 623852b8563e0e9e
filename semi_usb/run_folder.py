"""A run folder's state for a command, decided in one place.

The folder's files, paths and lock are :mod:`semi_usb.layout`'s. Its state is one of

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
``semilearn compare`` (:func:`check_same_experiment`) read the folder's configuration through
this module; ``train`` claims it with :func:`claim` (create-or-find and lock in one step, then
:func:`decide` under the lock). Nothing here imports torch at module level.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from .config import RUNTIME_KEYS, method_class, to_yaml_dict
from .errors import CheckpointError, ConfigError
from .layout import (LOCK, HistoryLineError, checkpoint_path, config_path, history_path, is_finished, lock_path,
                     read_history, run_dir, summary_path, take_lock, versions_path)
from .staging import make_parents

NEW, RESUME, FINISHED = "new", "resume", "finished"


@dataclass(frozen=True)
class RunFolder:
    """The decision for one run: its folder, its state and, when finished, its summary."""

    path: str
    state: str  # NEW, RESUME or FINISHED
    summary: Optional[dict] = None


def read_summary(path: str) -> dict | None:
    """The summary of a finished run (its ``summary.json``), or None if it has none yet."""
    summary = summary_path(path)
    if not os.path.isfile(summary):
        return None
    try:
        with open(summary, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"run {path} has an unreadable summary.json ({type(exc).__name__}: {exc}): "
                          "move it away to evaluate the run's checkpoint again") from None


def saved_config(path: str) -> dict:
    """The ``config.yaml`` of the run in ``path``; a missing, empty or unreadable one is a
    one-line error: a resume cannot know which experiment the folder holds without it."""
    saved_file = config_path(path)
    fix = ("restore it from a copy, or start a new run from its checkpoint "
           "(another --save_name, --load_path to the checkpoint)")
    try:
        with open(saved_file, encoding="utf-8") as f:
            saved = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"run {path} has no config.yaml: its configuration is unknown; {fix}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"run {path} has an unreadable config.yaml ({type(exc).__name__}): {fix}") from None
    if not isinstance(saved, dict) or not saved:
        raise ConfigError(f"run {path} has an empty or partial config.yaml: {fix}")
    return saved


def absent_means(args: Any, key: str, saved: dict) -> Any:
    """The value of ``key`` that a ``config.yaml`` written before the key existed (``saved``)
    means: the method class's ``absent_means`` (e.g. ACR's ``acr_mask_l``), None where the key
    cannot change such a run. Any other key that a saved configuration lacks is taken to be at
    a default that computes what the code before it did."""
    declared = getattr(method_class(args.algorithm, args.imb_algorithm), "absent_means", None)
    return None if declared is None else declared(key, saved)


def experiment_changes(args: Any, path: str) -> list:
    """``key=saved (now new)`` for each key, runtime keys aside, whose value differs from the
    ``config.yaml`` of the run in ``path`` (which must exist and be readable); a key that the
    file lacks counts at the value the file means (:func:`absent_means`)."""
    saved = saved_config(path)
    now = yaml.safe_load(yaml.safe_dump(to_yaml_dict(args)))  # the same types as the saved file
    changes = []
    for k in sorted(set(now) - RUNTIME_KEYS):
        if k in saved:
            if saved[k] != now[k]:
                changes.append(f"{k}={saved[k]!r} (now {now[k]!r})")
        else:
            meant = absent_means(args, k, saved)
            if meant is not None and meant != now[k]:
                changes.append(f"{k}={meant!r} (absent from its config.yaml, which predates the key; now {now[k]!r})")
    return changes


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
    that a corrupt one fails before anything is written. It runs under :func:`claim`'s lock
    (the folder may hold just that ``.lock``, which counts as empty).
    """
    path = run_dir(args)
    done = read_summary(path) if args.resume else None
    if done is not None:
        check_same_experiment(args, path)
        return RunFolder(path, FINISHED, done)
    has_ckpt = os.path.isfile(args.load_path)
    if args.resume and has_ckpt:
        from .checkpoint import check_finite_model, load_checkpoint

        # one-line error if unreadable (USB would train from scratch) or diverged; its tensors are
        # mapped here and read by the resume's load_model
        check_finite_model(load_checkpoint(args.load_path, mmap=True), args.load_path,
                           "start the run again with other settings (another --save_name)")
    if args.resume and not has_ckpt and os.path.abspath(args.load_path) != os.path.abspath(checkpoint_path(path)):
        raise CheckpointError(f"resume requested but checkpoint not found: {args.load_path}")
    if os.path.isdir(path) and run_files(path):
        if args.resume and has_ckpt:
            check_same_experiment(args, path)
            resume_history(path)  # an unreadable row fails here, before anything is written
            return RunFolder(path, RESUME)
        if is_finished(path) and not args.resume:
            raise ConfigError(f"run {path} already exists and is finished: choose another save_name or save_dir")
        if not args.resume:
            raise ConfigError(f"run {path} already exists: pass --resume to continue it, or choose another save_name")
        if not has_ckpt and any(f.endswith(".pth") for f in run_files(path)):
            raise CheckpointError(f"run {path} has no {os.path.basename(args.load_path)} to resume from")
    return RunFolder(path, RESUME if args.resume and has_ckpt else NEW)


def write_run_files(args: Any) -> None:
    """``config.yaml`` (the effective configuration) and ``versions.json`` (packages, hardware),
    each written atomically (temporary file, fsync, rename): a kill leaves the old file or
    the new one, never a partial one that a resume would trust."""
    from .checkpoint import atomic_json_dump, atomic_write
    from .summary import hardware, versions

    path = run_dir(args)
    atomic_write(config_path(path), lambda f: yaml.safe_dump(to_yaml_dict(args), f, sort_keys=True), mode="w")
    atomic_json_dump({"versions": versions(), "hardware": hardware()}, versions_path(path))


def _make_dirs(path: str) -> list:
    """``os.makedirs(path)`` that returns the folders it created, deepest last (so that a
    failed command can remove exactly those); raises FileExistsError if ``path`` exists."""
    created = make_parents(os.path.dirname(os.path.abspath(path)))
    os.mkdir(path)  # the claim: exactly one process creates the run folder
    return created + [path]


def _claim_dirs(path: str) -> list:
    """Create the run folder (and its missing parents) or find it existing; returns the
    folders created. A place that cannot be written is a one-line error."""
    try:
        return _make_dirs(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise ConfigError(f"run folder {path} exists and is not a folder: choose another save_name") from None
        return []
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {path} ({exc.strerror}): choose a writable save_dir") from None


@contextlib.contextmanager
def claim(args: Any):
    """Claim the run folder, then decide its state under the claim; yields the
    :class:`RunFolder`.

    The folder is created (``os.mkdir``, which exactly one process can do) or found, and
    ``flock`` is taken on its ``.lock`` before anything is read: of two commands on one
    ``save_name`` exactly one goes on, the other is refused with one line (the existence
    check and the lock are one step, not two). :func:`decide` then runs under the lock.
    The lock is held until the block ends (the OS drops it when the process dies). With the
    lock held, temporary files left by a killed writer are removed. If the block fails (an
    input error, a bug) or the run is finished, what this claim created and what is still
    empty (the folder, its missing parents, the lock file) is removed again: a failed
    command leaves ``save_dir`` as it was; a folder holding a run's files is never removed.
    """
    from .checkpoint import temp_files

    path = run_dir(args)
    for _ in range(20):
        created = _claim_dirs(path)
        try:
            taken = take_lock(path)
        except BaseException:
            _remove_empty(created)
            raise
        if taken is not None:
            break
    else:
        raise ConfigError(f"run {path}: the folder keeps disappearing while its lock is taken: retry")
    lock, made_lock = taken
    keep = False
    try:
        for stale in temp_files(path):
            os.remove(stale)
        folder = decide(args)
        keep = folder.state != FINISHED
        yield folder
    except BaseException:
        keep = any(n != LOCK for n in os.listdir(path)) if os.path.isdir(path) else False
        raise
    finally:
        if not keep and made_lock:
            with contextlib.suppress(OSError):
                os.remove(lock_path(path))
        lock.close()
        _remove_empty(created)


def _remove_empty(created: list) -> None:
    """Remove the folders of ``created`` that are (still) empty, deepest first."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # fails (and is kept) when not empty


def run_files(path: str) -> list:
    """The entries of a run folder other than its lock and stray temporary files."""
    from .checkpoint import TEMP_SUFFIX

    return [n for n in os.listdir(path) if n != LOCK and not (n.startswith(".") and n.endswith(TEMP_SUFFIX))]


def resume_history(path: str) -> list:
    """The run's evaluation rows for a resume: a torn last line (a kill while it was
    appended) is dropped, the evaluation is redone after the resume; an unreadable row
    before the last is a one-line error."""
    try:
        return read_history(path, strict=False)
    except HistoryLineError as exc:
        raise CheckpointError(f"{exc.path} line {exc.lineno} is not an evaluation row: move the file away "
                              "to resume without the run's evaluation history") from None


def trim_history(path: str, it: int) -> None:
    """Drop evaluations logged after the checkpoint we resume from (they will be redone)
    and a torn last line; the rewrite is atomic (temporary file, fsync, rename), so a kill
    during it leaves the old history or the new one, never a shorter one."""
    from .checkpoint import atomic_write

    hist = history_path(path)
    if not os.path.isfile(hist):
        return
    rows = [json.dumps(r) + "\n" for r in resume_history(path) if r["it"] <= it]
    atomic_write(hist, lambda f: f.writelines(rows), mode="w")
