"""Pseudo-Label Certainty Enhancement (PLCE) of SeMi.

Spec: docs/method.md, "SeMi: PLCE" (a class without a prototype takes no part in ``q``).

* :func:`semantic_label`: ``q_c = softmax_c(-||f_s - mu_c||_2 / T_p)`` over the classes that
  have a prototype.
* :func:`mix_weights`: ``lambda_c = alpha * progress * pi_hat_c``.
* :func:`enhance`: ``p~_c = (1 - lambda_c) * p_c + lambda_c * q_c`` (not renormalised).
* :func:`class_weights`: ``pi_hat`` from the histogram, its frequency (``freq``, as released)
  or its inverse frequency (``inv_freq``), per ``semi_plce_weights``.
* :class:`PseudoLabelHistogram`: the class histogram of ``argmax p~`` over confident samples,
  accumulated since the start of training, and ``pi_hat`` refreshed from it once per epoch.

All functions are pure, vectorised, device-agnostic and free of host-device syncs.
"""

from __future__ import annotations

from typing import Dict, Union

import torch
from torch import Tensor

from ..state import all_reduce_sum

__all__ = ["semantic_label", "mix_weights", "enhance", "class_weights", "PLCE_WEIGHTS", "PseudoLabelHistogram"]

#: Values of ``semi_plce_weights`` (see :func:`class_weights`).
PLCE_WEIGHTS = ("freq", "inv_freq")


def semantic_label(
    feats_s: Tensor, protos: Tensor, has_proto: Tensor, T_p: float = 0.1
) -> Tensor:
    """Semantic pseudo-label from prototypes (docs/method.md, "SeMi: PLCE").

    ``q_c = softmax_c(-||f_s - mu_c||_2 / T_p)`` with the Euclidean distance to the
    un-normalised prototypes. Classes without a prototype (``has_proto`` false) take no part:
    their logit is ``-inf`` and ``q_c = 0`` (not the released script's zero prototype). If no class has a prototype the
    result is all zeros (no NaN); mixing it in then only scales ``p`` by ``1 - lambda`` (in
    practice the bank is non-empty long before the warm-up ends).

    Args:
        feats_s: ``(N, d)`` strong-view features (query embeddings).
        protos: ``(C, d)`` prototypes (rows of classes without a prototype are ignored).
        has_proto: ``(C,)`` bool.
        T_p: temperature (0.1).

    Returns:
        ``q`` ``(N, C)``, rows summing to 1 (or 0 when no class has a prototype). The function
        is differentiable; as a pseudo-label it is normally computed on detached features.
    """
    protos = protos.to(dtype=feats_s.dtype)
    dist = torch.cdist(feats_s.unsqueeze(0), protos.unsqueeze(0)).squeeze(0)  # (N, C)
    has = has_proto.to(device=feats_s.device, dtype=torch.bool).unsqueeze(0)  # (1, C)
    logits = torch.where(has, -dist / T_p, torch.full_like(dist, float("-inf")))
    # Masked softmax that returns zeros (not NaN) for a row with no valid class.
    row_max = logits.amax(dim=1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(logits - row_max) * has
    return e / e.sum(dim=1, keepdim=True).clamp(min=torch.finfo(e.dtype).tiny)


def mix_weights(pi_hat: Tensor, alpha: float, progress: Union[float, Tensor]) -> Tensor:
    """Per-class mixing weights ``lambda_c = alpha * progress * pi_hat_c`` ("SeMi: PLCE").

    Args:
        pi_hat: ``(C,)`` normalised pseudo-label class histogram (see
            :class:`PseudoLabelHistogram`).
        alpha: PLCE strength (0.4).
        progress: ``t / t_max`` (float or 0-dim tensor).

    Returns:
        ``lambda`` ``(C,)`` on ``pi_hat``'s device.
    """
    if isinstance(progress, Tensor):
        progress = progress.to(device=pi_hat.device, dtype=pi_hat.dtype)
    return alpha * progress * pi_hat


def enhance(p: Tensor, q: Tensor, lam: Tensor) -> Tensor:
    """Mixed pseudo-label ``p~ = (1 - lambda) * p + lambda * q`` (docs/method.md, "SeMi: PLCE").

    ``lambda`` ``(C,)`` is per class and broadcasts over the batch. As in the authors'
    released script, ``p~`` is *not* renormalised: with per-class ``lambda_c`` and rows of
    ``q`` that may be all zeros, rows of ``p~`` need not sum to 1.

    Args:
        p: ``(N, C)`` linear pseudo-label (softmax of the weak-view logits).
        q: ``(N, C)`` semantic pseudo-label (:func:`semantic_label`).
        lam: ``(C,)`` mixing weights (:func:`mix_weights`).
    """
    lam = lam.to(device=p.device, dtype=p.dtype)
    return (1.0 - lam) * p + lam * q


def class_weights(counts: Tensor, kind: str = "freq") -> Tensor:
    """PLCE's per-class weight ``pi_hat`` from the confident pseudo-label counts (docs/method.md,
    "SeMi: PLCE").

    * ``freq`` (the released script): ``counts / sum(counts)``.
    * ``inv_freq``: ``(1 / counts)`` renormalised to sum to 1 over the classes with a count;
      a class with no confident pseudo-label gets 0, as with ``freq`` (it has no prototype
      either, so PLCE cannot act on it).

    All zeros while no class has a count. Returns float32 on ``counts``' device.
    """
    if kind not in PLCE_WEIGHTS:
        raise ValueError(f"PLCE weights must be one of {', '.join(PLCE_WEIGHTS)}, got {kind!r}")
    counts = counts.to(torch.float32)
    if kind == "inv_freq":
        counts = torch.where(counts > 0, 1.0 / counts.clamp(min=1.0), torch.zeros_like(counts))
    return counts / counts.sum().clamp(min=torch.finfo(counts.dtype).tiny)


class PseudoLabelHistogram:
    """Class histogram of confident pseudo-labels and its normalisation ``pi_hat`` ("SeMi: PLCE").

    ``counts`` ``(C,)`` long accumulates, since the start of training, the number of
    confident samples (``mask`` non-zero) per pseudo-label ``argmax p~``; :meth:`update` is
    called every step. ``pi_hat`` ``(C,)`` float is refreshed from ``counts`` only when the
    caller calls :meth:`refresh` (once per epoch, ``num_eval_iter``), by :func:`class_weights`
    of kind ``weights``. Before any refresh with a non-zero count, ``pi_hat`` is all zeros,
    hence ``lambda = 0``.
    """

    def __init__(self, num_classes: int, device: Union[str, torch.device, None] = None,
                 weights: str = "freq") -> None:
        if weights not in PLCE_WEIGHTS:
            raise ValueError(f"PLCE weights must be one of {', '.join(PLCE_WEIGHTS)}, got {weights!r}")
        self.num_classes, self.weights = int(num_classes), weights
        device = torch.device("cpu") if device is None else torch.device(device)
        self.counts = torch.zeros(self.num_classes, dtype=torch.long, device=device)
        self.pi_hat = torch.zeros(self.num_classes, dtype=torch.float32, device=device)

    @property
    def device(self) -> torch.device:
        return self.counts.device

    @torch.no_grad()
    def update(self, p_tilde_or_labels: Tensor, mask: Tensor) -> None:
        """Add the step's confident pseudo-labels to ``counts`` (vectorised ``scatter_add``).

        Args:
            p_tilde_or_labels: ``(N, C)`` enhanced pseudo-label ``p~`` (its argmax is used)
                or ``(N,)`` long pseudo-labels ``y_hat``.
            mask: ``(N,)`` 0/1 or bool; a sample counts once iff its mask is non-zero.
        """
        x = p_tilde_or_labels.detach()
        labels = x.argmax(dim=1) if x.dim() == 2 else x
        labels = labels.to(device=self.device, dtype=torch.long)
        w = (mask.detach().to(self.device) != 0).to(torch.long)
        self.counts.scatter_add_(0, labels, w)

    @torch.no_grad()
    def refresh(self, all_reduce: bool = False) -> Tensor:
        """Set ``pi_hat = class_weights(counts)`` (zeros while no count); returns ``pi_hat``.

        ``all_reduce``: under DDP, from the counts summed over all ranks (each rank keeps its
        own ``counts``), so that ``pi_hat`` is the same on every rank.
        """
        counts = all_reduce_sum(self.counts) if all_reduce else self.counts
        self.pi_hat = class_weights(counts, self.weights)
        return self.pi_hat

    def state_dict(self) -> Dict[str, Tensor]:
        return {"counts": self.counts.clone(), "pi_hat": self.pi_hat.clone()}

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        for key in ("counts", "pi_hat"):
            if tuple(state[key].shape) != (self.num_classes,):
                raise ValueError(f"{key}: expected shape ({self.num_classes},)")
        self.counts = state["counts"].to(device=self.device, dtype=torch.long).clone()
        self.pi_hat = state["pi_hat"].to(device=self.device, dtype=torch.float32).clone()

    def to(self, device: Union[str, torch.device]) -> "PseudoLabelHistogram":
        self.counts = self.counts.to(device)
        self.pi_hat = self.pi_hat.to(device)
        return self
