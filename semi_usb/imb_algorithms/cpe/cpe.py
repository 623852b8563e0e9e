"""CPE (Ma et al., AAAI 2024) as a USB imbalanced algorithm: ``IMB_ALGORITHMS['cpe']``.

docs/method.md, "CPE": three experts on one backbone, trained with logit-adjusted supervised
losses of strengths ``cpe_tau1 < cpe_tau2 < cpe_tau3`` (fit to a consistent, a uniform and a
reversed unlabeled distribution), each with FixMatch's unlabeled loss on its own confident
pseudo-labels; class-wise batch normalisation (three batch-norm branches) routes each
pseudo-labelled sample to the head branch, and also to the medium and tail branches when its
pseudo-label is at least ``cpe_cut1`` / ``cpe_cut2``. Evaluation uses expert 2 (the uniform
one) of the EMA model. The step is FixMatch's, so CPE runs on FixMatch only.
"""
from __future__ import annotations

import torch
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.utils import IMB_ALGORITHMS

from ..acr.balanced_head import logit_adjusted_ce
from ..arguments import at_least, in_unit_interval
from ..device import unwrap
from ..fixmatch_base import FixMatchImbAlgorithm, repeat_views
from .experts import NUM_EXPERTS, ExpertsNet
from .hooks import PriorsHook
from .losses import branch_weights, expert_pseudo_labels, routed_unsup_loss
from .priors import PseudoLabelPriors


@IMB_ALGORITHMS.register("cpe")
class CPE(FixMatchImbAlgorithm):
    """CPE on FixMatch. Arguments: see :meth:`get_argument`."""

    state_attributes = {"cpe_priors": "priors"}
    #: The head it predicts with: expert 2, as released (evaluation, summary.json, test features).
    eval_head = ("expert2", "logits_2")
    #: Its step takes a second strong view (``num_strong_views: 2``, docs/protocols.md).
    two_strong_views = True

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.cpe_init(args)
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        self.priors = PseudoLabelPriors(NUM_EXPERTS, self.num_classes, args.cpe_prior_momentum)

    def cpe_init(self, args):
        self.taus = (args.cpe_tau1, args.cpe_tau2, args.cpe_tau3)
        self.cut1, self.cut2 = args.cpe_cut1, args.cpe_cut2

    # ---------------------------------------------------------------- model
    def wrap_network(self, backbone):
        return ExpertsNet(backbone, self.num_classes, self.lb_class_counts())

    def set_hooks(self):
        super().set_hooks()
        self.register_hook(PriorsHook(self.args.cpe_est_epoch, self.num_iter_per_epoch), "PriorsHook")

    # ---------------------------------------------------------------- step
    def branch_logits(self, x_lb, x_ulb_w, x_ulb_s):
        """``(experts, branches, rows, C)`` logits of each view (``x_ulb_s`` may stack several
        strong views); the weak view without gradient when not concatenated."""
        if self.use_cat:
            out = self.model(torch.cat((x_lb, x_ulb_w, x_ulb_s)))["branch_logits"]
            return out.split((x_lb.shape[0], x_ulb_w.shape[0], x_ulb_s.shape[0]), dim=2)
        lb, s = self.model(x_lb)["branch_logits"], self.model(x_ulb_s)["branch_logits"]
        with torch.no_grad():
            w = self.model(x_ulb_w)["branch_logits"]
        return lb, w, s

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, x_ulb_s_1=None):
        """One step; with ``x_ulb_s_1`` (``num_strong_views: 2``) both strong views enter
        every expert's unlabeled loss (the routed mean over both)."""
        log_pi = unwrap(self.model).log_prior
        strong = x_ulb_s if x_ulb_s_1 is None else torch.cat((x_ulb_s, x_ulb_s_1))
        n_views = strong.shape[0] // x_ulb_w.shape[0]
        with self.amp_cm():
            lb, w, s = self.branch_logits(x_lb, x_ulb_w, strong)
            # pseudo-labels and masks in float32 (also under bf16 autocast), one per expert
            pseudo_label, mask = expert_pseudo_labels(w.mean(1).detach().float(), self.p_cutoff)
            sup, unsup = [], []
            for k, tau in enumerate(self.taus):
                sup.append(logit_adjusted_ce(lb[k].mean(0), y_lb, log_pi, tau))
                weights = branch_weights(pseudo_label[k], mask[k], self.cut1, self.cut2)
                label_v, weights_v = repeat_views((pseudo_label[k], weights.t()), n_views)
                unsup.append(routed_unsup_loss(s[k], label_v, weights_v.t()))
            sup, unsup = torch.stack(sup), torch.stack(unsup)
            total_loss = (sup + self.lambda_u * unsup).sum()

        out_dict = self.process_out_dict(loss=total_loss, ulb={"pseudo_label": pseudo_label, "mask": mask})
        # Tensors, not floats: read (one sync) only when logged. sup_loss / unsup_loss /
        # util_ratio are expert 2's (the evaluated one, as released).
        experts = {f"{name}{k + 1}": t[k].detach() for k in range(NUM_EXPERTS)
                   for name, t in (("sup_loss", sup), ("unsup_loss", unsup), ("util_ratio", mask.mean(-1)))}
        log_dict = self.process_log_dict(sup_loss=sup[1].detach(), unsup_loss=unsup[1].detach(),
                                         total_loss=total_loss.detach(), util_ratio=mask[1].mean(), **experts)
        if (self.it + 1) % self.num_log_iter == 0 or self.it + 1 == self.num_train_iter:
            for name in ("u_py", "au_py"):
                for k, row in enumerate(getattr(self.priors, name).tolist()):
                    log_dict.update({f"train/{name}{k + 1}/{c}": v for c, v in enumerate(row)})
        return out_dict, log_dict

    @staticmethod
    def get_argument():
        weight = at_least(0.0, float)
        return [
            SSL_Argument("--cpe_tau1", weight, 0.0, "expert 1's logit adjustment (fits a consistent unlabeled set)"),
            SSL_Argument("--cpe_tau2", weight, 2.0, "expert 2's logit adjustment (uniform; the evaluated expert)"),
            SSL_Argument("--cpe_tau3", weight, 4.0, "expert 3's logit adjustment (fits a reversed unlabeled set)"),
            SSL_Argument("--cpe_cut1", at_least(0), 2,
                         "class-wise BN: pseudo-labels >= this class index also train the medium branch "
                         "(the authors: 2 for CIFAR-10, 35 for CIFAR-100)"),
            SSL_Argument("--cpe_cut2", at_least(0), 4,
                         "class-wise BN: pseudo-labels >= this class index also train the tail branch "
                         "(the authors: 4 for CIFAR-10, 70 for CIFAR-100)"),
            SSL_Argument("--cpe_est_epoch", at_least(0), 0,
                         "logged pseudo-label distributions u_py/au_py move in the epochs after this many "
                         "(released est_epoch; changes no loss)"),
            SSL_Argument("--cpe_prior_momentum", in_unit_interval(), 0.9,
                         "EMA momentum of the logged u_py/au_py (released ema_u; changes no loss)"),
        ]
