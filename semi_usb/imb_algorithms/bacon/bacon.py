"""BaCon (Feng, Xie, Fang & Lin, AAAI 2024) as a USB imbalanced algorithm: ``IMB_ALGORITHMS['bacon']``.

docs/method.md, "BaCon": FixMatch's losses, ABC's auxiliary balanced classifier with its
Bernoulli-masked loss, and a balanced feature-level contrastive loss on a projection of the
backbone's feature, with class centres as positive anchors, reliable negatives (labeled
images of other classes, unlabeled images whose top-k auxiliary predictions exclude the
class) and class-wise temperatures from the estimated class frequencies; the contrastive loss
starts after a fraction of training. Evaluation uses the auxiliary head of the EMA model. Runs
on FixMatch only, one strong view (as released).
"""
from __future__ import annotations

import torch
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.utils import IMB_ALGORITHMS

from ..arguments import Range, at_least, in_unit_interval, one_of, positive, within
from ..fixmatch_base import FixMatchImbAlgorithm
from .feature_bank import FeatureBank
from .hooks import FeatureBankHook
from .losses import abc_loss, balanced_temperatures, contrastive_loss, lb_keep_probability, reliable_negatives
from .network import BaConNet

#: Values of ``bacon_freq_input``: what the frequency estimate's threshold is compared with.
FREQ_INPUTS = ("logits", "probs")


@IMB_ALGORITHMS.register("bacon")
class BaCon(FixMatchImbAlgorithm):
    """BaCon on FixMatch. Arguments: see :meth:`get_argument`."""

    #: Method state saved beside the model (checkpoint key -> attribute; see ..state).
    state_attributes = {"bacon_state": "feature_bank"}
    #: The head it predicts with: ABC's auxiliary head (evaluation, summary.json, test features).
    eval_head = ("aux", "logits_aux")

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.bacon_init(args)
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        self.keep_lb = lb_keep_probability(self.lb_class_counts())
        self.feature_bank = FeatureBank(len(self.dataset_dict["train_lb"]), len(self.dataset_dict["train_ulb"]),
                                        self.num_classes, args.bacon_proj_dim)

    def bacon_init(self, args):
        self.abc_p_cutoff, self.abc_loss_ratio = args.bacon_abc_p_cutoff, args.bacon_abc_loss_ratio
        self.proj_dim, self.freq_threshold, self.freq_input = args.bacon_proj_dim, args.bacon_freq_threshold, \
            args.bacon_freq_input
        self.select_threshold, self.start_ratio = args.bacon_select_threshold, args.bacon_start_ratio
        self.contrast_T, self.contrast_eps = args.bacon_T, args.bacon_T_eps
        self.neg_weight, self.neg_topk, self.contrast_ratio = args.bacon_neg_weight, args.bacon_neg_topk, \
            args.bacon_loss_ratio

    # ---------------------------------------------------------------- model
    def wrap_network(self, backbone):
        return BaConNet(backbone, self.num_classes, self.proj_dim)

    def set_hooks(self):
        super().set_hooks()
        self.register_hook(FeatureBankHook(), "FeatureBankHook")

    def contrast_active(self) -> bool:
        """The released ``it > 150000`` of 300,000 iterations: after ``bacon_start_ratio`` of training."""
        return self.it > int(self.start_ratio * self.num_train_iter)

    # ---------------------------------------------------------------- step
    def forward_views(self, x_lb, x_ulb_w, x_ulb_s) -> tuple:
        """The outputs of the labeled, weak and strong rows (the weak one without gradient
        when the views are forwarded apart, as released)."""
        if self.use_cat:
            out = self.model(torch.cat((x_lb, x_ulb_w, x_ulb_s)))
            sizes = (x_lb.shape[0], x_ulb_w.shape[0], x_ulb_s.shape[0])
            parts = {k: out[k].split(sizes) for k in ("logits", "feat", "logits_aux", "proj")}
            return tuple({k: parts[k][i] for k in parts} for i in range(3))
        lb, s = self.model(x_lb), self.model(x_ulb_s)
        with torch.no_grad():
            w = self.model(x_ulb_w)
        return lb, w, s

    def train_step(self, idx_lb, x_lb, y_lb, idx_ulb, x_ulb_w, x_ulb_s):
        bank = self.feature_bank
        with self.amp_cm():
            lb, w, s = self.forward_views(x_lb, x_ulb_w, x_ulb_s)
            sup_loss = self.ce_loss(lb["logits"], y_lb, reduction="mean")
            probs_w = self.compute_prob(w["logits"].detach())
            mask = self.call_hook("masking", "MaskingHook", logits_x_ulb=probs_w, softmax_x_ulb=False)
            pseudo_label = self.call_hook("gen_ulb_targets", "PseudoLabelingHook", logits=probs_w,
                                          use_hard_label=self.use_hard_label, T=self.T, softmax=False)
            unsup_loss = self.consistency_loss(s["logits"], pseudo_label, "ce", mask=mask)

            aux_lb, aux_w, aux_s = lb["logits_aux"], w["logits_aux"], s["logits_aux"]
            aux_w_d = aux_w.detach().float()
            freq_score = aux_w_d if self.freq_input == "logits" else torch.softmax(aux_w_d, dim=-1)
            freq_conf, freq_pred = freq_score.max(-1)
            bank.update_labels(idx_lb, y_lb, idx_ulb, freq_pred, freq_conf >= self.freq_threshold, all_gather=True)

            progress = (self.it // self.num_iter_per_epoch) / self.epochs  # ABC's epoch / epochs
            abc, mask_ulb = abc_loss(aux_lb, y_lb, aux_w, aux_s, self.keep_lb.to(aux_lb.device), progress,
                                     self.abc_p_cutoff)
            select_lb = torch.softmax(aux_lb.detach().float(), -1).max(-1).values >= self.select_threshold
            select_ulb = torch.softmax(aux_w_d, -1).max(-1).values >= self.select_threshold
            select = torch.cat((select_lb, select_ulb))

            if self.contrast_active():
                top = aux_w_d.topk(self.neg_topk, dim=-1).indices
                y = torch.cat((y_lb, top[:, 0]))
                temps = balanced_temperatures(bank.class_freq, self.contrast_T, self.contrast_eps,
                                              self.it / self.num_train_iter)
                contra = contrastive_loss(torch.cat((lb["proj"], w["proj"])).float(), y, bank.centres,
                                          reliable_negatives(y_lb, top, self.num_classes), select, temps,
                                          self.contrast_T, self.neg_weight)
            else:
                contra = sup_loss.new_zeros(())
            total_loss = (sup_loss + self.lambda_u * unsup_loss + self.abc_loss_ratio * abc
                          + self.contrast_ratio * contra)

        ulb = {"idx_lb": idx_lb, "idx_ulb": idx_ulb, "proj_lb": lb["proj"].detach(), "proj_w": w["proj"].detach(),
               "select_lb": select_lb, "select_ulb": select_ulb}
        out_dict = self.process_out_dict(loss=total_loss, feat={"x_lb": lb["feat"], "x_ulb_w": w["feat"],
                                                                "x_ulb_s": s["feat"]}, ulb=ulb)
        # Tensors, not floats: read (one sync) only when logged.
        log_dict = self.process_log_dict(sup_loss=sup_loss.detach(), unsup_loss=unsup_loss.detach(),
                                         abc_loss=abc.detach(), contra_loss=contra.detach(),
                                         total_loss=total_loss.detach(), util_ratio=mask_ulb.mean(),
                                         select_for_contra=select.float().sum())
        return out_dict, log_dict

    @staticmethod
    def get_argument():
        weight = at_least(0.0, float)
        return [
            SSL_Argument("--bacon_abc_p_cutoff", in_unit_interval(), 0.95,
                         "threshold of the auxiliary head's pseudo-labels (ABC)"),
            SSL_Argument("--bacon_abc_loss_ratio", weight, 1.0, "weight of the auxiliary head's loss (ABC)"),
            SSL_Argument("--bacon_loss_ratio", weight, 1.0, "weight of the contrastive loss"),
            SSL_Argument("--bacon_proj_dim", at_least(1), 16, "width of the projection (the authors' release: 16)"),
            SSL_Argument("--bacon_start_ratio", in_unit_interval(), 0.5,
                         "the contrastive loss from iteration > ratio x num_train_iter (released: 150,000 of "
                         "300,000)"),
            SSL_Argument("--bacon_T", positive(), 0.1, "T: temperature of the negatives and base of the positives'"),
            SSL_Argument("--bacon_T_eps", weight, 0.0005,
                         "eps in tau_c = T - (1 - t / t_max)^2 eps sqrt(f_c / max f)"),
            SSL_Argument("--bacon_neg_weight", weight, 64.0, "W: weight of the mean negative term"),
            SSL_Argument("--bacon_neg_topk", at_least(1), 3,
                         "an unlabeled image is a negative of class c when c is not among its top-k auxiliary "
                         "predictions"),
            SSL_Argument("--bacon_select_threshold", in_unit_interval(), 0.98,
                         "auxiliary confidence that makes a sample enter the contrastive loss and the feature bank"),
            SSL_Argument("--bacon_freq_threshold", within(float, Range()), 0.95,
                         "threshold of the class-frequency estimate (the unlabeled images it counts)"),
            SSL_Argument("--bacon_freq_input", one_of(*FREQ_INPUTS), "logits",
                         "what bacon_freq_threshold is compared with: logits (the authors' release: the raw "
                         "auxiliary logit) or probs (its softmax, as the Meta-Expert port)"),
        ]
