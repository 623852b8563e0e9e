"""CDMAD (Lee & Kim, CVPR 2024) as a USB imbalanced algorithm: ``IMB_ALGORITHMS['cdmad']``.

docs/method.md, "CDMAD": FixMatch whose pseudo-labels come from the weak view's logits minus
the logits of a solid image (the classifier's bias, measured by the current model in each
step), from iteration ``cdmad_debias_start_iter`` on; evaluation predicts with the EMA
model's debiased logits (``logits_debiased``). The pseudo-labels are, as released, soft
(``softmax`` of the debiased logits) and unthresholded (``cdmad_p_cutoff`` 0): CDMAD's own
keys, so FixMatch's ``p_cutoff``, ``hard_label`` and ``T`` are not used. Runs on FixMatch only.
"""
from __future__ import annotations

import torch
from semilearn.algorithms.utils import SSL_Argument, str2bool
from semilearn.core.utils import IMB_ALGORITHMS

from ..arguments import Range, at_least, in_unit_interval, within
from ..device import unwrap
from ..fixmatch_base import FixMatchImbAlgorithm, repeat_views
from .debias import DebiasedNet, debiased_targets


@IMB_ALGORITHMS.register("cdmad")
class CDMAD(FixMatchImbAlgorithm):
    """CDMAD on FixMatch. Arguments: see :meth:`get_argument`."""

    #: The head it predicts with: the debiased logits (evaluation, summary.json, test features).
    eval_head = ("debiased", "logits_debiased")
    #: Its step takes a second strong view (``num_strong_views: 2``, docs/protocols.md).
    two_strong_views = True

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.cdmad_init(args)
        super().__init__(args, net_builder, tb_log, logger, **kwargs)

    def cdmad_init(self, args):
        self.debias_start, self.fill = args.cdmad_debias_start_iter, args.cdmad_fill
        self.cdmad_p_cutoff, self.cdmad_hard_label = args.cdmad_p_cutoff, args.cdmad_hard_label

    # ---------------------------------------------------------------- model
    def wrap_network(self, backbone):
        return DebiasedNet(backbone, self.fill)

    # ---------------------------------------------------------------- step
    def view_logits(self, x_lb, x_ulb_w, strong_views):
        """Logits of the labeled, weak and (stacked) strong views. Concatenated in one forward
        (``use_cat``), else one forward per view, the weak one without gradient (the
        released script's separate forwards)."""
        if self.use_cat:
            strong = torch.cat(strong_views)
            logits = self.model(torch.cat((x_lb, x_ulb_w, strong)))["logits"]
            return logits.split((x_lb.shape[0], x_ulb_w.shape[0], strong.shape[0]))
        with torch.no_grad():
            logits_w = self.model(x_ulb_w)["logits"]
        logits_lb = self.model(x_lb)["logits"]
        return logits_lb, logits_w, torch.cat([self.model(s)["logits"] for s in strong_views])

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, x_ulb_s_1=None):
        """One step; with ``x_ulb_s_1`` (``num_strong_views: 2``, the authors' protocol) both
        strong views enter ``L_u`` (the mean over both)."""
        strong_views = (x_ulb_s,) if x_ulb_s_1 is None else (x_ulb_s, x_ulb_s_1)
        with self.amp_cm():
            with torch.no_grad():  # the classifier's bias, in training mode, before the step's forward (as released)
                bias = unwrap(self.model).bias_logits(x_ulb_w).float()
            logits_lb, logits_w, logits_s = self.view_logits(x_lb, x_ulb_w, strong_views)
            active = self.it >= self.debias_start
            targets, mask = debiased_targets(logits_w.detach().float(), bias if active else None,
                                             self.cdmad_p_cutoff, self.cdmad_hard_label)
            sup_loss = self.ce_loss(logits_lb, y_lb, reduction="mean")
            targets_v, mask_v = repeat_views((targets, mask), len(strong_views))
            unsup_loss = self.consistency_loss(logits_s, targets_v, "ce", mask=mask_v)
            total_loss = sup_loss + self.lambda_u * unsup_loss

        out_dict = self.process_out_dict(loss=total_loss)
        # Tensors, not floats: read (one sync) only when logged. See LoggingHook.
        log_dict = self.process_log_dict(sup_loss=sup_loss.detach(), unsup_loss=unsup_loss.detach(),
                                         total_loss=total_loss.detach(), util_ratio=mask.mean(),
                                         bias_spread=bias.amax() - bias.amin())
        return out_dict, log_dict

    @staticmethod
    def get_argument():
        return [
            SSL_Argument("--cdmad_debias_start_iter", at_least(0), 50500,
                         "pseudo-labels are debiased from this iteration on (released: epoch > 100 of "
                         "500-iteration epochs, i.e. iteration 50,500); evaluation is always debiased"),
            SSL_Argument("--cdmad_fill", within(float, Range()), 1.0,
                         "value of every pixel of the bias image, in the network's input space (after "
                         "normalisation; released: ones)"),
            SSL_Argument("--cdmad_p_cutoff", in_unit_interval(), 0.0,
                         "confidence threshold of the debiased pseudo-labels (released --tau, 0: every sample; "
                         "FixMatch's p_cutoff is not used)"),
            SSL_Argument("--cdmad_hard_label", str2bool, False,
                         "hard (argmax) pseudo-labels instead of the released soft ones (softmax of the debiased "
                         "logits); FixMatch's hard_label and T are not used"),
        ]
