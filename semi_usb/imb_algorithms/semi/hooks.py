"""USB hooks of SeMi, registered under USB's hook names where they replace one.

PLCE pseudo-labels (docs/method.md, "SeMi: PLCE"), OHEML weights beside ACR's OR mask
("SeMi: OHEML"), the memory bank's push and decay ("SeMi: memory bank"), the Embedding
Align centre ("SeMi: Embedding Align"). They read the step's tensors from
``algorithm.out_dict['ulb']`` after the step; nothing travels on the algorithm object.
"""
from __future__ import annotations

import torch
from semilearn.core.hooks import Hook

from ..acr.balanced_head import repeat_views
from ..acr.hooks import AdjustedPseudoLabelingHook, OrMaskingHook
from .hard_examples import hard_example_weights
from .memory_bank import gather_candidates
from .plce import enhance, mix_weights, semantic_label


def warmed_up(algorithm) -> bool:
    return algorithm.it >= algorithm.warmup_iter


def plce_lambda(algorithm) -> torch.Tensor | None:
    """This step's ``lambda = alpha * progress * pi_hat``, or None while PLCE is off (or
    warming up)."""
    if not (algorithm.use_plce and warmed_up(algorithm)):
        return None
    return mix_weights(algorithm.pl_hist.pi_hat, algorithm.plce_alpha, algorithm.it / algorithm.num_train_iter)


class PLCEPseudoLabelingHook(AdjustedPseudoLabelingHook):
    """Pseudo-Label Certainty Enhancement, in the step that uses the labels.

    ``p~ = (1 - lambda) p + lambda q`` with ``q`` from the strong view's feature and the
    bank's prototypes, ``lambda`` from :func:`plce_lambda`. ``pi_hat`` comes from the
    histogram of confident ``argmax p~`` (of all ranks under DDP), refreshed every
    ``num_eval_iter`` iterations.
    """

    @torch.no_grad()
    def gen_ulb_targets(self, algorithm, logits, feats_x_ulb_s=None, **kwargs):
        p = super().gen_ulb_targets(algorithm, logits)
        lam = plce_lambda(algorithm)
        if lam is None:
            return p
        protos, has_proto = algorithm.bank.prototypes()
        q = semantic_label(feats_x_ulb_s.float(), protos, has_proto, algorithm.proto_T)
        return enhance(p, q.to(p.dtype), lam.to(p.dtype))

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        algorithm.pl_hist.update(ulb["pseudo_label"], ulb["mask"])
        if self.every_n_iters(algorithm, algorithm.num_eval_iter):
            algorithm.pl_hist.refresh(all_reduce=True)


class HardExampleMaskingHook(OrMaskingHook):
    """OHEML: the OR mask as in ACR, and per-sample weights ``s * H(p~) + (1 - s)`` after
    the warm-up (1 before)."""

    def sample_weights(self, algorithm, probs_x_ulb, **kwargs):
        if not (algorithm.use_oheml and warmed_up(algorithm)):
            return None
        return hard_example_weights(probs_x_ulb, algorithm.oheml_s)


class MemoryBankHook(Hook):
    """Balanced Confidence Decay Memory Bank: push the step's confident strong-view features
    (every step, warm-up included; gathered from all ranks under DDP; with two strong views
    both, i.e. two candidates per confident image), decay stale entries every
    ``semi_decay_step`` iterations."""

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        n_views = ulb["feat_s"].shape[0] // ulb["mask"].shape[0]
        labels, conf, mask = repeat_views((ulb["pseudo_label"], ulb["probs"].max(-1).values, ulb["mask"]), n_views)
        feats, labels, conf, mask = gather_candidates(ulb["feat_s"], labels, conf, mask)
        algorithm.bank.push(feats, labels, conf, mask)
        if self.every_n_iters(algorithm, algorithm.decay_step):
            algorithm.bank.decay()


class EmbeddingCenterHook(Hook):
    """Embedding Align: ``center <- m center + (1 - m) mean(teacher)`` after each step that
    computed the loss (its teacher is in ``out_dict['ulb']['ealign_teacher']``)."""

    def after_train_step(self, algorithm):
        teacher = algorithm.out_dict["ulb"].get("ealign_teacher")
        if teacher is not None:
            algorithm.ealign_center.update(teacher, algorithm.ealign_momentum)
