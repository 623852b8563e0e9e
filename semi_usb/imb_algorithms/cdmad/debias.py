"""CDMAD's debiasing (docs/method.md, "CDMAD"): the classifier's bias is its logits on an
image without any pattern (a solid image), and the debiased logits of an image are its
logits minus that bias, for the pseudo-labels in training and for the prediction at test.

:class:`DebiasedNet` wraps any USB backbone; in evaluation mode its forward also returns
``logits_debiased`` (the prediction head of CDMAD), computed with the same weights and batch
norm statistics, so that USB's evaluation, ``semilearn eval`` and the report read it like any
other head. Pure tensor code; no host-device sync.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..backbone import BackboneWrapper


def solid_image(like: Tensor, fill: float = 1.0) -> Tensor:
    """One image shaped like a row of ``like`` (``(1, *like.shape[1:])``, its dtype and
    device) with every value ``fill``: the network's input space, after normalisation (the
    released ``torch.ones((1, 3, 32, 32))``)."""
    return torch.full((1, *like.shape[1:]), fill, dtype=like.dtype, device=like.device)


def debiased(logits: Tensor, bias: Tensor) -> Tensor:
    """``z - z(solid)``: the logits with the classifier's bias removed (``bias`` ``(1, C)``
    broadcasts over the batch)."""
    return logits - bias


def debiased_targets(logits_w: Tensor, bias: Tensor | None, threshold: float, hard: bool) -> tuple[Tensor, Tensor]:
    """``(targets, mask)`` of the weak view: ``p = softmax(z_w - z(solid))`` (``z_w`` alone
    when ``bias`` is None: before debiasing starts), ``mask = [max p >= threshold]`` (float)
    and the targets ``p`` (soft, as released) or ``argmax p`` (hard)."""
    probs = torch.softmax(logits_w if bias is None else debiased(logits_w, bias), dim=-1)
    conf, label = probs.max(-1)
    return (label if hard else probs), (conf >= threshold).to(probs.dtype)


class DebiasedNet(BackboneWrapper):
    """Backbone whose forward adds ``logits_debiased = logits - logits(solid image)`` in
    evaluation mode. :meth:`bias_logits` runs the solid image through the backbone in the
    current mode (the training step calls it, as released, in training mode)."""

    def __init__(self, backbone: nn.Module, fill: float = 1.0):
        super().__init__(backbone)
        self.fill = fill

    def bias_logits(self, like: Tensor) -> Tensor:
        """``(1, C)`` logits of the solid image shaped like a row of ``like``."""
        return self.backbone(solid_image(like, self.fill))["logits"]

    def forward(self, x, only_fc: bool = False, only_feat: bool = False, **kwargs):
        out = self.backbone(x, only_fc=only_fc, only_feat=only_feat, **kwargs)
        if only_fc or only_feat or self.training:
            return out
        out["logits_debiased"] = debiased(out["logits"], self.bias_logits(x))
        return out
