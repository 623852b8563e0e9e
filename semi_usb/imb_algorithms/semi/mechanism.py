"""Mechanism metrics of SeMi's parts (docs/method.md, "Mechanism metrics"): what PLCE, OHEML
and Embedding Align did to one step. Pure, vectorised functions returning 0-dim device
tensors (no host-device sync); the algorithm calls them in the logged steps only.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["plce_effect", "oheml_effect", "ealign_effect"]


def plce_effect(p: Tensor, p_tilde: Tensor, mask_raw: Tensor, mask: Tensor, lam: Tensor) -> Dict[str, Tensor]:
    """What PLCE changed in the standard branch's pseudo-labels.

    Args:
        p: ``(N, C)`` pseudo-label before PLCE; ``p_tilde``: after (``(1 - lambda) p + lambda q``).
        mask_raw: ``(N,)`` the OR mask that ``p`` would have given; ``mask``: the step's (of ``p_tilde``).
        lam: ``(C,)`` PLCE's mixing weights.

    Returns:
        ``plce_changed``: the fraction of masked samples whose class (argmax) PLCE changed (0
        with no masked sample); ``plce_added``: the number of samples in the mask only because
        of PLCE; ``plce_lambda_max``: the largest ``lambda_c``.
    """
    masked = mask > 0
    changed = (p_tilde.argmax(-1) != p.argmax(-1)) & masked
    return {"plce_changed": changed.sum() / masked.sum().clamp(min=1),
            "plce_added": (masked & (mask_raw <= 0)).sum().float(),
            "plce_lambda_max": lam.max()}


def oheml_effect(logits_s: Tensor, targets: Tensor, mask: Tensor, weight: Tensor) -> Dict[str, Tensor]:
    """What OHEML's weights did to the standard branch's ``L_u`` (rows: every strong view,
    ``targets``, ``mask`` and ``weight`` repeated per view).

    Returns:
        ``oheml_scale``: the weighted ``L_u`` over the unweighted one (``sum CE m w / sum CE m``;
        1 when nothing is masked); ``oheml_weight_mean``, ``oheml_weight_std``: the weights'
        mean and standard deviation over the masked samples (0 when none).
    """
    ce = F.cross_entropy(logits_s.float(), targets, reduction="none") * mask
    unweighted = ce.sum()
    scale = torch.where(unweighted > 0, (ce * weight).sum() / unweighted.clamp(min=1e-12), torch.ones_like(unweighted))
    m = (mask > 0).to(weight.dtype)
    n = m.sum().clamp(min=1)
    mean = (weight * m).sum() / n
    std = (((weight - mean) ** 2 * m).sum() / n).sqrt()
    return {"oheml_scale": scale, "oheml_weight_mean": mean, "oheml_weight_std": std}


def ealign_effect(ealign_loss: Tensor, total_loss: Tensor, mask: Tensor) -> Dict[str, Tensor]:
    """Embedding Align's share of the step's loss (its weighted term over the total) and the
    fraction of samples it acts on (those that fail the mask; rows as in its loss)."""
    return {"ealign_share": ealign_loss / total_loss.clamp(min=1e-12), "ealign_frac": 1.0 - (mask > 0).float().mean()}
