"""ACR (Wei & Gan, CVPR 2023) as a USB imbalanced algorithm: ``IMB_ALGORITHMS['acr']``.

docs/method.md, "ACR": a balanced second head on the backbone's features with a
logit-adjusted supervised loss, two pseudo-label branches with OR masks, and tau1
adapted from the estimated unlabeled class distribution. Evaluation uses the balanced
head of the EMA model. The step is FixMatch's, with the pseudo-labels and masks served by
the hooks registered under USB's names (``PseudoLabelingHook``, ``MaskingHook``), so ACR
runs on FixMatch only (:attr:`ACR.base_algorithms`; the configuration refuses other bases).
"""
from __future__ import annotations

import torch
from semilearn.algorithms.utils import SSL_Argument, str2bool
from semilearn.core.utils import IMB_ALGORITHMS

from ..arguments import at_least, in_unit_interval, one_of, positive
from ..device import unwrap
from ..fixmatch_base import FixMatchImbAlgorithm, repeat_views
from ..mechanism import MechanismLog
from .balanced_head import BalancedHeadNet, adjusted_probs, logit_adjusted_ce, masked_ce, or_mask
from .distribution_estimate import CLASS_VECTORS, Tau1Estimator
from .hooks import AdjustedPseudoLabelingHook, MechanismLogHook, OrMaskingHook, Tau1Hook, logging_step


@IMB_ALGORITHMS.register("acr")
class ACR(FixMatchImbAlgorithm):
    """ACR on FixMatch. Arguments: see :meth:`get_argument`."""

    #: Method state saved beside the model (checkpoint key -> attribute; see ..state).
    state_attributes = {"acr_tau1_state": "tau1_estimator"}
    #: Weight of the standard branch's unlabeled loss beside ``ulb_loss_ratio`` (1 in ACR;
    #: SeMi's ``semi_ulb_std_weight``), see :meth:`std_ulb_weight`.
    ulb_std_weight = 1.0
    #: The head it predicts with, (name, output key of the model): its evaluation, the
    #: run's summary.json and its test features read it.
    eval_head = ("balanced", "logits_bal")
    #: Its step takes a second strong view (``num_strong_views: 2``, docs/protocols.md).
    two_strong_views = True

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.acr_init(args)
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        pi = torch.exp(unwrap(self.model).log_prior)
        self.tau1_estimator = Tau1Estimator(pi, args.acr_tau1, args.acr_tau_min, args.acr_tau_max,
                                            args.acr_u_momentum, args.acr_class_vector)
        # labeled images at the head of the unlabeled set (USB's split_ssl_data puts them first)
        # that the estimate leaves out, as ACR's released mask_l; 0: none left out
        self.lb_in_ulb = len(self.dataset_dict["train_lb"]) if args.include_lb_to_ulb and args.acr_mask_l else 0
        self.mechanism = MechanismLog(self.mechanism_from_it())

    def acr_init(self, args):
        self.tau2, self.tau12, self.acr_T = args.acr_tau2, args.acr_tau12, args.acr_T

    def mechanism_from_it(self) -> int:
        """First iteration whose mechanism metrics enter ``summary.json``'s means (ACR: 0)."""
        return 0

    # ---------------------------------------------------------------- model
    def wrap_network(self, backbone):
        return BalancedHeadNet(backbone, self.num_classes, self.lb_class_counts())

    def set_hooks(self):
        # called by AlgorithmBase.__init__, before FixMatch sets self.p_cutoff: from args
        super().set_hooks()
        args = self.args
        self.register_hook(AdjustedPseudoLabelingHook(args.acr_T), "PseudoLabelingHook")
        self.register_hook(OrMaskingHook(args.p_cutoff, args.acr_T), "MaskingHook")
        self.register_hook(Tau1Hook(args.p_cutoff, args.acr_est_epoch, args.acr_adaptive_tau1, self.num_iter_per_epoch),
                           "Tau1Hook")
        self.register_hook(MechanismLogHook(args.num_log_iter, self.num_train_iter), "MechanismLogHook")

    @property
    def log_pi(self) -> torch.Tensor:
        return unwrap(self.model).log_prior

    @property
    def tau1(self) -> torch.Tensor:
        return self.tau1_estimator.tau1

    # ---------------------------------------------------------------- step
    def forward_views(self, x_lb, x_ulb_w, x_ulb_s) -> dict:
        """Logits of both heads and features for each view: {'lb'|'ulb_w'|'ulb_s': out};
        ``x_ulb_s`` may hold several strong views stacked (``V x B_u`` rows)."""
        n_lb, n_ulb = x_lb.shape[0], x_ulb_w.shape[0]
        if self.use_cat:
            out = self.model(torch.cat((x_lb, x_ulb_w, x_ulb_s)))
            sizes = (n_lb, n_ulb, x_ulb_s.shape[0])
            parts = {k: out[k].split(sizes) for k in ("logits", "logits_bal", "feat")}
            return {v: {k: parts[k][i] for k in parts} for i, v in enumerate(("lb", "ulb_w", "ulb_s"))}
        views = {"lb": self.model(x_lb), "ulb_s": self.model(x_ulb_s)}
        with torch.no_grad():
            views["ulb_w"] = self.model(x_ulb_w)
        return views

    def paired_features(self, feats_lb, feats_w, feats_s) -> tuple:
        """The weak and strong features that a method pairs with each unlabeled image (its
        own views here; SeMi may take the released script's slices, ``semi_feature_pairing``)."""
        return feats_w, feats_s

    def std_ulb_weight(self) -> float:
        """This step's weight of the standard branch's ``L_u`` beside ``ulb_loss_ratio``."""
        return self.ulb_std_weight

    def logging_step(self) -> bool:
        """Whether USB's LoggingHook writes this step's log (``num_log_iter``, the last step)."""
        return logging_step(self.it, self.num_log_iter, self.num_train_iter)

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, x_ulb_s_1=None, idx_ulb=None):
        """One step; with ``x_ulb_s_1`` (``num_strong_views: 2``) both strong views enter
        ``L_u`` and ``L_u^b`` (docs/method.md, "Two strong views"); ``idx_ulb`` (the images'
        indices in the unlabeled set) marks the labeled images among them for tau1's estimate."""
        log_pi = self.log_pi
        strong = x_ulb_s if x_ulb_s_1 is None else torch.cat((x_ulb_s, x_ulb_s_1))
        n_views = strong.shape[0] // x_ulb_w.shape[0]
        with self.amp_cm():
            v = self.forward_views(x_lb, x_ulb_w, strong)
            lb, w, s = v["lb"], v["ulb_w"], v["ulb_s"]
            # pseudo-labels, masks and weights in float32 (also under bf16 autocast)
            logits_w, logits_bal_w = w["logits"].detach().float(), w["logits_bal"].detach().float()

            sup_loss = self.ce_loss(lb["logits"], y_lb, reduction="mean")
            bal_sup_loss = logit_adjusted_ce(lb["logits_bal"], y_lb, log_pi, self.tau2)

            feat_w, feat_s = self.paired_features(lb["feat"], w["feat"], s["feat"])
            # standard branch: (enhanced) logit-adjusted pseudo-labels, OR mask, sample weights
            # q (PLCE) from the first strong view only
            probs = self.call_hook("gen_ulb_targets", "PseudoLabelingHook", logits=logits_w, log_pi=log_pi,
                                   tau1=self.tau1, feats_x_ulb_s=feat_s[:x_ulb_w.shape[0]].detach())
            mask = self.call_hook("masking", "MaskingHook", probs_x_ulb=probs, logits_x_ulb=logits_w)
            weight = self.call_hook("sample_weights", "MaskingHook", probs_x_ulb=probs)
            pseudo_label = probs.argmax(-1)
            unsup_loss = masked_ce(s["logits"], *repeat_views((pseudo_label, mask, weight), n_views))

            # balanced branch: pseudo-labels adjusted by tau12, OR mask with the balanced head
            probs_h2 = adjusted_probs(logits_w, log_pi, self.tau12, self.acr_T)
            probs_bal_w = torch.softmax(logits_bal_w / self.acr_T, dim=-1)
            mask_bal = or_mask(probs_bal_w, probs_h2, self.p_cutoff)
            bal_unsup_loss = masked_ce(s["logits_bal"], *repeat_views((probs_h2.argmax(-1), mask_bal), n_views))

            feats_w, mask_v = repeat_views((feat_w, mask), n_views)
            extra, extra_ulb = self.extra_losses(feats_w=feats_w, feats_s=feat_s, mask=mask_v)
            total_loss = (sup_loss + self.lambda_u * self.std_ulb_weight() * unsup_loss + bal_sup_loss
                          + self.lambda_u * bal_unsup_loss + sum(extra.values()))

        # feat_w, feat_s: the features paired with each image (paired_features); feat_s: every
        # strong view (V x B_u rows); the other entries: one row per image. from_lb: the
        # labeled images that the estimate leaves out (None: none).
        from_lb = None if idx_ulb is None or not self.lb_in_ulb else idx_ulb < self.lb_in_ulb
        ulb = {"feat_w": feat_w.detach(), "feat_s": feat_s.detach(), "probs": probs, "mask": mask,
               "weight": weight, "pseudo_label": pseudo_label, "probs_bal_w": probs_bal_w, "from_lb": from_lb,
               **extra_ulb}
        out_dict = self.process_out_dict(loss=total_loss, feat={k: x["feat"] for k, x in
                                                                (("x_lb", lb), ("x_ulb_w", w), ("x_ulb_s", s))}, ulb=ulb)
        # Tensors, not floats: read (one sync) only when logged. See LoggingHook.
        log_dict = self.process_log_dict(sup_loss=sup_loss.detach(), unsup_loss=unsup_loss.detach(),
                                         bal_sup_loss=bal_sup_loss.detach(), bal_unsup_loss=bal_unsup_loss.detach(),
                                         total_loss=total_loss.detach(), util_ratio=mask.mean(),
                                         bal_util_ratio=mask_bal.mean(), tau1=self.tau1,
                                         **{k: val.detach() for k, val in extra.items()})
        if self.logging_step():
            log_dict.update(self.mechanism_metrics(
                logits_w=logits_w, logits_s=s["logits"].detach(), probs=probs, mask=mask, weight=weight,
                n_views=n_views, extra={k: val.detach() for k, val in extra.items()}, total_loss=total_loss.detach()))
        return out_dict, log_dict

    def mechanism_metrics(self, **step) -> dict:
        """Log entries (device tensors) that show what the method's parts did in this logged
        step (docs/method.md, "Mechanism metrics"); ACR's tau1 is logged every step."""
        return {}

    def extra_losses(self, feats_w, feats_s, mask) -> tuple[dict, dict]:
        """``(losses, ulb)``: named loss terms added to the total, and tensors that the
        hooks read after the step from ``out_dict['ulb']`` (none in ACR; SeMi adds
        Embedding Align and its teacher)."""
        return {}, {}

    # ---------------------------------------------------------------- checkpoint
    def get_save_dict(self):
        return {**super().get_save_dict(), "mechanism_log": self.mechanism.state_dict()}

    def load_model(self, load_path):
        checkpoint = super().load_model(load_path)
        if "mechanism_log" in checkpoint:  # checkpoints of earlier versions have none
            self.mechanism.load_state_dict(checkpoint["mechanism_log"])
        return checkpoint

    @staticmethod
    def check_arguments(args) -> None:
        """What one key's range cannot say: a ValueError (one line) for a bad combination."""
        if args.acr_tau_min > args.acr_tau_max:
            raise ValueError(f"acr_tau_min {args.acr_tau_min} is above acr_tau_max {args.acr_tau_max}")

    @staticmethod
    def absent_means(key: str, saved: dict):
        """acr_mask_l came with a default (True, as ACR's released code) that leaves the labeled
        images of the unlabeled set out of the estimate; runs started before it counted them.
        They are there only with include_lb_to_ulb."""
        if key == "acr_mask_l" and saved.get("include_lb_to_ulb"):
            return False
        return None

    @staticmethod
    def get_argument():
        weight = at_least(0.0, float)
        return [
            SSL_Argument("--acr_tau1", weight, 2.0, "tau1 before the estimate starts (or fixed when not adaptive)"),
            SSL_Argument("--acr_adaptive_tau1", str2bool, True, "adapt tau1 from the unlabeled distribution estimate"),
            SSL_Argument("--acr_tau_min", weight, 0.0, "tau1 range: minimum"),
            SSL_Argument("--acr_tau_max", weight, 2.0, "tau1 range: maximum"),
            SSL_Argument("--acr_tau2", weight, 2.0, "logit adjustment of the balanced head's supervised loss"),
            SSL_Argument("--acr_tau12", weight, 2.0, "logit adjustment of the balanced branch's pseudo-labels"),
            SSL_Argument("--acr_est_epoch", at_least(0), 5,
                         "the estimate runs in the epochs after this many (ACR's epoch > est_epoch, from 0)"),
            SSL_Argument("--acr_u_momentum", in_unit_interval(), 0.99,
                         "EMA momentum of the unlabeled distribution estimate (ACR's --ema-u in its commands)"),
            SSL_Argument("--acr_class_vector", one_of(*CLASS_VECTORS), "acr_code",
                         "per-step class vector: acr_code (ACR's h[pred] += mask: the mask of the last sample "
                         "of each predicted class), presence, counts"),
            SSL_Argument("--acr_T", positive(), 1.0,
                         "softmax temperature of both branches (USB's T is for soft labels)"),
            SSL_Argument("--acr_mask_l", str2bool, True,
                         "leave the labeled images in the unlabeled set (include_lb_to_ulb) out of tau1's estimate, "
                         "as ACR's released mask_l"),
        ]
