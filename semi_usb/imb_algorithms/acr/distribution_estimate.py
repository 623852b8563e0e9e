"""ACR's adaptive tau1 from the estimated unlabeled class distribution
(docs/method.md, "ACR", adaptive tau1). All state lives in tensors on the training
device; no step forces a host-device synchronisation.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..state import all_reduce_sum

EPS = 1e-12


def confident_class_histogram(probs: Tensor, threshold: float, counts: bool = False) -> Tensor:
    """Class histogram of ``argmax probs`` over samples with ``max probs >= threshold``.

    ``counts=False`` (default) gives ACR's released behaviour: ``h[targets] += mask`` with
    PyTorch's non-accumulating indexed add, so a class counts at most once per step: a
    presence vector (1 if any confident sample predicts the class). ``counts=True`` gives
    true counts.
    """
    conf, pred = probs.max(-1)
    mask = (conf >= threshold).to(probs.dtype)
    hist = torch.zeros(probs.shape[-1], dtype=probs.dtype, device=probs.device).scatter_add_(0, pred, mask)
    return hist if counts else (hist > 0).to(probs.dtype)


def update_u_py(u_py: Tensor, hist: Tensor, momentum: float = 0.9) -> Tensor:
    """``u <- m u + (1 - m) hist / sum(hist)``; unchanged when no sample passed."""
    total = hist.sum()
    new = momentum * u_py + (1 - momentum) * hist / total.clamp_min(EPS)
    return torch.where(total > 0, new, u_py)


def symmetric_kl(p: Tensor, q: Tensor) -> Tensor:
    """``0.5 KL(p||q) + 0.5 KL(q||p)`` along the last dimension."""
    p, q = p.clamp_min(EPS), q.clamp_min(EPS)
    return 0.5 * (p * (p / q).log()).sum(-1) + 0.5 * (q * (q / p).log()).sum(-1)


def anchors(pi: Tensor) -> Tensor:
    """(3, C): consistent = pi, uniform, reversed = pi flipped."""
    return torch.stack([pi, torch.full_like(pi, 1.0 / pi.numel()), pi.flip(0)])


def tau1_from_kl(kl_mean: Tensor, tau_min: float = 0.0, tau_max: float = 2.0) -> Tensor:
    """``tau_min + (tau_max - tau_min) * softmax(KL)[consistent]``."""
    return tau_min + (tau_max - tau_min) * torch.softmax(kl_mean, dim=-1)[0]


class Tau1Estimator:
    """Running state of ACR's estimate: ``u_py``, the epoch's KL sums, and ``tau1``."""

    def __init__(self, pi: Tensor, tau1: float = 2.0, tau_min: float = 0.0, tau_max: float = 2.0,
                 momentum: float = 0.9, counts: bool = False):
        self.anchors = anchors(pi.float())
        c = pi.numel()
        self.u_py = torch.full((c,), 1.0 / c)
        self.kl_sum = torch.zeros(3)
        self.steps = torch.zeros(())
        self.tau1 = torch.tensor(float(tau1))
        self.tau_min, self.tau_max, self.momentum, self.counts = tau_min, tau_max, momentum, counts

    def step(self, probs_bal: Tensor, threshold: float, all_reduce: bool = False) -> None:
        """One training step: update ``u_py`` and add its KL to the three anchors.

        ``all_reduce``: under DDP, sum the ranks' confident counts first, so that every rank
        sees the histogram of the global batch (as one process would) and keeps the same
        ``u_py`` and tau1; a no-op without a process group of more than one rank.
        """
        hist = confident_class_histogram(probs_bal.detach().float(), threshold, counts=True)
        if all_reduce:
            hist = all_reduce_sum(hist)
        if not self.counts:
            hist = (hist > 0).to(hist.dtype)
        self.u_py = update_u_py(self.u_py, hist, self.momentum)
        self.kl_sum = self.kl_sum + symmetric_kl(self.u_py.unsqueeze(0), self.anchors)
        self.steps = self.steps + 1

    def end_epoch(self, update_tau1: bool) -> None:
        """At an epoch start: average the sums, set tau1 (if estimating), reset the sums."""
        if update_tau1:
            mean = self.kl_sum / self.steps.clamp_min(1)
            self.tau1 = torch.where(self.steps > 0, tau1_from_kl(mean, self.tau_min, self.tau_max), self.tau1)
        self.kl_sum = torch.zeros_like(self.kl_sum)
        self.steps = torch.zeros_like(self.steps)

    _STATE = ("anchors", "u_py", "kl_sum", "steps", "tau1")

    def state_dict(self) -> dict:
        return {k: getattr(self, k).clone() for k in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        device = self.u_py.device
        for k in self._STATE:
            setattr(self, k, state[k].to(device))

    def to(self, device) -> "Tau1Estimator":
        for k in self._STATE:
            setattr(self, k, getattr(self, k).to(device))
        return self
