"""CPE's loss terms (docs/method.md, "CPE"), pure and vectorised, no host-device sync.

* :func:`branch_weights`: which batch-norm branch learns from which pseudo-labelled sample:
  the head branch from every confident sample, the medium branch from those whose pseudo-label
  is at least ``cut1``, the tail branch from those at least ``cut2`` (classes are indexed from
  the most frequent, as in the long-tailed splits).
* :func:`routed_unsup_loss`: one expert's unlabeled loss, the branch CE summed over the routed
  samples and divided by their number.
* :func:`expert_pseudo_labels`: each expert's pseudo-label and confident mask from its weak
  view logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-12


def expert_pseudo_labels(logits_w: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """``(pseudo_label, mask)`` of shape ``(..., N)`` from weak-view logits ``(..., N, C)``:
    ``argmax softmax(z)`` and ``[max softmax(z) >= threshold]`` (float)."""
    conf, label = torch.softmax(logits_w, dim=-1).max(-1)
    return label, (conf >= threshold).to(logits_w.dtype)


def branch_weights(pseudo_label: Tensor, mask: Tensor, cut1: int, cut2: int) -> Tensor:
    """``(3, N)``: ``mask``, ``mask * [y >= cut1]``, ``mask * [y >= cut2]`` for the head,
    medium and tail branches."""
    medium, tail = (pseudo_label >= cut1).to(mask.dtype), (pseudo_label >= cut2).to(mask.dtype)
    return torch.stack([mask, mask * medium, mask * tail])


def routed_unsup_loss(branch_logits_s: Tensor, pseudo_label: Tensor, weights: Tensor) -> Tensor:
    """``sum_b sum_i w_bi CE(s_bi, y_i) / (sum w + 1e-12)`` for one expert: its branch logits
    of the strong view ``(3, N, C)``, the pseudo-labels ``(N,)`` and the branch weights
    ``(3, N)``. 0 when no sample is confident."""
    b, n, c = branch_logits_s.shape
    ce = F.cross_entropy(branch_logits_s.reshape(b * n, c), pseudo_label.repeat(b), reduction="none").view(b, n)
    return (ce * weights).sum() / (weights.sum() + EPS)
