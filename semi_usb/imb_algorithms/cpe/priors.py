"""The pseudo-label class distributions that CPE's released code logs per expert
(docs/method.md, "CPE", diagnostics): ``u_py`` of the confident pseudo-labels and ``au_py``
of all of them, each an EMA of the step's normalised class counts. They change no loss;
they show which classes each expert labels. Kept as method state so that a resumed run logs
what an uninterrupted one does, and identical on every DDP rank (counts of the global batch).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..acr.distribution_estimate import update_u_py
from ..state import all_reduce_sum


def class_counts(labels: Tensor, weights: Tensor, num_classes: int) -> Tensor:
    """``(E, C)`` weighted class counts of ``labels`` ``(E, N)`` (``weights`` ``(E, N)``)."""
    counts = weights.new_zeros(labels.shape[0], num_classes)
    return counts.scatter_add_(1, labels, weights)


class PseudoLabelPriors:
    """``u_py`` (confident) and ``au_py`` (all), ``(E, C)`` each, uniform at the start."""

    _STATE = ("u_py", "au_py")

    def __init__(self, num_experts: int, num_classes: int, momentum: float = 0.9):
        self.num_classes, self.momentum = num_classes, momentum
        self.u_py = torch.full((num_experts, num_classes), 1.0 / num_classes)
        self.au_py = self.u_py.clone()

    @torch.no_grad()
    def update(self, pseudo_label: Tensor, mask: Tensor, all_reduce: bool = False) -> None:
        """One step: the counts of each expert's confident (``mask``) and of all pseudo-labels,
        summed over DDP ranks with ``all_reduce``; each row moves only when its counts are not
        empty (the released ``if now_mask.sum() > 0``)."""
        mask = mask.float()
        confident = class_counts(pseudo_label, mask, self.num_classes)
        every = class_counts(pseudo_label, torch.ones_like(mask), self.num_classes)
        if all_reduce:
            confident, every = all_reduce_sum(confident), all_reduce_sum(every)
        self.u_py = torch.stack([update_u_py(u, h, self.momentum) for u, h in zip(self.u_py, confident)])
        self.au_py = torch.stack([update_u_py(u, h, self.momentum) for u, h in zip(self.au_py, every)])

    def state_dict(self) -> dict:
        return {k: getattr(self, k).clone() for k in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        for k in self._STATE:
            if tuple(state[k].shape) != tuple(getattr(self, k).shape):
                raise ValueError(f"{k}: expected shape {tuple(getattr(self, k).shape)}, got {tuple(state[k].shape)}")
            setattr(self, k, state[k].to(device=self.u_py.device, dtype=torch.float32).clone())

    def to(self, device) -> "PseudoLabelPriors":
        for k in self._STATE:
            setattr(self, k, getattr(self, k).to(device))
        return self
