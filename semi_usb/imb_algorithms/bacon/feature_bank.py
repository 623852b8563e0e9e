"""BaCon's per-sample state (docs/method.md, "BaCon"): for every labeled and unlabeled training
image (labeled first, then unlabeled, by dataset index) its class for the frequency estimate
(``labels``, -1 until known) and its last reliable projection (``feats``), the estimated class
frequencies and the class centres (the positive anchors).

Updates are index writes with static shapes: a masked-out row is written to a scratch row at
the end of the buffers, so no step reads a mask on the host. Under DDP the caller passes
``all_gather=True`` and every rank applies the same writes (the ranks' rows concatenated,
rank 0 first), so every rank keeps the same state.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..state import all_gather_cat


def _gather(all_gather: bool, *tensors: Tensor) -> tuple:
    return tuple(all_gather_cat(t) for t in tensors) if all_gather else tensors


class FeatureBank:
    """``labels`` (N), ``feats`` (N x d), ``class_freq`` (C), ``centres`` (C x d), for
    ``N = n_lb + n_ulb`` images; the buffers hold one scratch row more."""

    _STATE = ("_labels", "_feats", "class_freq", "centres")

    def __init__(self, n_lb: int, n_ulb: int, num_classes: int, dim: int):
        self.n_lb, self.num_classes = int(n_lb), int(num_classes)
        n = self.n_lb + int(n_ulb)
        self._labels = torch.full((n + 1,), -1, dtype=torch.long)
        self._feats = torch.ones(n + 1, dim)       # the released code starts every row at ones
        self.class_freq = torch.ones(num_classes)
        self.centres = torch.ones(num_classes, dim)

    @property
    def labels(self) -> Tensor:
        return self._labels[:-1]

    @property
    def feats(self) -> Tensor:
        return self._feats[:-1]

    def _rows(self, idx: Tensor, keep: Tensor, offset: int) -> Tensor:
        """Buffer rows of dataset indices ``idx`` (+ ``offset``), the scratch row where not ``keep``."""
        scratch = torch.full_like(idx, self._labels.numel() - 1)
        return torch.where(keep.bool(), idx + offset, scratch)

    def update_labels(self, idx_lb: Tensor, y_lb: Tensor, idx_ulb: Tensor, pred_ulb: Tensor, select_ulb: Tensor,
                      all_gather: bool = False) -> None:
        """The released update: the selected unlabeled images take their predicted class; if
        any was selected (in the whole global batch), the labeled images take their labels;
        then the class frequencies are recounted."""
        idx_lb, y_lb, idx_ulb, pred_ulb, select_ulb = _gather(all_gather, idx_lb, y_lb, idx_ulb, pred_ulb,
                                                              select_ulb)
        labels = self._labels
        labels[self._rows(idx_ulb, select_ulb, self.n_lb)] = pred_ulb
        any_selected = select_ulb.bool().any()
        labels[self._rows(idx_lb, any_selected.expand_as(idx_lb), 0)] = y_lb
        known = self.labels.clamp_min(0)
        self.class_freq = torch.zeros_like(self.class_freq).scatter_add_(
            0, known, (self.labels >= 0).to(self.class_freq.dtype))

    def update_features(self, idx_lb: Tensor, proj_lb: Tensor, select_lb: Tensor, idx_ulb: Tensor,
                        proj_ulb: Tensor, select_ulb: Tensor, all_gather: bool = False) -> None:
        """Store the reliable projections (labeled, then unlabeled weak view), then recompute
        each class centre as the mean of the rows labelled with that class (a class without
        any row: zeros)."""
        idx_lb, proj_lb, select_lb, idx_ulb, proj_ulb, select_ulb = _gather(
            all_gather, idx_lb, proj_lb, select_lb, idx_ulb, proj_ulb, select_ulb)
        self._feats[self._rows(idx_lb, select_lb, 0)] = proj_lb.detach().to(self._feats.dtype)
        self._feats[self._rows(idx_ulb, select_ulb, self.n_lb)] = proj_ulb.detach().to(self._feats.dtype)
        c = self.num_classes
        target = torch.where(self.labels >= 0, self.labels, torch.full_like(self.labels, c))
        sums = self._feats.new_zeros(c + 1, self._feats.shape[1]).index_add_(0, target, self.feats)
        counts = self._feats.new_zeros(c + 1).index_add_(0, target, torch.ones_like(target, dtype=self._feats.dtype))
        self.centres = sums[:c] / counts[:c].clamp_min(1).unsqueeze(1)

    def state_dict(self) -> dict:
        return {k.lstrip("_"): getattr(self, k).clone() for k in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        device = self._labels.device
        for k in self._STATE:
            setattr(self, k, state[k.lstrip("_")].to(device))

    def to(self, device) -> "FeatureBank":
        for k in self._STATE:
            setattr(self, k, getattr(self, k).to(device))
        return self
