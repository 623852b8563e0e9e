"""ACR's balanced classifier (docs/method.md, "ACR", balanced branch) and its formulas.

:class:`BalancedHeadNet` wraps any USB backbone: the standard head ``logits = h(feat)``
and a second linear head ``logits_bal = g(feat)`` on the same features. The model carries
the labeled class prior as a buffer, so it moves, saves and loads with the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..backbone import FeatureHeadsNet


class BalancedHeadNet(FeatureHeadsNet):
    """Backbone + balanced head; forward returns ``logits``, ``logits_bal`` and ``feat``."""

    def __init__(self, backbone: nn.Module, num_classes: int, class_counts: Tensor | None = None):
        super().__init__(backbone)
        self.balanced_classifier = nn.Linear(self.num_features, num_classes)
        counts = torch.ones(num_classes) if class_counts is None else torch.as_tensor(class_counts, dtype=torch.float)
        self.register_buffer("log_prior", log_prior(counts))

    def feature_outputs(self, feat: Tensor) -> dict:
        return {"logits_bal": self.balanced_classifier(feat)}


def log_prior(class_counts: Tensor) -> Tensor:
    """``log pi`` of the labeled class prior ``pi = counts / total`` (a class with no label
    gets a count of 1 so that the log stays finite)."""
    counts = class_counts.float().clamp_min(1)
    return torch.log(counts / counts.sum())


def logit_adjusted_ce(logits_bal: Tensor, targets: Tensor, log_pi: Tensor, tau2: float) -> Tensor:
    """``L_x^b = CE(b_lb + tau2 * log pi, y_lb)`` (mean over the batch)."""
    return F.cross_entropy(logits_bal + tau2 * log_pi, targets)


def adjusted_probs(logits: Tensor, log_pi: Tensor, tau: Tensor | float, T: float = 1.0) -> Tensor:
    """``softmax((z - tau * log pi) / T)``: the logit-adjusted pseudo-label distribution."""
    return torch.softmax((logits - tau * log_pi) / T, dim=-1)


def or_mask(probs_a: Tensor, probs_b: Tensor, threshold: float) -> Tensor:
    """``[max a >= tau] OR [max b >= tau]`` as a float mask."""
    return ((probs_a.amax(-1) >= threshold) | (probs_b.amax(-1) >= threshold)).to(probs_a.dtype)


def masked_ce(logits: Tensor, targets: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """``mean(CE(logits, targets) * mask [* weight])`` over all samples."""
    loss = F.cross_entropy(logits, targets, reduction="none") * mask
    if weight is not None:
        loss = loss * weight
    return loss.mean()

