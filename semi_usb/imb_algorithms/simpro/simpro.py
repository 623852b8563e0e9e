"""SimPro (Du et al., ICML 2024) as a USB imbalanced algorithm: ``IMB_ALGORITHMS['simpro']``.

docs/method.md, "SimPro": FixMatch's step with soft pseudo-labels made from logits adjusted
by the estimated unlabeled marginal, and both losses on logits adjusted by the estimated
marginal of all data; the marginals are re-estimated at every epoch's end from the labeled
counts and the confident pseudo-labels (``MarginalEstimateHook``). One head: evaluation uses
the standard logits of the EMA model, unadjusted. Runs on FixMatch only, with one or two
strong views.
"""
from __future__ import annotations

import torch
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.utils import IMB_ALGORITHMS

from ..arguments import at_least, in_unit_interval
from ..fixmatch_base import FixMatchImbAlgorithm, repeat_views
from .estimate import (MarginalEstimate, confident, pseudo_label_probs, scale_ratio, supervised_loss,
                       unsupervised_loss)
from .hooks import MarginalEstimateHook


@IMB_ALGORITHMS.register("simpro")
class SimPro(FixMatchImbAlgorithm):
    """SimPro on FixMatch. Arguments: see :meth:`get_argument`."""

    #: Method state saved beside the model (checkpoint key -> attribute; see ..state).
    state_attributes = {"simpro_state": "simpro_estimate"}
    #: The head it predicts with: the one head, unadjusted (evaluation, summary.json, test features).
    eval_head = ("standard", "logits")
    #: Its step takes a second strong view (``num_strong_views: 2``, docs/protocols.md).
    two_strong_views = True

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        counts = self.lb_class_counts().float()
        self.simpro_estimate = MarginalEstimate(counts / counts.sum(), args.simpro_tau, args.simpro_ema_u)
        self.scale_ratio = args.simpro_scale_ratio or scale_ratio(
            len(self.dataset_dict["train_lb"]), len(self.dataset_dict["train_ulb"]), args.batch_size, args.uratio)

    def set_hooks(self):
        super().set_hooks()
        self.register_hook(MarginalEstimateHook(self.num_iter_per_epoch), "MarginalEstimateHook")

    # ---------------------------------------------------------------- step
    def forward_logits(self, x_lb, x_ulb_w, x_ulb_s) -> tuple:
        """Logits and features of the labeled, weak and strong rows (``x_ulb_s`` may hold
        ``V x B_u`` rows of stacked strong views)."""
        sizes = (x_lb.shape[0], x_ulb_w.shape[0], x_ulb_s.shape[0])
        if self.use_cat:
            out = self.model(torch.cat((x_lb, x_ulb_w, x_ulb_s)))
            return out["logits"].split(sizes), out["feat"].split(sizes)
        lb, s = self.model(x_lb), self.model(x_ulb_s)
        with torch.no_grad():
            w = self.model(x_ulb_w)
        return (lb["logits"], w["logits"], s["logits"]), (lb["feat"], w["feat"], s["feat"])

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, x_ulb_s_1=None):
        """One step; with ``x_ulb_s_1`` (``num_strong_views: 2``) both strong views enter
        ``L_u`` with the weak view's pseudo-labels, as in the released code."""
        est = self.simpro_estimate
        strong = x_ulb_s if x_ulb_s_1 is None else torch.cat((x_ulb_s, x_ulb_s_1))
        n_views = strong.shape[0] // x_ulb_w.shape[0]
        with self.amp_cm():
            (z_lb, z_w, z_s), feats = self.forward_logits(x_lb, x_ulb_w, strong)
            probs = pseudo_label_probs(z_w.detach().float(), est.adjustment_ulb)
            mask = confident(probs, self.p_cutoff)
            sup_loss = supervised_loss(z_lb, y_lb, est.adjustment_all, self.scale_ratio)
            unsup_loss = unsupervised_loss(z_s, *repeat_views((probs, mask), n_views), est.adjustment_all)
            total_loss = sup_loss + self.lambda_u * unsup_loss

        ulb = {"y_lb": y_lb, "probs": probs, "mask": mask}
        out_dict = self.process_out_dict(loss=total_loss, feat=dict(zip(("x_lb", "x_ulb_w", "x_ulb_s"), feats)),
                                         ulb=ulb)
        # Tensors, not floats: read (one sync) only when logged.
        log_dict = self.process_log_dict(sup_loss=sup_loss.detach(), unsup_loss=unsup_loss.detach(),
                                         total_loss=total_loss.detach(), util_ratio=mask.mean())
        return out_dict, log_dict

    @staticmethod
    def get_argument():
        return [
            SSL_Argument("--simpro_tau", at_least(0.0, float), 2.0,
                         "exponent of the marginals in the logit adjustments log(pi^tau) (the authors: 2.0 on "
                         "CIFAR-10 and STL-10, 1.0 on CIFAR-100 and ImageNet)"),
            SSL_Argument("--simpro_ema_u", in_unit_interval(), 0.9,
                         "EMA momentum of both marginal estimates, one step per epoch"),
            SSL_Argument("--simpro_scale_ratio", at_least(0.0, float), 0.0,
                         "divisor of the supervised loss; 0: the released u_len / l_len, unlabeled batches per "
                         "labeled batch in one pass over each set"),
        ]
