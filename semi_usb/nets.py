"""Small CNN backbones for CPU-scale runs, registered in ``semilearn.nets``.

USB looks networks up by attribute name (``getattr(semilearn.nets, args.net)``), so
registering is setting that attribute. The models follow USB's network contract: the
forward returns ``{'logits', 'feat'}``, accepts ``only_feat`` / ``only_fc``, and exposes
``num_features``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.01),
                         nn.LeakyReLU(0.1, inplace=True))


class SmallCNN(nn.Module):
    """``depth`` conv blocks (channels double after each 2x2 pooling), global average pooling
    and a linear classifier. Works for any input size >= 2**(pools). ``extract(x)`` is the
    feature map before the pooling, as in USB's WRN and ResNet (CPE's class-wise batch
    normalisation works on it)."""

    def __init__(self, num_classes: int, width: int = 32, stages: int = 3, in_channels: int = 3):
        super().__init__()
        layers, cin = [], in_channels
        for s in range(stages):
            cout = width * 2 ** s
            layers += [_block(cin, cout), _block(cout, cout)]
            if s < stages - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.extract = nn.Sequential(*layers)
        self.num_features = cin
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x, only_fc: bool = False, only_feat: bool = False, **kwargs):
        if only_fc:
            return self.classifier(x)
        feat = torch.flatten(F.adaptive_avg_pool2d(self.extract(x), 1), 1)
        if only_feat:
            return feat
        return {"logits": self.classifier(feat), "feat": feat}

    def group_matcher(self, coarse: bool = False, prefix: str = "") -> dict:
        return dict(stem=rf"^{prefix}extract\.0", blocks=rf"^{prefix}extract\.(\d+)")

    def no_weight_decay(self) -> list:
        """Biases and batch-norm parameters (every parameter with at most one dimension), the
        rule of semilearn's ``param_groups_weight_decay``; conv kernels and the classifier's
        weight keep their weight decay."""
        return [n for n, p in self.named_parameters() if p.ndim <= 1]


def cnn_tiny(num_classes: int, pretrained: bool = False, pretrained_path: str | None = None, **kwargs) -> SmallCNN:
    """4 conv layers, 16-32 channels, 32-d features: the quick-start and CI network."""
    return SmallCNN(num_classes, width=16, stages=2)


def cnn_small(num_classes: int, pretrained: bool = False, pretrained_path: str | None = None, **kwargs) -> SmallCNN:
    """6 conv layers, 32-128 channels, 128-d features (wrn_28_2's feature size)."""
    return SmallCNN(num_classes, width=32, stages=3)


def cnn_mid(num_classes: int, pretrained: bool = False, pretrained_path: str | None = None, **kwargs) -> SmallCNN:
    """6 conv layers, 16-64 channels, 64-d features: cnn_tiny plus a third, 4x-downsampled
    stage, so about the same time a step on 28x28 images, a wider receptive field and faster
    learning per iteration (the CPU comparison's Fashion-MNIST network)."""
    return SmallCNN(num_classes, width=16, stages=3)


NETS = {"cnn_tiny": cnn_tiny, "cnn_mid": cnn_mid, "cnn_small": cnn_small}


def register(nets_module) -> None:
    """Make the builders visible to ``get_net_builder`` (``getattr(semilearn.nets, name)``)."""
    for name, builder in NETS.items():
        setattr(nets_module, name, builder)
