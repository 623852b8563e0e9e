"""Hooks that report on a run: a progress bar, the evaluation history and the non-finite guard."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import torch
from semilearn.core.hooks import Hook, ParamUpdateHook

from .checkpoint import append_line, last_good_checkpoint
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
    """USB's ParamUpdateHook that undoes a step whose loss, gradients, buffers or updated
    weights are not finite.

    The optimizer steps, then one check on the device covers the loss, the gradient norm,
    the buffers (BatchNorm's running statistics, which the forward pass has already updated
    from the non-finite activations) and the weights the step produced (a finite loss and
    gradient can still overflow the weights: a huge learning rate); it is read once per step,
    the guard's only host sync. A failed step is undone: weights, optimizer state and buffers
    are put back from copies taken on the device before it, the scheduler does not step, and
    the step is counted (``train/nonfinite_steps``). After ``semi_usb_nonfinite_patience``
    such steps in a row training stops with :class:`NonFiniteError`, saying whether a good
    checkpoint exists (none with non-finite weights is ever written: ``semi_usb.compat``).
    Patience 0 disables the check.
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
            # put back if the step is undone (else BatchNorm keeps inf/NaN running stats,
            # copied into the EMA model and every later checkpoint).
            self.buffers = [(b, b.detach().clone()) for b in algorithm.model.buffers()]

    def after_train_step(self, algorithm):
        if self.patience <= 0 or algorithm.use_amp:  # GradScaler does its own inf/nan skipping
            return super().after_train_step(algorithm)
        loss = algorithm.out_dict["loss"]
        loss.backward()
        params = [p for p in algorithm.model.parameters()]
        if algorithm.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, algorithm.clip_grad)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else loss.new_zeros(())
        # Buffers too: a forward pass can overflow BatchNorm's running variance to inf while
        # the normalised output, the loss and the gradients stay finite.
        bufs = [b for b, _ in self.buffers if b.is_floating_point()]
        buf_max = torch.stack(torch._foreach_norm(bufs, float("inf"))).max() if bufs else loss.new_zeros(())
        before = _step_state(algorithm.optimizer, params)
        algorithm.optimizer.step()
        floats = [p for p in params if p.is_floating_point()]
        weight_max = torch.stack(torch._foreach_norm(floats, float("inf"))).max() if floats else loss.new_zeros(())
        if bool(torch.isfinite(loss.detach()) & torch.isfinite(norm) & torch.isfinite(buf_max)
                & torch.isfinite(weight_max)):
            if algorithm.scheduler is not None:
                algorithm.scheduler.step()
            self.in_a_row = 0
        else:
            with torch.no_grad():
                _restore_step_state(algorithm.optimizer, params, before)
                for buf, saved in self.buffers:
                    buf.copy_(saved)
            self.in_a_row += 1
            self.total += 1
            algorithm.print_fn(f"non-finite loss, gradient, buffer or weight at iteration {algorithm.it + 1}: step "
                               f"skipped ({self.in_a_row} in a row, {self.total} in all)")
            if self.in_a_row >= self.patience:
                algorithm.model.zero_grad()
                from .layout import checkpoint_path

                run = os.path.join(algorithm.save_dir, algorithm.save_name)
                raise NonFiniteError(f"{self.in_a_row} non-finite steps in a row at iteration {algorithm.it + 1}: "
                                     f"stopped; {last_good_checkpoint(checkpoint_path(run))}")
        algorithm.model.zero_grad()
        algorithm.log_dict["train/nonfinite_steps"] = self.total


def _step_state(optimizer, params: list) -> tuple:
    """Copies, on the device, of the weights and of the optimizer's per-weight state
    (momentum, Adam's moments and step), taken before a step so that it can be undone."""
    weights = [p.detach().clone() for p in params]
    state = {}
    for p in params:
        if p in optimizer.state:
            state[p] = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
                        for k, v in optimizer.state[p].items()}
    return weights, state


def _restore_step_state(optimizer, params: list, saved: tuple) -> None:
    weights, state = saved
    for p, w in zip(params, weights):
        p.copy_(w)
    for p in params:
        if p in state:
            optimizer.state[p] = state[p]
        else:
            optimizer.state.pop(p, None)  # the undone step created it
