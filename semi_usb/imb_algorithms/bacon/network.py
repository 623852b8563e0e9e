"""BaCon's network (docs/method.md, "BaCon"): any USB backbone with two more layers on its
pooled feature, ABC's auxiliary (balanced) classifier ``logits_aux`` and the projection
``proj`` into the contrastive space."""
from __future__ import annotations

import torch.nn as nn

from ..backbone import FeatureHeadsNet


class BaConNet(FeatureHeadsNet):
    """Backbone + auxiliary classifier + linear projection; forward returns ``logits``,
    ``feat``, ``logits_aux`` and ``proj``."""

    def __init__(self, backbone: nn.Module, num_classes: int, proj_dim: int = 16):
        super().__init__(backbone)
        self.aux_classifier = nn.Linear(self.num_features, num_classes)
        self.projection = nn.Linear(self.num_features, proj_dim)

    def feature_outputs(self, feat):
        return {"logits_aux": self.aux_classifier(feat), "proj": self.projection(feat)}
