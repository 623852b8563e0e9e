"""Launching training: USB's ``train.py`` main/main_worker, device-agnostic.

CPU when no GPU is present; one GPU; or one DDP process per GPU through semilearn's own
``send_model_cuda`` when ``multiprocessing_distributed`` is set and CUDA is available.
Whether the run folder is new, resumed, finished or refused is decided once, by
:func:`semi_usb.run_folder.decide`; every run saves its effective configuration, package
versions and, at the end, ``summary.json`` (:mod:`semi_usb.summary`). Evaluating a
checkpoint is :mod:`semi_usb.evaluation`.
"""
from __future__ import annotations

import functools
import logging.handlers
from dataclasses import dataclass
import os
import random
import socket
import sys
import time
import warnings

import numpy as np
import torch

from . import compat, plugin
from .checkpoint import atomic_json_dump, last_good_checkpoint, nonfinite_tensors
from .datasets import write_data_caches
from .errors import CheckpointError, ConfigError, NonFiniteError, brief, one_line
from .features import save_test_features
from .imb_algorithms.device import is_main_rank, model_device
from .layout import checkpoint_path, summary_path
from .naming import method_folder
from .ranges import check_gpu
from .resume import train_time_s
from .run_log import run_logger, tensorboard_log, usb_prints
from .run_folder import FINISHED, RESUME, RunFolder, claim, decide, read_summary, trim_history, write_run_files
from .summary import make_summary


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


def train(args, notes=()) -> dict | None:
    """Train as configured; returns the summary (rank 0) or None (other ranks).

    ``notes`` (lines the configuration produced: ignored keys, a derived run name) are
    printed on stderr and logged into ``log.txt`` once the run has started (its files are
    written), so that a refused command prints its one error line alone.

    Resuming a finished run (it has ``summary.json``) returns its summary and touches
    nothing: USB would evaluate the last checkpoint again and rewrite the summary."""
    compat.apply()
    check_gpu(args)  # before anything is written
    if args.world_size > 1 and not args.multiprocessing_distributed and args.rank != 0:
        # a rank of an externally launched DDP job: rank 0 claims and writes the folder
        return _launch(args, decide(args))
    with claim(args) as folder:  # the run folder, locked, and its state decided under the lock
        if folder.state == FINISHED:
            print(f"run {folder.path} is finished: nothing to resume (its summary.json is kept)", file=sys.stderr)
            return folder.summary
        return _launch(args, folder, tuple(notes))


def _launch(args, folder: RunFolder, notes=()) -> dict | None:
    ngpus = torch.cuda.device_count()
    if args.multiprocessing_distributed and ngpus > 0:
        from . import preempt

        args.distributed = True
        args.world_size = ngpus * args.world_size
        if args.dist_url.endswith(":11111"):
            args.dist_url = f"tcp://127.0.0.1:{_free_port()}"
        with preempt.catch(preempt.forward_to_children):  # the ranks stop together (preempt.py)
            try:
                torch.multiprocessing.spawn(_worker, nprocs=ngpus, args=(ngpus, args, folder, notes))
            except torch.multiprocessing.ProcessExitedException as exc:
                if exc.exit_code == preempt.PREEMPTED:
                    raise preempt.Preempted(f"stopped by a signal: checkpoint saved in {folder.path}; resume with "
                                            "--resume True") from None
                raise
        return read_summary(folder.path)
    args.multiprocessing_distributed = False
    args.distributed = args.world_size > 1
    return _worker(args.gpu if ngpus else None, max(ngpus, 1), args, folder, notes)


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
    device = model_device(alg)
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


def describe_loaders(alg) -> str:
    """Which loaders feed the run, as they are now: ``train_lb on-device, ...`` for the fast
    path's device-side batches, ``USB`` for USB's own loaders (logged into log.txt)."""
    from .device_loader import DeviceBatches

    return ", ".join(f"{name} {'on-device' if isinstance(loader.collate_fn, DeviceBatches) else 'USB'}"
                     for name, loader in alg.loader_dict.items() if loader is not None)


def build_algorithm(args, tb_log=None, logger=None):
    """The USB algorithm object (datasets, loaders, model, optimizer, hooks) for ``args``."""
    compat.apply()
    plugin.register()
    from semilearn.algorithms import get_algorithm
    from semilearn.core.utils import get_net_builder
    from semilearn.imb_algorithms import get_imb_algorithm

    check_network_name(args)
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


@dataclass
class WorkerRun:
    """What one worker process trains: its configuration, its algorithm (built, placed,
    loaded when resumed), its run folder and its place among the processes."""

    args: object
    alg: object
    folder: RunFolder
    gpu: int | None
    main: bool  # the process that writes the run folder (imb_algorithms.device.is_main_rank)
    level: str  # its log level
    early: logging.handlers.MemoryHandler  # the log lines written before log.txt existed
    notes: tuple = ()  # the configuration's notes, printed once the run has started

    @property
    def resumed(self) -> bool:
        return self.folder.state == RESUME


def check_network_name(args) -> None:
    """``net`` names a network semilearn can build: one of ``semilearn.nets``, or with
    ``net_from_name`` one of torchvision's models. semilearn/core/utils/build.py:29-32
    (get_net_builder) only builds an ``assert Exception(...)`` (never raised) for an unknown
    torchvision name and returns None, which fails later as ``'NoneType' object is not callable``."""
    from .config import _suggest

    if args.net_from_name:
        import torchvision.models as nets

        names = sorted(n for n in nets.__dict__ if n.islower() and not n.startswith("__") and callable(nets.__dict__[n]))
        where = " in torchvision.models (net_from_name True)"
    else:
        import semilearn.nets as nets

        names = [n for n in dir(nets) if not n.startswith("_")]
        where = ""
    if args.net not in names:
        raise ConfigError(f"unknown network {brief(args.net)}{where}{_suggest(str(args.net), names)}")


def _worker(gpu, ngpus, args, folder: RunFolder, notes=()):
    args.gpu = gpu
    seed_everything(args.seed)
    set_cpu_threads(args)
    if args.distributed:
        if args.multiprocessing_distributed:
            args.rank = args.rank * ngpus + gpu
        torch.distributed.init_process_group(backend=args.dist_backend, init_method=args.dist_url,
                                             world_size=args.world_size, rank=args.rank)
    main = is_main_rank(args.rank, ngpus)
    level = "INFO" if main else "WARNING"
    # Build first (data, split, network) and load the checkpoint to resume from (does it
    # fit?): where input errors surface. Only then write the run's files, so that a resume
    # with the wrong network does not replace its config.yaml, and a bad configuration
    # leaves nothing on disk (the claimed folder, still empty, is removed by the claim). The
    # log lines wait in memory until log.txt exists.
    early = logging.handlers.MemoryHandler(capacity=1 << 20, flushLevel=logging.CRITICAL + 1)
    logger = run_logger(args.save_name, None, level, args.verbose)
    logger.addHandler(early)
    resumed = folder.state == RESUME
    try:
        with usb_prints(logger, args.verbose):
            alg = build_algorithm(args, None, logger)
        place_models(args, alg)
        if resumed:
            load_for_resume(args, alg)
    finally:
        logger.removeHandler(early)
    if main:
        write_run_files(args)  # the folder is claimed and locked by train()
        write_data_caches(alg)  # past every input check: a failed command leaves no cache
    return _run(WorkerRun(args, alg, folder, gpu, main, level, early, tuple(notes) if main else ()))


def _run(run: WorkerRun):
    """The part of a worker that writes into the run folder: logs, hooks, training, summary."""
    from . import preempt
    from .monitor import EvalHistoryHook, GuardedParamUpdateHook, ProgressHook

    args, alg, path, gpu, early, main = run.args, run.alg, run.folder.path, run.gpu, run.early, run.main
    logger = run_logger(args.save_name, path, run.level, args.verbose)
    early.setTarget(next(h for h in logger.handlers if isinstance(h, logging.FileHandler)))
    early.close()  # flushes the lines logged so far into log.txt
    for note in run.notes:  # the run has started: the configuration's notes are no longer in an error's way
        logger.info(note)
        if not args.verbose:  # else the logger shows it on the console already
            print(note, file=sys.stderr)
    logger.info(f"device: {'cuda:%s' % gpu if gpu is not None else ('cuda' if torch.cuda.is_available() else 'cpu')}")

    fast_step(args, alg)
    logger.info(f"data pipeline: {describe_loaders(alg)}")
    alg.register_hook(GuardedParamUpdateHook(args.semi_usb_nonfinite_patience), "ParamUpdateHook", "HIGHEST")
    alg.register_hook(EvalHistoryHook(), "EvalHistoryHook", "NORMAL")
    alg.register_hook(ProgressHook(), "ProgressHook", "LOWEST")
    checkpoint_last(alg)
    stop = preempt.StopRequest()
    alg.register_hook(preempt.StopHook(stop), "StopHook", "LOWEST")  # after the checkpoint hook

    if run.resumed:
        logger.info(f"resumed from {args.load_path} at iteration {alg.it}")
        trim_history(path, alg.it)
    elif args.resume:  # killed before its first checkpoint: starts over, so does the history
        trim_history(path, 0)

    t0, start_it = time.time(), int(alg.it)
    # signals: save at the next step boundary, exit 75; TensorBoard's events are on disk when the block ends
    with tensorboard_log(path, args.use_tensorboard and main) as alg.tb_log, preempt.catch(stop), \
            usb_prints(logger, args.verbose):
        alg.train()
    if not main:
        return None
    bad = nonfinite_tensors({"model": alg.model, "ema_model": alg.ema_model})
    if bad:  # never reported as a result (patience 0, or amp: the guard did not run)
        raise NonFiniteError(f"non-finite weights at the end of the run ({len(bad)} tensors, e.g. {bad[0]}): no "
                             f"summary written; {last_good_checkpoint(checkpoint_path(path))}")
    wall = train_time_s(alg)  # None: an algorithm with its own loop, timed from here
    summary = make_summary(args, alg, wall_time_s=time.time() - t0 if wall is None else wall, start_it=start_it)
    save_test_features(alg, path)  # before summary.json: a finished run has them
    atomic_json_dump(summary, summary_path(path))
    final = summary["final"]
    logger.info(f"final ({summary['model']} model, {summary['head']} head): top-1 {100 * final['top1']:.2f}%, "
                f"balanced {100 * final['balanced_acc']:.2f}%; summary: {summary_path(path)}")
    return summary


def load_for_resume(args, alg) -> None:
    """Load ``args.load_path`` into ``alg`` (its readability was checked by
    :func:`semi_usb.run_folder.decide`)."""
    load_weights(args, alg, args.load_path)


def load_weights(args, alg, checkpoint: str) -> None:
    """USB's ``load_model`` of ``checkpoint`` into ``alg``, with a one-line error if it does
    not fit the configured method and network."""
    try:
        alg.load_model(checkpoint)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit "
                              f"{method_folder(args.algorithm, args.imb_algorithm)} / {args.net}: {one_line(exc)}") from None


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


