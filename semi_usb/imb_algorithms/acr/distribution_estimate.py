"""ACR's adaptive tau1 from the estimated unlabeled class distribution
(docs/method.md, "ACR", adaptive tau1), as ACR's released ``train.py`` computes it: the
per-step class vector by one of three semantics, the EMA ``u_py``, the KL sums of the
epoch, and tau1 from their average at the next epoch's start. All state lives in tensors on
the training device; no step forces a host-device synchronisation.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..state import all_gather_cat

EPS = 1e-12

#: Values of ``acr_class_vector``: how a step's class vector is built (see :func:`class_vector`).
CLASS_VECTORS = ("acr_code", "presence", "counts")


def class_vector(pred: Tensor, mask: Tensor, num_classes: int, kind: str = "acr_code") -> Tensor:
    """The step's class vector ``h`` (C,) from predicted classes ``pred`` (N,) and the
    confident mask ``mask`` (N,, 0/1).

    * ``acr_code``: ACR's released ``h[pred] += mask``. PyTorch's indexed ``+=`` does not
      accumulate over repeated indices: each predicted class receives the mask value of one
      sample predicted as it, confident or not. Here it is the *last* such sample (what the
      CPU gives), deterministically on any device; classes nobody predicts get 0.
    * ``presence``: 1 for each class that at least one confident sample predicts.
    * ``counts``: the number of confident samples predicting each class.
    """
    if kind not in CLASS_VECTORS:
        raise ValueError(f"class vector must be one of {', '.join(CLASS_VECTORS)}, got {kind!r}")
    mask = mask.float()
    if kind == "acr_code":
        if pred.numel() == 0:
            return mask.new_zeros(num_classes)
        order = torch.arange(pred.numel(), device=pred.device)
        last = torch.full((num_classes,), -1, dtype=torch.long, device=pred.device)
        last = last.scatter_reduce(0, pred, order, reduce="amax")  # the last sample of each class, -1: none
        return torch.where(last >= 0, mask[last.clamp_min(0)], mask.new_zeros(()))
    counts = mask.new_zeros(num_classes).scatter_add_(0, pred, mask)
    return counts if kind == "counts" else (counts > 0).float()


def confident_class_vector(probs: Tensor, threshold: float, kind: str = "acr_code",
                           all_gather: bool = False, keep: Tensor | None = None) -> Tensor:
    """:func:`class_vector` of ``argmax probs`` with the mask ``max probs >= threshold``,
    times ``keep`` (N,, bool) when given: ACR's released ``mask_l * mask_b``, which leaves
    the labeled images of the unlabeled stream out (with ``acr_code`` such an image can still
    be the last of its class, with a mask of 0, as in ACR's line).

    ``all_gather``: under DDP, of the global batch (the ranks' samples concatenated, rank 0
    first), so that every rank builds the vector one process would; a no-op without a
    process group of more than one rank.
    """
    conf, pred = probs.max(-1)
    mask = (conf >= threshold).float()
    if keep is not None:
        mask = mask * keep.to(mask.dtype)
    if all_gather:
        pred, mask = all_gather_cat(pred), all_gather_cat(mask)
    return class_vector(pred, mask, probs.shape[-1], kind)


def update_u_py(u_py: Tensor, hist: Tensor, momentum: float = 0.99) -> Tensor:
    """``u <- m u + (1 - m) hist / sum(hist)``; unchanged when ``hist`` is empty."""
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
    """``tau_min + (tau_max - tau_min) * softmax(KL)[consistent]``: near ``tau_max`` when
    the estimate is far from the labeled prior (a reversed split), near ``tau_min`` when it
    is close to it (a consistent split)."""
    return tau_min + (tau_max - tau_min) * torch.softmax(kl_mean, dim=-1)[0]


class Tau1Estimator:
    """Running state of ACR's estimate: ``u_py``, the epoch's KL sums ``kl_sum``, the number
    of steps that added to them (``steps``), and ``tau1``.

    :meth:`step` runs in every step of the estimate (the caller decides when it starts:
    ACR's ``epoch > est_epoch``), :meth:`end_epoch` at every epoch start.
    """

    def __init__(self, pi: Tensor, tau1: float = 2.0, tau_min: float = 0.0, tau_max: float = 2.0,
                 momentum: float = 0.99, kind: str = "acr_code"):
        if kind not in CLASS_VECTORS:
            raise ValueError(f"class vector must be one of {', '.join(CLASS_VECTORS)}, got {kind!r}")
        self.anchors = anchors(pi.float())
        c = pi.numel()
        self.u_py = torch.full((c,), 1.0 / c)
        self.kl_sum = torch.zeros(3)
        self.steps = torch.zeros(())
        self.tau1 = torch.tensor(float(tau1))
        self.tau_min, self.tau_max, self.momentum, self.kind = tau_min, tau_max, momentum, kind

    def step(self, probs_bal: Tensor, threshold: float, all_reduce: bool = False,
             keep: Tensor | None = None) -> None:
        """One step of the estimate: the class vector of the balanced head's confident
        predictions; if it is not empty, ``u_py``'s EMA update and the symmetric KL of
        ``u_py`` to the three anchors added to the sums (ACR: ``if now_mask.sum() > 0``).

        ``all_reduce``: under DDP, the vector of the global batch (see
        :func:`confident_class_vector`), so that every rank keeps the same ``u_py`` and tau1.
        ``keep``: the samples that count (ACR's ``mask_l``), None: all.
        """
        hist = confident_class_vector(probs_bal.detach().float(), threshold, self.kind, all_gather=all_reduce,
                                      keep=keep)
        updated = hist.sum() > 0
        self.u_py = update_u_py(self.u_py, hist, self.momentum)
        kl = symmetric_kl(self.u_py.unsqueeze(0), self.anchors)
        self.kl_sum = self.kl_sum + torch.where(updated, kl, torch.zeros_like(kl))
        self.steps = self.steps + updated.to(self.steps.dtype)

    def end_epoch(self, update_tau1: bool, epoch_steps: int) -> None:
        """At an epoch start: if estimating, ``tau1`` from the sums divided by the epoch's
        step count ``epoch_steps`` (ACR's ``count_KL / eval_step``), but only when the epoch
        added to them (ACR would average empty sums into tau1 = 2/3); then reset the sums."""
        if update_tau1:
            estimate = tau1_from_kl(self.kl_sum / max(epoch_steps, 1), self.tau_min, self.tau_max)
            self.tau1 = torch.where(self.steps > 0, estimate, self.tau1)
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
