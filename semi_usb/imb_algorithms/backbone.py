"""A method's network around any USB backbone: :class:`BackboneWrapper` (the backbone under
``backbone.``, its feature width, optimizer groups and weight-decay exemptions) and
:class:`FeatureHeadsNet` (more outputs computed from the backbone's pooled feature)."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor


class BackboneWrapper(nn.Module):
    """Holds ``backbone`` (parameters named ``backbone.*``) and its ``num_features``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.num_features = backbone.num_features

    def group_matcher(self, coarse: bool = False, prefix: str = ""):
        return self.backbone.group_matcher(coarse, prefix=prefix + "backbone.")

    def no_weight_decay(self):
        inner = getattr(self.backbone, "no_weight_decay", lambda: [])()
        return ["backbone." + n for n in inner]


class FeatureHeadsNet(BackboneWrapper):
    """Backbone whose forward adds :meth:`feature_outputs` of its pooled ``feat`` to the
    backbone's outputs (``only_fc`` / ``only_feat`` as the backbone's)."""

    def feature_outputs(self, feat: Tensor) -> dict:
        """The added outputs, by name (in the order they enter the output dict)."""
        raise NotImplementedError

    def forward(self, x, only_fc: bool = False, only_feat: bool = False, **kwargs):
        if only_fc:
            return self.backbone(x, only_fc=True)
        out = self.backbone(x, **kwargs)
        if only_feat:
            return out
        out.update(self.feature_outputs(out["feat"]))
        return out
