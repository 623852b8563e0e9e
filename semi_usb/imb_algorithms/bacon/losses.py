"""BaCon's losses (docs/method.md, "BaCon"): ABC's Bernoulli-masked loss of the auxiliary head,
and the balanced feature-level contrastive loss (class centres as positives, reliable
negatives, class-wise temperatures). Vectorised over samples and classes; no host sync."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lb_keep_probability(class_counts: Tensor) -> Tensor:
    """ABC's per-class keep probability of a labeled sample: ``min_c n_c / n_c``, in float64
    as USB's ABC and the released code hold it (the Bernoulli draws depend on the dtype)."""
    counts = class_counts.double().clamp_min(1)
    return counts.min() / counts


def abc_loss(aux_lb: Tensor, y_lb: Tensor, aux_w: Tensor, aux_s: Tensor, keep_lb: Tensor, progress: float,
             p_cutoff: float) -> tuple:
    """ABC's loss of the auxiliary head and its unlabeled mask.

    ``L_abc = mean(CE(a_lb, y) * Bern(keep[y])) + mean(CE(a_s, y_hat) * [max q >= tau_abc] * Bern(k[y_hat]))``
    with ``q = softmax(a_w)``, ``y_hat = argmax q`` and ``k = 1 - progress (1 - keep)``
    (``progress`` = epoch / epochs). The labeled Bernoulli draw comes first, then the
    unlabeled one, from the device's global generator."""
    mask_lb = torch.bernoulli(keep_lb[y_lb].detach()).float()
    lb_loss = (F.cross_entropy(aux_lb, y_lb, reduction="none") * mask_lb).mean()
    with torch.no_grad():
        conf, y_hat = torch.softmax(aux_w.detach().float(), dim=-1).max(-1)
        keep_ulb = 1 - progress * (1 - keep_lb)
        mask_ulb = (conf >= p_cutoff).float() * torch.bernoulli(keep_ulb[y_hat]).float()
    ulb_loss = (F.cross_entropy(aux_s, y_hat, reduction="none") * mask_ulb).mean()
    return lb_loss + ulb_loss, mask_ulb


def reliable_negatives(y_lb: Tensor, top_ulb: Tensor, num_classes: int) -> Tensor:
    """``(C, N)`` bool, ``N = B + U``: for class ``c``, the labeled rows of another class and
    the unlabeled rows whose top-k auxiliary predictions do not contain ``c``."""
    classes = torch.arange(num_classes, device=y_lb.device)
    lb = y_lb.unsqueeze(0) != classes.unsqueeze(1)
    in_top = (top_ulb.unsqueeze(0) == classes.view(-1, 1, 1)).any(-1)
    return torch.cat([lb, ~in_top], dim=1)


def balanced_temperatures(class_freq: Tensor, temperature: float, eps: float, progress: float) -> Tensor:
    """Class-wise temperature of the positive term:
    ``tau_c = T - (1 - t / t_max)^2 * eps * sqrt(f_c / max f)``."""
    ratio = class_freq.float() / class_freq.float().max().clamp_min(1e-12)
    return temperature - (1 - progress) ** 2 * eps * ratio.sqrt()


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarities of the rows of ``a`` and ``b`` (``|a| x |b|``)."""
    return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).t()


def contrastive_loss(feats: Tensor, y: Tensor, centres: Tensor, negatives: Tensor, select: Tensor,
                     temps: Tensor, temperature: float, neg_weight: float) -> Tensor:
    """The balanced contrastive loss over the rows ``feats`` (``N x d``) of classes ``y``:

    ``pos_i = exp(cos(g_i, c_{y_i}) / tau_{y_i})``,
    ``neg_c = mean over rows i of class c and negatives j of c of exp(cos(g_i, g_j) / T)``,
    ``L = sum_i -log(pos_i / (pos_i + W neg_{y_i} + 1e-8)) * select_i / (sum select + 1e-8)``.

    A class whose negative set is empty gets ``neg_c = 0``."""
    num_classes = centres.shape[0]
    pos = torch.exp((F.normalize(feats, dim=-1, eps=1e-8) * F.normalize(centres[y], dim=-1, eps=1e-8)).sum(-1)
                    / temps[y])
    sim = torch.exp(cosine_matrix(feats, feats) / temperature)
    neg_rows = negatives.float()[y]                      # (N, N): row i's negatives (those of class y_i)
    row_sums = (sim * neg_rows).sum(-1)
    onehot = F.one_hot(y, num_classes).to(feats.dtype)  # (N, C)
    class_sums = onehot.t() @ row_sums
    pairs = onehot.sum(0) * negatives.float().sum(-1)
    neg = class_sums / pairs.clamp_min(1)
    loss = -torch.log(pos / (pos + neg_weight * neg[y] + 1e-8))
    return (loss * select.float()).sum() / (select.float().sum() + 1e-8)
