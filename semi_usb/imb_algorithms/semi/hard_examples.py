"""Hard-example terms of SeMi: OHEML weights and Embedding Align.

Spec: docs/method.md, "SeMi: OHEML" (Online Hard Example Mining and Learning) and
"SeMi: Embedding Align" (for ultra-hard samples).

* :func:`normalized_entropy`, :func:`hard_example_weights`: ``w = s * H(p~) + (1 - s)``.
* :func:`embedding_align_loss`: DINO-style alignment of the strong view's feature
  distribution to the (centred, sharpened) weak view's, on samples that fail the mask.
* :func:`update_center`: EMA of the teacher's batch mean; :class:`EmbeddingCenter` holds the
  centre as method state (``state_dict`` / ``load_state_dict`` / ``to``).

Pure, vectorised, device-agnostic functions with no host-device sync.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..state import Device, all_reduce_mean

__all__ = [
    "normalized_entropy",
    "hard_example_weights",
    "embedding_align_loss",
    "update_center",
    "EmbeddingCenter",
]

_EPS = 1e-8


def normalized_entropy(p: Tensor) -> Tensor:
    """Normalised entropy ``H = -sum_c p_c log p_c / log C`` (docs/method.md, "SeMi: OHEML").

    ``p`` ``(N, C)`` is clamped to ``[1e-8, 1 - 1e-8]`` first (as in the spec), so a one-hot
    row gives ``H ~ 0`` and a uniform row gives ``H = 1``. Rows are not renormalised (``p~``
    of PLCE need not sum to 1). With ``C = 1`` the result is all zeros.

    Returns:
        ``(N,)`` entropies, in the dtype of ``p``.
    """
    num_classes = p.shape[-1]
    if num_classes < 2:
        return torch.zeros(p.shape[:-1], dtype=p.dtype, device=p.device)
    pc = p.clamp(min=_EPS, max=1.0 - _EPS)
    return -(pc * torch.log(pc)).sum(dim=-1) / math.log(num_classes)


def hard_example_weights(p: Tensor, s: float = 0.75) -> Tensor:
    """Per-sample OHEML weight ``w = s * H(p) + (1 - s)`` (docs/method.md, "SeMi: OHEML").

    Confident (one-hot) rows get ``~1 - s`` (0.25), uniform rows get 1. Pass the detached
    enhanced pseudo-label ``p~``; the weight is then a constant of the loss. The caller uses
    ``w = 1`` before the warm-up ends and ``L_u = mean(CE(z_s, y_hat) * mask * w)``.

    Args:
        p: ``(N, C)`` (enhanced) pseudo-label probabilities.
        s: OHEML scale (0.75).

    Returns:
        ``(N,)`` weights in ``[1 - s, 1]`` (up to the clamp).
    """
    return s * normalized_entropy(p) + (1.0 - s)


def embedding_align_loss(
    feat_w: Tensor,
    feat_s: Tensor,
    center: Tensor,
    mask: Tensor,
    T_e: float = 0.09,
) -> Tuple[Tensor, Tensor]:
    """Embedding Align loss for samples failing the mask (docs/method.md, "SeMi: Embedding Align").

    Teacher ``t = softmax((f_w - center) / (T_e / 5))`` (detached, centred, sharpened),
    student ``log_softmax(f_s / T_e)``, both over the ``d`` feature dimensions of the raw
    ``feat`` vectors, and

        ``L_e = mean_n( -sum_d t_nd * log_softmax(f_s / T_e)_nd * (1 - mask_n) )``,

    the mean taken over all ``N`` samples (as the spec's formula), so a sample with
    ``mask = 1`` contributes 0 and receives no gradient. Gradients flow only into ``feat_s``.

    Args:
        feat_w: ``(N, d)`` weak-view features (teacher input; detached here).
        feat_s: ``(N, d)`` strong-view features (student).
        center: ``(d,)`` teacher centre (starts at zeros; see :func:`update_center`).
        mask: ``(N,)`` 0/1 or bool confidence mask of the standard branch.
        T_e: student temperature (0.09); the teacher's is ``T_e / 5``.

    Returns:
        ``(loss, teacher)``: the scalar loss and the detached teacher distribution
        ``(N, d)`` to pass to :func:`update_center` after the step.
    """
    teacher = torch.softmax((feat_w.detach() - center.to(feat_w.dtype)) / (T_e / 5.0), dim=-1)
    teacher = teacher.detach()
    log_student = F.log_softmax(feat_s / T_e, dim=-1)
    per_sample = -(teacher * log_student).sum(dim=-1)  # (N,)
    unmasked = 1.0 - mask.to(device=per_sample.device, dtype=per_sample.dtype)
    return (per_sample * unmasked).mean(), teacher


@torch.no_grad()
def update_center(
    center: Tensor, teacher: Tensor, momentum: float = 0.9, all_reduce: bool = False
) -> Tensor:
    """Centre EMA ``center <- momentum * center + (1 - momentum) * mean_batch(t)`` ("SeMi: Embedding Align").

    Args:
        center: ``(d,)`` current centre (zeros at the start of training).
        teacher: ``(N, d)`` teacher distribution of the step (from
            :func:`embedding_align_loss`), or its ``(d,)`` batch mean.
        momentum: 0.9.
        all_reduce: average the batch mean over DDP ranks first (as DINO does), so that the
            centre stays identical on every rank; a no-op without an initialised process
            group of more than one rank. Assumes equal ``N`` on every rank.

    Returns:
        The new centre (a new tensor; ``center`` is not modified).
    """
    batch_mean = teacher.mean(dim=0) if teacher.dim() == 2 else teacher
    batch_mean = batch_mean.to(center.dtype)
    if all_reduce:
        batch_mean = all_reduce_mean(batch_mean)
    return momentum * center + (1.0 - momentum) * batch_mean


class EmbeddingCenter:
    """The teacher centre of Embedding Align, ``(d,)``, zeros at the start of training.

    Its saved form is the centre tensor itself (the checkpoint's ``semi_state/ealign_center``).
    """

    def __init__(self, dim: int, device: Device = None) -> None:
        self.center = torch.zeros(dim, device=device)

    def update(self, teacher: Tensor, momentum: float = 0.9) -> None:
        """:func:`update_center` with the batch mean averaged over DDP ranks."""
        self.center = update_center(self.center, teacher, momentum, all_reduce=True)

    def state_dict(self) -> Tensor:
        return self.center.clone()

    def load_state_dict(self, state: Tensor) -> None:
        if tuple(state.shape) != tuple(self.center.shape):
            raise ValueError(f"ealign_center: expected shape {tuple(self.center.shape)}, got {tuple(state.shape)}")
        self.center = state.to(device=self.center.device, dtype=self.center.dtype).clone()

    def to(self, device: Device) -> "EmbeddingCenter":
        self.center = self.center.to(device)
        return self
