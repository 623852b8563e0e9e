"""Exact resume: USB's training loop, able to continue in the middle of an epoch.

semilearn's ``AlgorithmBase.train`` starts a resumed run at the *next* epoch (its
checkpoints store ``epoch + 1``), so the rest of the interrupted epoch's batches are never
seen and the run ends short of ``num_train_iter``; its checkpoints also store ``it + 1``
whether or not the step was done, and no RNG state. Here a checkpoint records the
completed iterations, the epoch and the position inside it, and the RNG states; resuming
rebuilds the epoch's batch order (USB's samplers are seeded by the epoch), skips the
batches already used without loading them, and restores the RNG states. With
``num_workers: 0`` an interrupted-and-resumed run on CPU equals an uninterrupted one
bitwise; with workers the order of the data is the same but the workers' augmentation
RNG streams restart. A checkpoint also records the training time so far, so that a run's
``wall_time_s`` sums the processes that trained it.
"""
from __future__ import annotations

import random
import time

import numpy as np
import torch


def rng_state() -> dict:
    """All RNG states as tensors and numbers (loadable by ``torch.load(weights_only=True)``,
    which semilearn's load_model uses by default on torch >= 2.6)."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def loop_state(algorithm) -> dict:
    """What a checkpoint needs to continue the loop exactly (see :func:`train`), and the
    training time so far (bookkeeping, not state: it differs between two equal runs)."""
    return {"it": algorithm.semi_usb_done, "epoch": algorithm.epoch, "epoch_step": algorithm.semi_usb_epoch_step,
            "rng": rng_state(), "train_time_s": train_time_s(algorithm)}


def train_time_s(algorithm) -> float | None:
    """Seconds spent in :func:`train` by this run, earlier processes included (from their
    checkpoints; steps after a process's last checkpoint were redone and count once);
    None for an algorithm with its own loop (CReST, ...)."""
    start = getattr(algorithm, "semi_usb_clock", None)
    return None if start is None else time.time() - start


def _skip(loader_iter, n: int) -> None:
    """Advance a DataLoader iterator by ``n`` batches: without loading them in the
    single-process case, by loading them with workers (which prefetch at creation)."""
    sampler_iter = getattr(loader_iter, "_sampler_iter", None)
    fast = sampler_iter is not None and getattr(loader_iter, "_num_workers", 1) == 0
    for _ in range(n):
        next(sampler_iter) if fast else next(loader_iter)


def train(self) -> None:
    """Drop-in for ``AlgorithmBase.train`` (same hooks, same order), resumable mid-epoch."""
    self.model.train()
    self.call_hook("before_run")
    resume = getattr(self, "semi_usb_resume", None)
    self.semi_usb_resume = None
    self.semi_usb_clock = time.time() - ((resume or {}).get("train_time_s") or 0.0)
    start_epoch, skip = (resume["epoch"], resume["epoch_step"]) if resume else (self.start_epoch, 0)
    per_epoch = self.num_iter_per_epoch
    if skip >= per_epoch:
        start_epoch, skip = start_epoch + 1, 0
    self.semi_usb_done = self.it
    # what a checkpoint written before any step of this call records (after_run saves one)
    self.epoch, self.semi_usb_epoch_step = (resume["epoch"], resume["epoch_step"]) if resume else (start_epoch, 0)
    if resume and self.it >= self.num_train_iter:  # killed after its last checkpoint: nothing left to train
        set_rng_state(resume["rng"])
    for epoch in range(start_epoch, self.epochs):
        self.epoch = epoch
        if self.it >= self.num_train_iter:
            break
        if resume and not skip:  # saved at an epoch end: the RNG as it was then
            set_rng_state(resume["rng"])
            resume = None  # restored once; later epochs go on with the live RNG
        self.call_hook("before_train_epoch")
        lb_iter, ulb_iter = iter(self.loader_dict["train_lb"]), iter(self.loader_dict["train_ulb"])
        self.semi_usb_epoch_step = 0
        if skip:  # saved mid-epoch: this epoch's order, the used batches skipped, then the RNG
            _skip(lb_iter, skip)
            _skip(ulb_iter, skip)
            self.semi_usb_epoch_step, skip = skip, 0
            set_rng_state(resume["rng"])
            resume = None  # else the next epoch would restore it again (and fail: KeyError)
        for data_lb, data_ulb in zip(lb_iter, ulb_iter):
            if self.it >= self.num_train_iter:
                break
            self.call_hook("before_train_step")
            self.out_dict, self.log_dict = self.train_step(**self.process_batch(**data_lb, **data_ulb))
            self.semi_usb_done, self.semi_usb_epoch_step = self.it + 1, self.semi_usb_epoch_step + 1
            self.call_hook("after_train_step")
            self.it += 1
        self.call_hook("after_train_epoch")
    self.call_hook("after_run")
