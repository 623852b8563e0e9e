"""semilearn's trainer, fixed where it fails or loses state (each patch names the line).

The batch goes to the model's device (not ``.cuda()``), evaluation runs on any device and
keeps per-class accuracy and the confusion matrix, checkpoints are written atomically and
record the loop position and RNG states (:mod:`semi_usb.resume`), and the step timer needs
no CUDA events.
"""
from __future__ import annotations

import os
import time
from inspect import signature
from typing import Any

import torch

from ..checkpoint import atomic_torch_save, last_good_checkpoint, nonfinite_tensors
from ..errors import CheckpointError, NonFiniteError
from ..imb_algorithms.device import model_device
from ..metrics import evaluate_model
from ..resume import loop_state
from ..resume import train as resumable_train
from .protocol import _stack_views_for_base_step


def _to_device(var: Any, device: torch.device) -> Any:
    if isinstance(var, dict):
        return {k: _to_device(v, device) for k, v in var.items()}
    if isinstance(var, torch.Tensor):
        return var.to(device, non_blocking=True)
    return var


def _process_batch(self, input_args=None, **kwargs):
    # Replaces AlgorithmBase.process_batch (semilearn/core/algorithmbase.py), whose
    # `var.cuda(self.gpu)` fails without CUDA. Same filtering by the train_step signature;
    # tensors go to the model's device instead.
    if input_args is None:
        input_args = list(signature(self.train_step).parameters.keys())
    device = model_device(self)
    kwargs = _stack_views_for_base_step(kwargs, input_args)
    return {
        arg: _to_device(var, device)
        for arg, var in kwargs.items()
        if arg in input_args and var is not None
    }


def _evaluate(self, eval_dest="eval", out_key="logits", return_logits=False):
    # Replaces AlgorithmBase.evaluate, whose `x.cuda(self.gpu)` fails without CUDA. Keeps
    # USB's keys (eval/loss, eval/top-1-acc, eval/balanced_acc, ...) and adds per-class
    # accuracy and the confusion matrix (counts), which the summary and reports need.
    self.model.eval()
    self.ema.apply_shadow()
    try:
        result = evaluate_model(
            self.model, self.loader_dict[eval_dest], model_device(self), out_key=out_key,
            num_classes=self.num_classes, keep_logits=return_logits,
        )
    finally:
        self.ema.restore()
        self.model.train()
    self.print_fn("confusion matrix:\n" + str(result.confusion_normalized()))
    eval_dict = {f"{eval_dest}/{k}": v for k, v in result.usb_metrics().items()}
    self.last_eval = result
    if return_logits:
        eval_dict[eval_dest + "/logits"] = result.logits
    return eval_dict


def _save_model(self, save_name, save_path):
    # Replaces AlgorithmBase.save_model, whose plain torch.save leaves a truncated file if
    # the process dies while writing, and saves whatever weights the model holds, NaN
    # included. Refuse non-finite weights; write to a temporary file, fsync, then rename.
    os.makedirs(save_path, exist_ok=True)
    save_filename = os.path.join(save_path, save_name)
    save_dict = self.get_save_dict()
    bad = nonfinite_tensors({k: save_dict[k] for k in ("model", "ema_model") if k in save_dict})
    if bad:  # a diverged model is never saved over a good checkpoint, nor as a first one
        kept = last_good_checkpoint(os.path.join(save_path, "latest_model.pth"))
        raise NonFiniteError(f"non-finite weights at iteration {self.it + 1} ({len(bad)} tensors, e.g. {bad[0]}): "
                             f"{save_filename} not written; {kept}")
    try:
        atomic_torch_save(save_dict, save_filename)
    except OSError as exc:  # full disk, read-only folder: the previous checkpoint is untouched
        raise CheckpointError(f"cannot write checkpoint {save_filename} ({exc.strerror or exc}): free space "
                              f"or make {save_path} writable, then resume (--resume True); the previous "
                              "checkpoint is intact") from None
    self.print_fn(f"model saved: {save_filename}")


def _with_loop_state(get_save_dict):
    # Wraps AlgorithmBase.get_save_dict, which stores `it + 1` and `epoch + 1` (right only
    # inside a step, and it skips the rest of the epoch on resume): store the completed
    # iterations, the epoch, the position in it and the RNG states (semi_usb.resume).
    def wrapped(self):
        save_dict = get_save_dict(self)
        state = loop_state(self)
        save_dict.update(it=state.pop("it"), epoch=state["epoch"], semi_usb_loop=state)
        return save_dict

    return wrapped


def _with_resume_state(load_model):
    # Wraps AlgorithmBase.load_model: keep the loop position for semi_usb.resume.train.
    def wrapped(self, load_path):
        checkpoint = load_model(self, load_path)
        self.semi_usb_resume = checkpoint.get("semi_usb_loop")
        return checkpoint

    return wrapped


class _WallClockTimerHook:
    """Replaces semilearn's TimerHook (semilearn/core/hooks/timer.py).

    USB's hook records ``torch.cuda.Event`` objects, which fail without CUDA, and sets
    ``algorithm.start_run`` so that ParamUpdateHook calls ``torch.cuda.synchronize()`` twice
    per step. This version measures the data-loading wait with a host clock and forces no
    device synchronisation; it logs the same keys (``lr``, ``train/prefetch_time``).
    """

    @staticmethod
    def before_run(self, algorithm):
        algorithm.semi_usb_batch_clock = time.perf_counter()

    @staticmethod
    def before_train_step(self, algorithm):
        algorithm.semi_usb_prefetch_time = time.perf_counter() - algorithm.semi_usb_batch_clock

    @staticmethod
    def after_train_step(self, algorithm):
        algorithm.log_dict["lr"] = algorithm.optimizer.param_groups[-1]["lr"]
        algorithm.log_dict["train/prefetch_time"] = algorithm.semi_usb_prefetch_time
        algorithm.semi_usb_batch_clock = time.perf_counter()


def install() -> None:
    """Patch semilearn's AlgorithmBase and TimerHook (semilearn/core/algorithmbase.py,
    semilearn/core/hooks/timer.py)."""
    from semilearn.core import algorithmbase
    from semilearn.core.hooks import timer

    base = algorithmbase.AlgorithmBase
    base.process_batch = _process_batch
    base.evaluate = _evaluate
    base.save_model = _save_model
    # AlgorithmBase.train restarts a resumed run at the next epoch: see semi_usb.resume.
    base.train = resumable_train
    base.get_save_dict = _with_loop_state(base.get_save_dict)
    base.load_model = _with_resume_state(base.load_model)
    for stage in ("before_run", "before_train_step", "after_train_step"):
        setattr(timer.TimerHook, stage, getattr(_WallClockTimerHook, stage))
