"""Stop on a scheduler's signal: save ``latest_model.pth`` at the next step boundary, exit 75.

A batch scheduler warns a job before it kills it: SLURM sends ``--signal`` (submitit asks
for ``USR2``, ``signal_delay_s`` before the time limit) and, on preemption, ``SIGTERM``.
While ``semilearn train`` trains, these signals (``SIGTERM``, ``SIGUSR1``, ``SIGUSR2``) only
set a flag; :class:`StopHook`, the last hook of the step (after USB's CheckpointHook, so
every hook has updated its state), then saves the checkpoint the step would have saved
and stops the run with :data:`PREEMPTED` (75, ``EX_TEMPFAIL``: "try again"). The run is
resumed exactly by ``--resume True`` (docs/reliability.md). Under DDP the ranks agree on
the step to stop at (one all-reduce of the flag per step), and only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal

import torch
from semilearn.core.hooks import Hook

from .imb_algorithms.device import is_main_process, model_device
from .layout import CHECKPOINT

#: exit status of a run stopped by a signal after saving its checkpoint
PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Preempted(SystemExit):
    """Raised at a step boundary once the checkpoint is saved; exits with :data:`PREEMPTED`."""

    def __init__(self, message: str):
        super().__init__(PREEMPTED)
        self.message = message


class StopRequest:
    """The signal received (None: none yet), set by the handlers of :func:`catch`."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame) -> None:
        self.signum = signum


@contextlib.contextmanager
def catch(handler, signals=SIGNALS):
    """Install ``handler`` for ``signals`` while the block runs (main thread only: elsewhere
    Python cannot install handlers, and the block runs with the default actions)."""
    try:
        old = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def forward_to_children(signum, frame) -> None:
    """Handler of a process that spawned the DDP ranks: pass the signal on to them (they
    stop together at a step boundary; the spawning process waits for them)."""
    for child in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)


class StopHook(Hook):
    """After the step's checkpoint hook: on a requested stop, save and raise :class:`Preempted`."""

    def __init__(self, request: StopRequest):
        self.request = request

    def after_train_step(self, algorithm):
        stop = self.request.signum is not None
        if algorithm.distributed:  # every rank stops at the same step
            flag = torch.tensor([float(stop)], device=model_device(algorithm))
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if not stop:
            return
        path = os.path.join(algorithm.save_dir, algorithm.save_name)
        if is_main_process(algorithm):
            algorithm.save_model(CHECKPOINT, path)
        name = signal.Signals(self.request.signum).name if self.request.signum else "a signal to another rank"
        raise Preempted(f"stopped by {name} after iteration {algorithm.it + 1}: checkpoint saved in {path}; "
                        "resume with --resume True")
