"""CPE's network (docs/method.md, "CPE"): three experts on one backbone, with class-wise
batch normalisation (CBN).

The backbone's feature map goes through three batch-norm layers, one per class group
(head, medium, tail); each normalised map is pooled into a feature; each of the three
experts' linear classifiers scores all three features. An expert's logits are the mean of
its three branch logits, which (the classifier being linear) is the classifier of the mean
feature: that mean is the ``feat`` the network returns. The labeled class prior rides along
as a buffer (``log_prior``), so it moves, saves and loads with the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..acr.balanced_head import log_prior
from ..backbone import BackboneWrapper

#: Class groups of the batch-norm branches, in the order of ``branch_logits``' second axis.
BRANCHES = ("head", "medium", "tail")
NUM_EXPERTS = 3


def feature_map(backbone: nn.Module, x: Tensor) -> Tensor:
    """The backbone's feature map before global pooling, ``(N, d, h, w)``: its ``extract(x)``
    (USB's WRN and ResNet, the plugin's small CNNs)."""
    return backbone.extract(x)


def supports_cbn(backbone: nn.Module) -> bool:
    """Whether the backbone exposes a feature map (``extract``) for the class-wise batch norm."""
    return callable(getattr(backbone, "extract", None))


class ExpertsNet(BackboneWrapper):
    """Backbone + CBN + three experts. Expert 1 is the backbone's own classifier; experts 2
    and 3 are new linear layers (PyTorch's default initialisation, as released).

    forward returns ``branch_logits`` ``(experts, branches, N, C)``, the experts' logits
    ``logits`` (expert 1), ``logits_2``, ``logits_3`` (each the mean over the branches) and
    ``feat`` (the mean of the three branch features, ``(N, d)``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, class_counts: Tensor | None = None):
        if not supports_cbn(backbone):
            raise ValueError(f"cpe needs a network with a feature map (extract(x)), got {type(backbone).__name__}")
        super().__init__(backbone)
        self.branch_norms = nn.ModuleList(nn.BatchNorm2d(self.num_features) for _ in BRANCHES)
        self.classifiers = nn.ModuleList(nn.Linear(self.num_features, num_classes) for _ in range(NUM_EXPERTS - 1))
        counts = torch.ones(num_classes) if class_counts is None else torch.as_tensor(class_counts, dtype=torch.float)
        self.register_buffer("log_prior", log_prior(counts))

    def heads(self) -> list:
        return [self.backbone.classifier, *self.classifiers]

    def forward(self, x, only_fc: bool = False, only_feat: bool = False, **kwargs):
        if only_fc:
            return self.backbone.classifier(x)
        fmap = feature_map(self.backbone, x)
        feats = torch.stack([torch.flatten(F.adaptive_avg_pool2d(bn(fmap), 1), 1) for bn in self.branch_norms])
        if only_feat:
            return feats.mean(0)
        branch_logits = torch.stack([head(feats) for head in self.heads()])  # (experts, branches, N, C)
        experts = branch_logits.mean(1)
        return {"branch_logits": branch_logits, "logits": experts[0], "logits_2": experts[1], "logits_3": experts[2],
                "feat": feats.mean(0)}
