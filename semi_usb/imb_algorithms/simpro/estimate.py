"""SimPro's probabilistic frame (docs/method.md, "SimPro"): the two class marginals it
estimates, the logit adjustments built from them, and its two losses.

SimPro keeps two class distributions, both updated once an epoch (the E-step of its EM view):

* ``pi_all`` (the released code's ``adapt_dis``), the marginal of labeled and unlabeled data
  together, starts at the labeled prior and adjusts the logits of both losses (M-step);
* ``pi_ulb`` (``estimated_dis``), the unlabeled marginal, starts uniform and adjusts the
  logits the pseudo-labels are made from.

During an epoch the labeled class counts and the summed pseudo-label distributions of the
confident unlabeled samples are accumulated; at the epoch's end both marginals take an EMA
step towards those sums, and the adjustments ``log(pi ** tau + 1e-12)`` used for the whole
next epoch are rebuilt. Everything is a tensor on the training device; nothing synchronises
with the host.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..state import all_reduce_sum

#: Added inside the log of an adjustment (the released ``compute_adjustment_by_py``).
ADJUSTMENT_EPS = 1e-12


def adjustment(pi: Tensor, tau: float) -> Tensor:
    """``log(pi ** tau + 1e-12)``: the additive logit adjustment of a class marginal."""
    return torch.log(pi ** tau + ADJUSTMENT_EPS)


def pseudo_label_probs(logits_w: Tensor, adjustment_ulb: Tensor) -> Tensor:
    """``softmax(z_w + log pi_ulb^tau)``: the soft pseudo-label of each unlabeled image."""
    return torch.softmax(logits_w + adjustment_ulb, dim=-1)


def confident(probs: Tensor, threshold: float) -> Tensor:
    """``[max p >= threshold]`` as a float mask."""
    return (probs.amax(-1) >= threshold).to(probs.dtype)


def soft_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-row cross-entropy against a target distribution (``F.cross_entropy``'s soft form)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1)


def supervised_loss(logits_lb: Tensor, y_lb: Tensor, adjustment_all: Tensor, scale_ratio: float) -> Tensor:
    """``L_x = CE(z_lb + log pi_all^tau, y) / scale_ratio`` (mean over the batch)."""
    return F.cross_entropy(logits_lb + adjustment_all, y_lb) / scale_ratio


def unsupervised_loss(logits_s: Tensor, probs: Tensor, mask: Tensor, adjustment_all: Tensor) -> Tensor:
    """``L_u = mean(CE(z_s + log pi_all^tau, p) * mask)`` with the soft pseudo-labels ``p``
    (mean over all rows, confident or not)."""
    return (soft_ce(logits_s + adjustment_all, probs) * mask).mean()


def scale_ratio(n_lb: int, n_ulb: int, batch_size: int, uratio: int) -> float:
    """The released ``u_len / l_len``: unlabeled batches per labeled batch in one pass over
    each set (``drop_last`` loaders; at least one batch each)."""
    return max(n_ulb // (batch_size * uratio), 1) / max(n_lb // batch_size, 1)


class MarginalEstimate:
    """SimPro's running state: the marginals ``pi_all`` and ``pi_ulb``, the adjustments of
    the current epoch, and the epoch's sums (labeled counts, confident pseudo-label mass).

    :meth:`accumulate` runs after every step, :meth:`end_epoch` at every epoch start after
    the first (the caller decides when)."""

    _STATE = ("pi_all", "pi_ulb", "adjustment_all", "adjustment_ulb", "lb_counts", "ulb_mass")

    def __init__(self, pi_lb: Tensor, tau: float = 2.0, momentum: float = 0.9):
        c = pi_lb.numel()
        self.tau, self.momentum = float(tau), float(momentum)
        self.pi_all = pi_lb.float().clone()
        self.pi_ulb = torch.full((c,), 1.0 / c)
        self.lb_counts = torch.zeros(c)
        self.ulb_mass = torch.zeros(c)
        self.adjustment_all = adjustment(self.pi_all, self.tau)
        self.adjustment_ulb = adjustment(self.pi_ulb, self.tau)

    def accumulate(self, y_lb: Tensor, probs: Tensor, mask: Tensor, all_reduce: bool = False) -> None:
        """Add a step's labeled class counts and the pseudo-label distributions of its
        confident unlabeled images. ``all_reduce``: the sums of all DDP ranks, so that every
        rank keeps what one process on the global batch would."""
        counts = torch.bincount(y_lb, minlength=self.lb_counts.numel()).to(self.lb_counts.dtype)
        mass = (probs.float() * mask.float().unsqueeze(-1)).sum(0)
        if all_reduce:
            both = all_reduce_sum(torch.stack([counts, mass]))
            counts, mass = both[0], both[1]
        self.lb_counts = self.lb_counts + counts
        self.ulb_mass = self.ulb_mass + mass

    def end_epoch(self) -> None:
        """The E-step: ``pi_ulb <- m pi_ulb + (1 - m) mass / (sum(mass) + 1)`` and
        ``pi_all <- m pi_all + (1 - m) (counts + mass) / sum(counts + mass)``, new
        adjustments from them, sums reset."""
        m = self.momentum
        self.pi_ulb = m * self.pi_ulb + (1 - m) * self.ulb_mass / (self.ulb_mass.sum() + 1)
        joint = self.lb_counts + self.ulb_mass
        self.pi_all = m * self.pi_all + (1 - m) * joint / joint.sum()
        self.adjustment_all = adjustment(self.pi_all, self.tau)
        self.adjustment_ulb = adjustment(self.pi_ulb, self.tau)
        self.lb_counts = torch.zeros_like(self.lb_counts)
        self.ulb_mass = torch.zeros_like(self.ulb_mass)

    def state_dict(self) -> dict:
        return {k: getattr(self, k).clone() for k in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        device = self.pi_all.device
        for k in self._STATE:
            setattr(self, k, state[k].to(device))

    def to(self, device) -> "MarginalEstimate":
        for k in self._STATE:
            setattr(self, k, getattr(self, k).to(device))
        return self
