"""SeMi (Wang et al., ACM MM 2025) as a USB imbalanced algorithm: ``IMB_ALGORITHMS['semi']``.

docs/method.md, "ACR" and the SeMi sections: ACR's two-branch frame with a fixed tau1
(0: raw logits), plus
1. a Balanced Confidence Decay Memory Bank (``MemoryBankHook``; "SeMi: memory bank"),
2. Pseudo-Label Certainty Enhancement from the bank's prototypes (``PseudoLabelingHook``;
   "SeMi: PLCE"),
3. Online Hard Example Mining and Learning: entropy weights (``MaskingHook``; "SeMi: OHEML"),
4. Embedding Align for samples below the threshold (:meth:`extra_losses`;
   "SeMi: Embedding Align").
Each part has a switch (``semi_use_bank``, ``semi_use_plce``, ``semi_use_oheml``,
``semi_use_ealign``); with all four off SeMi computes ACR with a fixed tau1. Parts 2-4
start after ``semi_warmup_iter`` iterations; the bank fills from the first step. Like ACR,
SeMi runs on FixMatch only. ``semi_feature_pairing`` picks the features paired with each
image (``pairing.py``), ``semi_ulb_std_weight`` weighs the standard branch's ``L_u`` alone;
the logged steps carry the parts' mechanism metrics (``mechanism.py``).
"""
from __future__ import annotations

import torch
from semilearn.algorithms.utils import SSL_Argument, str2bool
from semilearn.core.utils import IMB_ALGORITHMS

from ..acr.acr import ACR
from ..acr.balanced_head import adjusted_probs, or_mask
from ..arguments import at_least, in_unit_interval, one_of, positive
from ..device import unwrap
from ..fixmatch_base import repeat_views
from .hard_examples import EmbeddingCenter, embedding_align_loss
from .hooks import EmbeddingCenterHook, HardExampleMaskingHook, MemoryBankHook, PLCEPseudoLabelingHook
from .mechanism import ealign_effect, oheml_effect, plce_effect
from .memory_bank import ConfidenceDecayMemoryBank
from .pairing import FEATURE_PAIRINGS, released_pairing
from .plce import PLCE_WEIGHTS, PseudoLabelHistogram

# SeMi's frame is ACR with a fixed tau1 = 0 (the released script's default); its script
# comments ACR's mask_l out, so the estimate (unused with a fixed tau1) counts every image.
SEMI_ACR_DEFAULTS = {"--acr_tau1": 0.0, "--acr_adaptive_tau1": False, "--acr_mask_l": False}


@IMB_ALGORITHMS.register("semi")
class SeMi(ACR):
    """SeMi on FixMatch. Arguments: see :meth:`get_argument`."""

    state_attributes = {**ACR.state_attributes,
                        "semi_state": {"bank": "bank", "pl_hist": "pl_hist", "ealign_center": "ealign_center"}}

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.semi_init(args)
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        dim = unwrap(self.model).num_features
        self.bank = ConfidenceDecayMemoryBank(self.num_classes, dim, args.semi_bank_size, args.semi_decay_beta)
        self.pl_hist = PseudoLabelHistogram(self.num_classes, weights=args.semi_plce_weights)
        self.ealign_center = EmbeddingCenter(dim)

    def semi_init(self, args):
        self.use_bank, self.use_ealign = args.semi_use_bank, args.semi_use_ealign
        self.warmup_iter = args.semi_warmup_iter
        self.ealign_T, self.ealign_weight = args.semi_ealign_T, args.semi_ealign_weight
        self.feature_pairing, self.ulb_std_weight = args.semi_feature_pairing, args.semi_ulb_std_weight

    def mechanism_from_it(self) -> int:
        return self.warmup_iter

    def paired_features(self, feats_lb, feats_w, feats_s) -> tuple:
        if self.feature_pairing == "released":
            return released_pairing(feats_lb, feats_w, feats_s)
        return feats_w, feats_s

    def std_ulb_weight(self) -> float:
        """``semi_ulb_std_weight`` after the warm-up (when OHEML's weights would start), 1 before."""
        return self.ulb_std_weight if self.warmed_up() else 1.0

    def set_hooks(self):
        # called by AlgorithmBase.__init__, before FixMatch sets self.p_cutoff: from args
        super().set_hooks()
        args = self.args
        self.register_hook(PLCEPseudoLabelingHook(args.acr_T, args.semi_use_plce and args.semi_use_bank,
                                                  args.semi_warmup_iter, args.semi_plce_alpha, self.num_train_iter,
                                                  args.semi_proto_T, self.num_eval_iter), "PseudoLabelingHook")
        self.register_hook(HardExampleMaskingHook(args.p_cutoff, args.acr_T, args.semi_use_oheml, args.semi_warmup_iter,
                                                  args.semi_oheml_s), "MaskingHook")
        if self.use_bank:
            self.register_hook(MemoryBankHook(args.semi_decay_step), "MemoryBankHook")
        if self.use_ealign:
            self.register_hook(EmbeddingCenterHook(args.semi_ealign_momentum), "EmbeddingCenterHook")

    def warmed_up(self) -> bool:
        """Whether PLCE, OHEML and Embedding Align are on (after ``semi_warmup_iter`` iterations)."""
        return self.it >= self.warmup_iter

    def extra_losses(self, feats_w, feats_s, mask) -> tuple[dict, dict]:
        """Embedding Align on the samples that fail the mask: ``lambda_e * L_e``, and its
        teacher for the centre's update after the step (``EmbeddingCenterHook``)."""
        if not (self.use_ealign and self.warmed_up()):
            return {}, {}
        loss, teacher = embedding_align_loss(feats_w.float(), feats_s.float(), self.ealign_center.center,
                                             mask, self.ealign_T)
        return {"ealign_loss": self.ealign_weight * loss}, {"ealign_teacher": teacher}

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, x_ulb_s_1=None, idx_ulb=None):
        out_dict, log_dict = super().train_step(x_lb, y_lb, x_ulb_w, x_ulb_s, x_ulb_s_1, idx_ulb)
        weight = out_dict["ulb"]["weight"]
        log_dict["train/oheml_weight"] = weight.mean() if weight is not None else torch.ones(())
        if self.logging_step():
            lam = self.call_hook("plce_lambda", "PseudoLabelingHook")
            log_dict["train/plce_lambda"] = lam.mean() if lam is not None else torch.zeros(())
            if self.use_bank:
                fill = self.bank.fill()
                for c in range(self.num_classes):
                    log_dict[f"train/bank_fill/{c}"] = fill[c]
                log_dict["train/bank_fill"] = fill.sum() / (self.num_classes * self.bank.size)
        return out_dict, log_dict

    def mechanism_metrics(self, logits_w, logits_s, probs, mask, weight, n_views, extra, total_loss) -> dict:
        """PLCE (classes changed, samples added to the mask, largest lambda), OHEML (the
        effective scale of ``L_u``, the weights on masked samples), Embedding Align (share of
        the loss, fraction of samples), each while the part acts (docs/method.md, "Mechanism
        metrics")."""
        metrics = {}
        lam = self.call_hook("plce_lambda", "PseudoLabelingHook")
        if lam is not None:
            p = adjusted_probs(logits_w, self.log_pi, self.tau1, self.acr_T)
            mask_raw = or_mask(p, torch.softmax(logits_w / self.acr_T, dim=-1), self.p_cutoff)
            metrics.update(plce_effect(p, probs, mask_raw, mask, lam))
        if weight is not None:
            metrics.update(oheml_effect(logits_s, *repeat_views((probs.argmax(-1), mask, weight), n_views)))
        if "ealign_loss" in extra:
            metrics.update(ealign_effect(extra["ealign_loss"], total_loss, repeat_views((mask,), n_views)[0]))
        return {"train/" + k: v for k, v in metrics.items()}

    @staticmethod
    def get_argument():
        frame = [SSL_Argument(a.name, a.type, SEMI_ACR_DEFAULTS.get(a.name, a.default), a.help)
                 for a in ACR.get_argument()]
        return frame + [
            SSL_Argument("--semi_use_bank", str2bool, True, "Balanced Confidence Decay Memory Bank (needed by PLCE)"),
            SSL_Argument("--semi_use_plce", str2bool, True, "Pseudo-Label Certainty Enhancement"),
            SSL_Argument("--semi_use_oheml", str2bool, True, "Online Hard Example Mining and Learning weights"),
            SSL_Argument("--semi_use_ealign", str2bool, True, "Embedding Align for samples below the threshold"),
            SSL_Argument("--semi_bank_size", at_least(1), 128, "K: slots per class"),
            SSL_Argument("--semi_decay_step", at_least(1), 100,
                         "iterations between confidence decays (200 for CIFAR-100)"),
            SSL_Argument("--semi_decay_beta", in_unit_interval(), 0.99, "confidence decay factor of stale entries"),
            SSL_Argument("--semi_proto_T", positive(), 0.1, "T_p: temperature of the prototype label q"),
            SSL_Argument("--semi_plce_alpha", at_least(0.0, float), 0.4, "alpha in lambda = alpha * progress * pi_hat"),
            SSL_Argument("--semi_plce_weights", one_of(*PLCE_WEIGHTS), "freq",
                         "pi_hat: freq (confident pseudo-label frequency, as released) or inv_freq (its inverse, "
                         "renormalised; 0 for a class without any)"),
            SSL_Argument("--semi_oheml_s", in_unit_interval(), 0.75, "s in w = s * H + (1 - s)"),
            SSL_Argument("--semi_ealign_T", positive(), 0.09, "T_e: student temperature (teacher T_e / 5)"),
            SSL_Argument("--semi_ealign_weight", at_least(0.0, float), 0.15,
                         "lambda_e: weight of the Embedding Align loss"),
            SSL_Argument("--semi_ealign_momentum", in_unit_interval(), 0.9, "momentum of the Embedding Align centre"),
            SSL_Argument("--semi_feature_pairing", one_of(*FEATURE_PAIRINGS), "aligned",
                         "features paired with each image for the bank, q and Embedding Align: aligned (its own "
                         "views) or released (the released script's slices of its interleaved batch)"),
            SSL_Argument("--semi_ulb_std_weight", at_least(0.0, float), 1.0,
                         "weight of the standard branch's L_u alone (beside ulb_loss_ratio), after the warm-up"),
            SSL_Argument("--semi_warmup_iter", at_least(0), 3000,
                         "iterations before PLCE, OHEML and Embedding Align start (the authors' 6 epochs of 500)"),
        ]
