"""Hooks that report on a run: a progress bar, the evaluation history and the non-finite guard."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import torch
from semilearn.core.hooks import Hook, ParamUpdateHook

from .checkpoint import append_line
from .imb_algorithms.device import is_main_process
from .layout import history_path
from .errors import NonFiniteError


def _float(v) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


class ProgressHook(Hook):
    """The console of a run: one status line (iteration, it/s, ETA, loss, latest evaluation
    accuracy) and one line per evaluation; USB's own lines go to ``log.txt`` (``--verbose``:
    on the console too, :func:`semi_usb.run_log.run_logger`).

    On a terminal the status line is redrawn at most twice a second; otherwise a line is
    printed every ``num_log_iter`` iterations. Reading the loss (a device sync) happens only then.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def before_run(self, algorithm):
        self.t0, self.it0, self.last_draw = time.perf_counter(), algorithm.it, 0.0

    def after_train_step(self, algorithm):
        if not is_main_process(algorithm):
            return
        now = time.perf_counter()
        done = algorithm.it + 1
        evaluated = self.every_n_iters(algorithm, algorithm.num_eval_iter) or self.is_last_iter(algorithm)
        due = (now - self.last_draw > 0.5) if self.tty else self.every_n_iters(algorithm, algorithm.num_log_iter)
        if evaluated and getattr(algorithm, "last_eval", None) is not None:
            acc = algorithm.last_eval
            self._write(f"[{algorithm.save_name}] eval at it {done}: top-1 {100 * acc.top1:.2f}% | "
                        f"balanced {100 * acc.balanced_acc:.2f}%", final=True)
        if not (due or self.is_last_iter(algorithm)):
            return
        self.last_draw = now
        rate = (done - self.it0) / max(now - self.t0, 1e-9)
        loss = algorithm.log_dict.get("train/total_loss")
        acc = getattr(algorithm, "last_eval", None)
        text = (f"[{algorithm.save_name}] it {done}/{algorithm.num_train_iter} | {rate:.2f} it/s"
                f" | ETA {format_eta((algorithm.num_train_iter - done) / max(rate, 1e-9))}"
                + (f" | loss {_float(loss):.4f}" if loss is not None else "")
                + (f" | eval top-1 {100 * acc.top1:.2f}%" if acc is not None else ""))
        self._write(text, final=self.is_last_iter(algorithm))

    def _write(self, text: str, final: bool) -> None:
        """A line; on a terminal the status line is redrawn in place and kept when ``final``."""
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def format_eta(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class EvalHistoryHook(Hook):
    """Appends each evaluation (after USB's EvaluationHook) to ``eval_history.jsonl``."""

    def after_train_step(self, algorithm):
        if not (self.every_n_iters(algorithm, algorithm.num_eval_iter) or self.is_last_iter(algorithm)):
            return
        result = getattr(algorithm, "last_eval", None)
        if result is None or not is_main_process(algorithm):
            return
        row = {"it": algorithm.it + 1, "top1": result.top1, "balanced_acc": result.balanced_acc,
               "per_class_acc": [None if math.isnan(a) else float(a) for a in result.per_class_acc],
               "ece": result.ece}
        append_line(history_path(os.path.join(algorithm.save_dir, algorithm.save_name)), json.dumps(row))


class GuardedParamUpdateHook(ParamUpdateHook):
    """USB's ParamUpdateHook that skips a step whose loss, gradients or buffers are not finite.

    The skipped step leaves weights, buffers (BatchNorm's running statistics, which the
    forward pass has already updated from the non-finite activations) and optimizer state
    untouched and is counted (``train/nonfinite_steps``); after
    ``semi_usb_nonfinite_patience`` such steps in a row training stops with
    :class:`NonFiniteError`, before any checkpoint is written with the bad state, so the
    last good checkpoint stays intact. Patience 0 disables the check (it costs one device
    sync per step).
    """

    def __init__(self, patience: int):
        super().__init__()
        self.patience = patience
        self.in_a_row = 0
        self.total = 0
        self.buffers: list = []

    def before_train_step(self, algorithm):
        super().before_train_step(algorithm)
        if self.patience > 0 and not algorithm.use_amp:
            # The forward pass updates the buffers before the loss is known: keep a copy to
            # put back if the step is skipped (else BatchNorm keeps inf/NaN running stats,
            # copied into the EMA model and every later checkpoint).
            self.buffers = [(b, b.detach().clone()) for b in algorithm.model.buffers()]

    def after_train_step(self, algorithm):
        if self.patience <= 0 or algorithm.use_amp:  # GradScaler does its own inf/nan skipping
            return super().after_train_step(algorithm)
        loss = algorithm.out_dict["loss"]
        loss.backward()
        if algorithm.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(algorithm.model.parameters(), algorithm.clip_grad)
        else:
            grads = [p.grad for p in algorithm.model.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else loss.new_zeros(())
        # Buffers too: a forward pass can overflow BatchNorm's running variance to inf while
        # the normalised output, the loss and the gradients stay finite.
        bufs = [b for b, _ in self.buffers if b.is_floating_point()]
        buf_max = torch.stack(torch._foreach_norm(bufs, float("inf"))).max() if bufs else loss.new_zeros(())
        if bool(torch.isfinite(loss.detach()) & torch.isfinite(norm) & torch.isfinite(buf_max)):
            algorithm.optimizer.step()
            if algorithm.scheduler is not None:
                algorithm.scheduler.step()
            self.in_a_row = 0
        else:
            with torch.no_grad():
                for buf, saved in self.buffers:
                    buf.copy_(saved)
            self.in_a_row += 1
            self.total += 1
            algorithm.print_fn(f"non-finite loss, gradient or buffer at iteration {algorithm.it + 1}: step skipped "
                               f"({self.in_a_row} in a row, {self.total} in all)")
            if self.in_a_row >= self.patience:
                algorithm.model.zero_grad()
                raise NonFiniteError(
                    f"{self.in_a_row} non-finite steps in a row at iteration {algorithm.it + 1}: stopped; "
                    f"the last checkpoint in {os.path.join(algorithm.save_dir, algorithm.save_name)} is intact")
        algorithm.model.zero_grad()
        algorithm.log_dict["train/nonfinite_steps"] = self.total
