"""Training and evaluation driver: USB's ``train.py`` main/main_worker, device-agnostic.

CPU when no GPU is present; one GPU; or one DDP process per GPU through semilearn's own
``send_model_cuda`` when ``multiprocessing_distributed`` is set and CUDA is available.
A run directory is never deleted: an existing run is resumed from its checkpoint (or the
command refuses), and every run saves its effective configuration, package versions and,
at the end, ``summary.json``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import logging.handlers
import os
import platform
import random
import socket
import sys
import time
import warnings

import numpy as np
import torch
import yaml

from . import compat
from .checkpoint import CheckpointError, atomic_json_dump, load_checkpoint, temp_files
from .config import ConfigError, method_name, setting_name, to_yaml_dict
from .resume import train_time_s

EVAL_HEADS = {"abc": ("aux", "logits_aux"), "acr": ("balanced", "logits_bal"), "semi": ("balanced", "logits_bal")}


def versions() -> dict:
    import semilearn
    import torchvision

    from . import __version__

    return {"semi_usb": __version__, "semilearn": getattr(semilearn, "__version__", "0.3.2"),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def hardware() -> dict:
    info = {"device": "cpu", "cpu": platform.processor() or platform.machine(),
            "num_threads": torch.get_num_threads(), "host": socket.gethostname()}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["num_gpus"] = torch.cuda.device_count()
    return info


def run_dir(args) -> str:
    return os.path.join(args.save_dir, args.save_name)


# Keys that say where and how a run executes, not what it computes: they may differ when a
# run is resumed (another machine, more loader workers, the DDP rendezvous of the new launch).
RUNTIME_KEYS = frozenset({
    "save_dir", "save_name", "load_path", "resume", "overwrite", "use_tensorboard", "use_wandb", "use_aim",
    "num_log_iter", "eval_batch_size", "data_dir", "num_workers", "gpu", "rank", "world_size", "dist_url",
    "dist_backend", "multiprocessing_distributed", "semi_usb_num_threads", "semi_usb_nonfinite_patience",
})


def experiment_changes(args, path: str) -> list:
    """``key=saved (now new)`` for each key, runtime keys aside, whose value differs from the
    ``config.yaml`` of the run in ``path`` (empty when it has none)."""
    saved_file = os.path.join(path, "config.yaml")
    if not os.path.isfile(saved_file):
        return []
    with open(saved_file, encoding="utf-8") as f:
        saved = yaml.safe_load(f) or {}
    now = yaml.safe_load(yaml.safe_dump(to_yaml_dict(args)))  # the same types as the saved file
    return [f"{k}={saved[k]!r} (now {now[k]!r})" for k in sorted(now)
            if k in saved and k not in RUNTIME_KEYS and saved[k] != now[k]]


def check_same_experiment(args, path: str) -> None:
    """Refuse to continue (or count as done) a run with another configuration: USB resumes
    whatever it is given, so a changed budget or schedule would silently mix two experiments
    in one run folder."""
    changes = experiment_changes(args, path)
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise ConfigError(f"run {path} was started with {', '.join(changes[:3])}{more}: continue it with its own "
                          "configuration (its config.yaml), or start a new run from its checkpoint "
                          "(another --save_name, --load_path to the checkpoint)")


def prepare_run_dir(args) -> str:
    """Resume or refuse, never delete (USB's train.py rmtree's an existing run).

    An existing run directory with a checkpoint is resumed when ``resume`` is set (USB's
    configs set it) and the configuration is the run's own, and refused otherwise; a
    directory that exists without a checkpoint is refused unless it is empty. The checkpoint
    to resume from is read here, so that a corrupt one fails before anything is written.
    Nothing is created here: the worker makes the directory once the algorithm (data,
    network) is built.
    """
    path = run_dir(args)
    has_ckpt = os.path.isfile(args.load_path)
    if args.resume and has_ckpt:
        load_checkpoint(args.load_path)  # one-line error if unreadable; USB would train from scratch
    if args.resume and not has_ckpt and os.path.abspath(args.load_path) != os.path.abspath(
            os.path.join(path, "latest_model.pth")):
        raise CheckpointError(f"resume requested but checkpoint not found: {args.load_path}")
    if os.path.isdir(path) and os.listdir(path):
        if args.resume and has_ckpt:
            check_same_experiment(args, path)
            return path
        if os.path.isfile(os.path.join(path, "summary.json")) and not args.resume:
            raise ConfigError(f"run {path} already exists and is finished: choose another save_name or save_dir")
        if not args.resume:
            raise ConfigError(f"run {path} already exists: pass --resume to continue it, or choose another save_name")
        if not has_ckpt and any(f.endswith(".pth") for f in os.listdir(path)):
            raise CheckpointError(f"run {path} has no {os.path.basename(args.load_path)} to resume from")
    return path


def finished_summary(path: str) -> dict | None:
    """The summary of a finished run (its ``summary.json``), or None if it has none yet."""
    summary = os.path.join(path, "summary.json")
    if not os.path.isfile(summary):
        return None
    try:
        with open(summary, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"run {path} has an unreadable summary.json ({type(exc).__name__}: {exc}): "
                          "move it away to evaluate the run's checkpoint again") from None


def write_run_files(args) -> None:
    path = run_dir(args)
    with open(os.path.join(path, "config.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(to_yaml_dict(args), f, sort_keys=True)
    with open(os.path.join(path, "versions.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions(), "hardware": hardware()}, f, indent=1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True


def set_cpu_threads(args) -> None:
    """Leave the data-loading workers a core each when training on the CPU."""
    if torch.cuda.is_available():
        return
    n = args.semi_usb_num_threads or max(1, (os.cpu_count() or 1) - 2 * args.num_workers)
    torch.set_num_threads(n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(args) -> dict | None:
    """Train as configured; returns the summary (rank 0) or None (other ranks).

    Resuming a finished run (it has ``summary.json``) returns its summary and touches
    nothing: USB would evaluate the last checkpoint again and rewrite the summary."""
    compat.apply()
    path = run_dir(args)
    done = finished_summary(path) if args.resume else None
    if done is not None:
        check_same_experiment(args, path)
        print(f"run {path} is finished: nothing to resume (its summary.json is kept)", file=sys.stderr)
        return done
    prepare_run_dir(args)
    ngpus = torch.cuda.device_count()
    if args.multiprocessing_distributed and ngpus > 0:
        from . import preempt

        args.distributed = True
        args.world_size = ngpus * args.world_size
        if args.dist_url.endswith(":11111"):
            args.dist_url = f"tcp://127.0.0.1:{_free_port()}"
        with preempt.catch(preempt.forward_to_children):  # the ranks stop together (preempt.py)
            try:
                torch.multiprocessing.spawn(_worker, nprocs=ngpus, args=(ngpus, args))
            except torch.multiprocessing.ProcessExitedException as exc:
                if exc.exit_code == preempt.PREEMPTED:
                    raise preempt.Preempted(f"stopped by a signal: checkpoint saved in {path}; resume with "
                                            "--resume True") from None
                raise
        return finished_summary(path)
    args.multiprocessing_distributed = False
    args.distributed = args.world_size > 1
    return _worker(args.gpu if ngpus else None, max(ngpus, 1), args)


def place_models(args, alg) -> None:
    """Put model and EMA model on the training device.

    DDP: semilearn's send_model_cuda. Otherwise a DataParallel wrapper (a pass-through on
    CPU and on one GPU) so that USB algorithms that read ``self.model.module`` (ABC, TRAS)
    work as they do under USB's default multi-GPU launch, with the same state-dict keys.
    """
    from semilearn.core.utils import send_model_cuda

    if args.distributed:
        alg.model = send_model_cuda(args, alg.model)
        alg.ema_model = send_model_cuda(args, alg.ema_model, clip_batch=False)
        return
    if torch.cuda.is_available():
        gpu = 0 if args.gpu is None else args.gpu
        torch.cuda.set_device(gpu)
        alg.model = torch.nn.DataParallel(alg.model.cuda(gpu), device_ids=[gpu])
        alg.ema_model = torch.nn.DataParallel(alg.ema_model.cuda(gpu), device_ids=[gpu])
    else:
        alg.model = torch.nn.DataParallel(alg.model)
        alg.ema_model = torch.nn.DataParallel(alg.ema_model)


def fast_step(args, alg) -> None:
    """The opt-in fast path: device-side data, bf16 autocast, channels_last."""
    device = compat.model_device(alg)
    if args.data_pipeline == "gpu":
        from . import device_loader

        device_loader.install(alg, device)
    if args.semi_usb_channels_last:
        alg.model.to(memory_format=torch.channels_last)
        alg.ema_model.to(memory_format=torch.channels_last)
    if args.semi_usb_bf16:
        # USB's train_step runs under `with self.amp_cm():`; ParamUpdateHook scales the loss
        # only when use_amp (fp16) is set, which bf16 does not need.
        alg.amp_cm = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)


def build_algorithm(args, tb_log=None, logger=None):
    """The USB algorithm object (datasets, loaders, model, optimizer, hooks) for ``args``."""
    compat.apply()
    from semilearn.algorithms import get_algorithm
    from semilearn.core.utils import get_net_builder
    from semilearn.imb_algorithms import get_imb_algorithm

    import semilearn.nets

    if not args.net_from_name and not hasattr(semilearn.nets, args.net):
        from .config import _suggest

        raise ConfigError(f"unknown network {args.net!r}{_suggest(args.net, [n for n in dir(semilearn.nets) if not n.startswith('_')])}")
    net_builder = get_net_builder(args.net, args.net_from_name)
    with warnings.catch_warnings():
        # semilearn/core/algorithmbase.py builds torch.cuda.amp.GradScaler() for every run:
        # two warnings (deprecated API; no CUDA) that say nothing about the configuration
        # and would stand before a one-line input error on stderr.
        warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.cuda\.amp\.GradScaler is enabled, but CUDA is not available")
        if args.imb_algorithm is not None:
            return get_imb_algorithm(args, net_builder, tb_log, logger)
        return get_algorithm(args, net_builder, tb_log, logger)


def _worker(gpu, ngpus, args):
    args.gpu = gpu
    seed_everything(args.seed)
    set_cpu_threads(args)
    if args.distributed:
        if args.multiprocessing_distributed:
            args.rank = args.rank * ngpus + gpu
        torch.distributed.init_process_group(backend=args.dist_backend, init_method=args.dist_url,
                                             world_size=args.world_size, rank=args.rank)
    path = run_dir(args)
    main = args.rank % ngpus == 0
    level = "INFO" if main else "WARNING"
    # Build first (data, split, network) and load the checkpoint to resume from (does it
    # fit?): where input errors surface. Only then create the run directory and write its
    # files, so that a bad configuration leaves nothing on disk and a resume with the wrong
    # network does not replace the run's config.yaml. The log lines wait in memory until
    # log.txt exists.
    early = logging.handlers.MemoryHandler(capacity=1 << 20, flushLevel=logging.CRITICAL + 1)
    logger = _logger(args.save_name, None, level)
    logger.addHandler(early)
    resumed = args.resume and os.path.isfile(args.load_path)
    try:
        alg = build_algorithm(args, None, logger)
        place_models(args, alg)
        if resumed:
            load_for_resume(args, alg)
    finally:
        logger.removeHandler(early)
    if not main:
        return _run(args, alg, path, gpu, early, level, resumed, main)
    os.makedirs(path, exist_ok=True)
    with run_lock(path):
        write_run_files(args)
        return _run(args, alg, path, gpu, early, level, resumed, main)


def _run(args, alg, path, gpu, early, level, resumed, main):
    """The part of a worker that writes into the run folder: logs, hooks, training, summary."""
    from semilearn.core.utils import TBLog

    from . import preempt
    from .monitor import EvalHistoryHook, GuardedParamUpdateHook, ProgressHook

    logger = _logger(args.save_name, path, level)
    early.setTarget(next(h for h in logger.handlers if isinstance(h, logging.FileHandler)))
    early.close()  # flushes the lines logged so far into log.txt
    tb_log = alg.tb_log = TBLog(path, "tensorboard", use_tensorboard=args.use_tensorboard) if main else None
    logger.info(f"device: {'cuda:%s' % gpu if gpu is not None else ('cuda' if torch.cuda.is_available() else 'cpu')}")

    fast_step(args, alg)
    alg.register_hook(GuardedParamUpdateHook(args.semi_usb_nonfinite_patience), "ParamUpdateHook", "HIGHEST")
    alg.register_hook(EvalHistoryHook(), "EvalHistoryHook", "NORMAL")
    alg.register_hook(ProgressHook(), "ProgressHook", "LOWEST")
    checkpoint_last(alg)
    stop = preempt.StopRequest()
    alg.register_hook(preempt.StopHook(stop), "StopHook", "LOWEST")  # after the checkpoint hook

    if resumed:
        logger.info(f"resumed from {args.load_path} at iteration {alg.it}")
        _trim_history(path, alg.it)
    elif args.resume:  # killed before its first checkpoint: starts over, so does the history
        _trim_history(path, 0)

    t0, start_it = time.time(), int(alg.it)
    with preempt.catch(stop):  # SIGTERM/SIGUSR1/SIGUSR2: save at the next step boundary, exit 75
        alg.train()
    if not main:
        return None
    wall = train_time_s(alg)  # None: an algorithm with its own loop, timed from here
    summary = make_summary(args, alg, wall_time_s=time.time() - t0 if wall is None else wall, start_it=start_it)
    atomic_json_dump(summary, os.path.join(path, "summary.json"))
    final = summary["final"]
    logger.info(f"final ({summary['model']} model, {summary['head']} head): top-1 {100 * final['top1']:.2f}%, "
                f"balanced {100 * final['balanced_acc']:.2f}%; summary: {os.path.join(path, 'summary.json')}")
    if tb_log is not None and tb_log.use_tensorboard:
        tb_log.writer.flush()
    return summary


@contextlib.contextmanager
def run_lock(path: str):
    """Hold an exclusive lock on the run folder (``flock`` on ``.lock``; the OS drops it when
    the process dies) while this process writes it: a second ``train`` or ``compare`` on the
    same run is refused instead of interleaving checkpoints. With the lock held, temporary
    checkpoint files left by a writer that was killed are removed."""
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


def load_for_resume(args, alg) -> None:
    """Load ``args.load_path`` into ``alg``, with a one-line error if it does not fit the
    configured method and network (its readability was checked by :func:`prepare_run_dir`)."""
    try:
        alg.load_model(args.load_path)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {args.load_path} does not fit {method_name(args)} / {args.net}: "
                              f"{str(exc).splitlines()[0]}") from None


def checkpoint_last(alg) -> None:
    """Move USB's CheckpointHook to the end of the hook list.

    USB registers it at HIGH, so hooks at NORMAL (ACR's Tau1Hook, SeMi's memory bank,
    pseudo-label histogram and Embedding Align centre) update their state *after* the
    step's checkpoint is written: a run resumed from it would miss that step's updates and
    differ from an uninterrupted run. Registering it again under the same name would keep
    its old place in ``hooks_dict`` (an OrderedDict), hence the old one is dropped first.
    """
    from semilearn.core.hooks import CheckpointHook

    alg._hooks = [h for h in alg._hooks if h.name != "CheckpointHook"]
    alg.register_hook(CheckpointHook(), "CheckpointHook", "LOWEST")


def _logger(name: str, path: str, level: str):
    """USB's get_logger, without the file handlers of earlier runs of the same name in this
    process, and with the level set on the logger itself (basicConfig may be a no-op)."""
    import logging

    from semilearn.core.utils import get_logger

    old = logging.getLogger(name)
    for h in [h for h in old.handlers if isinstance(h, logging.FileHandler)]:
        old.removeHandler(h)
        h.close()
    logger = get_logger(name, path, level)
    logger.setLevel(level)
    return logger


def _trim_history(path: str, it: int) -> None:
    """Drop evaluations logged after the checkpoint we resume from (they will be redone)."""
    hist = os.path.join(path, "eval_history.jsonl")
    if not os.path.isfile(hist):
        return
    with open(hist, encoding="utf-8") as f:
        rows = [line for line in f if line.strip() and json.loads(line)["it"] <= it]
    with open(hist, "w", encoding="utf-8") as f:
        f.writelines(rows)


def _class_counts(dataset, num_classes: int) -> list:
    if dataset is None:
        return []
    return np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=num_classes).tolist()


def make_summary(args, alg, wall_time_s: float | None = None, start_it: int = 0) -> dict:
    """Machine-readable result of the EMA model on the test set (the USB eval split).

    ``wall_time_s`` is the run's training time, summed over the processes that trained it
    (:func:`semi_usb.resume.train_time_s`); ``resumed_from_it`` is where the last of them
    started (0 if the run went in one go)."""
    result = getattr(alg, "last_eval", None)
    if result is None:
        alg.evaluate("eval")
        result = alg.last_eval
    head = EVAL_HEADS.get(args.imb_algorithm, ("standard", "logits"))[0]
    per_class = [None if np.isnan(a) else float(a) for a in result.per_class_acc]
    ds = alg.dataset_dict or {}
    return {
        "algorithm": args.algorithm, "imb_algorithm": args.imb_algorithm,
        "method": f"{args.algorithm}+{args.imb_algorithm}" if args.imb_algorithm else args.algorithm,
        "dataset": args.dataset, "net": args.net, "seed": args.seed, "num_classes": args.num_classes,
        "num_labels": args.num_labels, "ulb_num_labels": args.ulb_num_labels,
        "lb_imb_ratio": args.lb_imb_ratio, "ulb_imb_ratio": args.ulb_imb_ratio,
        "setting": setting_name(args), "save_name": args.save_name,
        "num_train_iter": args.num_train_iter, "iterations_done": int(alg.it),
        "batch_size": args.batch_size, "uratio": args.uratio,
        "model": "ema", "head": head,
        "final": {"it": int(alg.it), "top1": result.top1, "balanced_acc": result.balanced_acc,
                  "per_class_acc": per_class, "confusion_matrix": result.confusion.tolist(),
                  "class_names": getattr(ds.get("eval"), "class_names", None)},
        "best": {"it": int(alg.best_it) + 1, "top1": float(alg.best_eval_acc)},
        "lb_class_counts": _class_counts(ds.get("train_lb"), args.num_classes),
        "ulb_class_counts": _class_counts(ds.get("train_ulb"), args.num_classes),
        "hardware": hardware(), "versions": versions(),
        "wall_time_s": wall_time_s, "resumed_from_it": start_it, "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def evaluate_checkpoint(args, checkpoint: str) -> dict:
    """Evaluate the EMA model of ``checkpoint`` on the test set, like the end of training."""
    from semilearn.core.utils import EMA

    ckpt = load_checkpoint(checkpoint)
    seed_everything(args.seed)
    args.distributed = False
    alg = build_algorithm(args)
    place_models(args, alg)
    try:
        alg.load_model(checkpoint)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit {method_name(args)} / {args.net}: "
                              f"{str(exc).splitlines()[0]}") from None
    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.register()
    alg.ema.load(alg.ema_model)
    alg.evaluate("eval")
    alg.it = int(ckpt["it"])
    summary = make_summary(args, alg)
    summary["checkpoint"] = os.path.abspath(checkpoint)
    return summary
