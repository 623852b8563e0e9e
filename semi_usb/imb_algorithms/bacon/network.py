"""BaCon's network (docs/method.md, "BaCon"): any USB backbone with two more layers on its
pooled feature, ABC's auxiliary (balanced) classifier ``logits_aux`` and the projection
``proj`` into the contrastive space."""
from __future__ import annotations

import torch.nn as nn


class BaConNet(nn.Module):
    """Backbone + auxiliary classifier + linear projection; forward returns ``logits``,
    ``feat``, ``logits_aux`` and ``proj``."""

    def __init__(self, backbone: nn.Module, num_classes: int, proj_dim: int = 16):
        super().__init__()
        self.backbone = backbone
        self.num_features = backbone.num_features
        self.aux_classifier = nn.Linear(self.num_features, num_classes)
        self.projection = nn.Linear(self.num_features, proj_dim)

    def forward(self, x, only_fc: bool = False, only_feat: bool = False, **kwargs):
        if only_fc:
            return self.backbone(x, only_fc=True)
        out = self.backbone(x, **kwargs)
        if only_feat:
            return out
        out["logits_aux"] = self.aux_classifier(out["feat"])
        out["proj"] = self.projection(out["feat"])
        return out

    def group_matcher(self, coarse: bool = False, prefix: str = ""):
        return self.backbone.group_matcher(coarse, prefix=prefix + "backbone.")

    def no_weight_decay(self):
        inner = getattr(self.backbone, "no_weight_decay", lambda: [])()
        return ["backbone." + n for n in inner]
