"""USB hooks of SeMi, registered under USB's hook names where they replace one.

PLCE pseudo-labels (docs/method.md, "SeMi: PLCE"), OHEML weights beside ACR's OR mask
("SeMi: OHEML"), the memory bank's push and decay ("SeMi: memory bank"), the Embedding
Align centre ("SeMi: Embedding Align"). Each is built with its settings; from the algorithm
it reads only ``it``, the step's tensors (``algorithm.out_dict['ulb']`` after the step, or
what the step passes) and the state objects (``bank``, ``pl_hist``, ``ealign_center``).
"""
from __future__ import annotations

import torch
from semilearn.core.hooks import Hook

from ..acr.hooks import AdjustedPseudoLabelingHook, OrMaskingHook
from ..fixmatch_base import repeat_views
from .hard_examples import hard_example_weights
from .memory_bank import gather_candidates
from .plce import enhance, mix_weights, semantic_label


class PLCEPseudoLabelingHook(AdjustedPseudoLabelingHook):
    """Pseudo-Label Certainty Enhancement, in the step that uses the labels.

    ``p~ = (1 - lambda) p + lambda q`` with ``q`` from the strong view's feature and the
    bank's prototypes (temperature ``proto_T``), ``lambda`` from :meth:`plce_lambda`.
    ``pi_hat`` comes from the histogram of confident ``argmax p~`` (of all ranks under DDP),
    refreshed every ``refresh_every`` iterations (USB's ``num_eval_iter``).
    """

    def __init__(self, T: float, use_plce: bool, warmup_iter: int, alpha: float, num_train_iter: int,
                 proto_T: float, refresh_every: int):
        super().__init__(T)
        self.use_plce, self.warmup_iter, self.alpha = use_plce, warmup_iter, alpha
        self.num_train_iter, self.proto_T, self.refresh_every = num_train_iter, proto_T, refresh_every

    def plce_lambda(self, algorithm) -> torch.Tensor | None:
        """This step's ``lambda = alpha * progress * pi_hat``, or None while PLCE is off (or
        warming up)."""
        if not (self.use_plce and algorithm.it >= self.warmup_iter):
            return None
        return mix_weights(algorithm.pl_hist.pi_hat, self.alpha, algorithm.it / self.num_train_iter)

    @torch.no_grad()
    def gen_ulb_targets(self, algorithm, logits, feats_x_ulb_s=None, *, log_pi, tau1, **kwargs):
        p = super().gen_ulb_targets(algorithm, logits, log_pi=log_pi, tau1=tau1)
        lam = self.plce_lambda(algorithm)
        if lam is None:
            return p
        protos, has_proto = algorithm.bank.prototypes()
        q = semantic_label(feats_x_ulb_s.float(), protos, has_proto, self.proto_T)
        return enhance(p, q.to(p.dtype), lam.to(p.dtype))

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        algorithm.pl_hist.update(ulb["pseudo_label"], ulb["mask"])
        if self.every_n_iters(algorithm, self.refresh_every):
            algorithm.pl_hist.refresh(all_reduce=True)


class HardExampleMaskingHook(OrMaskingHook):
    """OHEML: the OR mask as in ACR, and per-sample weights ``s * H(p~) + (1 - s)`` after
    the warm-up (1 before; always 1 with ``use_oheml`` off)."""

    def __init__(self, p_cutoff: float, T: float, use_oheml: bool, warmup_iter: int, s: float):
        super().__init__(p_cutoff, T)
        self.use_oheml, self.warmup_iter, self.s = use_oheml, warmup_iter, s

    def sample_weights(self, algorithm, probs_x_ulb, **kwargs):
        if not (self.use_oheml and algorithm.it >= self.warmup_iter):
            return None
        return hard_example_weights(probs_x_ulb, self.s)


class MemoryBankHook(Hook):
    """Balanced Confidence Decay Memory Bank: push the step's confident strong-view features
    (every step, warm-up included; gathered from all ranks under DDP; with two strong views
    both, i.e. two candidates per confident image), decay stale entries every
    ``decay_step`` iterations."""

    def __init__(self, decay_step: int):
        self.decay_step = decay_step

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        n_views = ulb["feat_s"].shape[0] // ulb["mask"].shape[0]
        labels, conf, mask = repeat_views((ulb["pseudo_label"], ulb["probs"].max(-1).values, ulb["mask"]), n_views)
        feats, labels, conf, mask = gather_candidates(ulb["feat_s"], labels, conf, mask)
        algorithm.bank.push(feats, labels, conf, mask)
        if self.every_n_iters(algorithm, self.decay_step):
            algorithm.bank.decay()


class EmbeddingCenterHook(Hook):
    """Embedding Align: ``center <- m center + (1 - m) mean(teacher)`` after each step that
    computed the loss (its teacher is in ``out_dict['ulb']['ealign_teacher']``)."""

    def __init__(self, momentum: float):
        self.momentum = momentum

    def after_train_step(self, algorithm):
        teacher = algorithm.out_dict["ulb"].get("ealign_teacher")
        if teacher is not None:
            algorithm.ealign_center.update(teacher, self.momentum)
