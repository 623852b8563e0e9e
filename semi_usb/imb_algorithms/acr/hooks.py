"""USB hooks of ACR and SeMi, registered under USB's hook names where they replace one.

ACR (SEMI_METHOD.md, "ACR"): logit-adjusted pseudo-labels, OR masks, the tau1 estimate.
SeMi (SEMI_METHOD.md, "SeMi" §1-§4): PLCE pseudo-labels, OHEML weights beside the mask,
the memory bank's push and decay, the Embedding Align centre.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from semilearn.core.hooks import Hook

from .balanced_head import adjusted_probs, or_mask
from .compat import model_device
from .hard_examples import hard_example_weights, update_center
from .memory_bank import gather_candidates
from .plce import enhance, mix_weights, semantic_label


# ------------------------------------------------------------------------------------ ACR
class AdjustedPseudoLabelingHook(Hook):
    """``p = softmax((z_w - tau1 log pi) / T)`` (ACR's standard branch). Returns the
    distribution; the hard label is its argmax."""

    @torch.no_grad()
    def gen_ulb_targets(self, algorithm, logits, **kwargs):
        return adjusted_probs(logits, algorithm.log_pi, algorithm.tau1, algorithm.acr_T)


class OrMaskingHook(Hook):
    """``mask = [max p >= tau] OR [max softmax(z_w / T) >= tau]``; sample weights 1."""

    @torch.no_grad()
    def masking(self, algorithm, probs_x_ulb, logits_x_ulb, **kwargs):
        return or_mask(probs_x_ulb, torch.softmax(logits_x_ulb / algorithm.acr_T, dim=-1), algorithm.p_cutoff)

    def sample_weights(self, algorithm, probs_x_ulb, **kwargs):
        return None


class Tau1Hook(Hook):
    """Feeds ACR's distribution estimate each step (the global batch's histogram under DDP,
    so that tau1 is the same on every rank); sets tau1 at each epoch start once
    ``acr_est_epoch`` epochs have passed (when ``acr_adaptive_tau1``)."""

    def before_run(self, algorithm):
        algorithm.tau1_estimator.to(model_device(algorithm))

    def after_train_step(self, algorithm):
        algorithm.tau1_estimator.step(algorithm.out_dict["ulb"]["probs_bal_w"], algorithm.p_cutoff, all_reduce=True)

    def before_train_step(self, algorithm):
        # At each epoch start (by iteration count, so a run resumed mid-epoch stays in step).
        if algorithm.it > 0 and algorithm.it % algorithm.num_iter_per_epoch == 0:
            algorithm.tau1_estimator.end_epoch(
                update_tau1=algorithm.adaptive_tau1 and algorithm.it // algorithm.num_iter_per_epoch >= algorithm.est_epoch)


# ----------------------------------------------------------------------------------- SeMi
def warmed_up(algorithm) -> bool:
    return algorithm.it >= algorithm.warmup_iter


class PLCEPseudoLabelingHook(AdjustedPseudoLabelingHook):
    """Pseudo-Label Certainty Enhancement (§2), in the step that uses the labels.

    ``p~ = (1 - lambda) p + lambda q`` with ``q`` from the strong view's feature and the
    bank's prototypes, ``lambda = alpha * progress * pi_hat``. ``pi_hat`` comes from the
    histogram of confident ``argmax p~``, refreshed every ``num_eval_iter`` iterations.
    """

    @torch.no_grad()
    def gen_ulb_targets(self, algorithm, logits, feats_x_ulb_s=None, **kwargs):
        p = super().gen_ulb_targets(algorithm, logits)
        if not (algorithm.use_plce and warmed_up(algorithm)):
            return p
        protos, has_proto = algorithm.bank.prototypes()
        q = semantic_label(feats_x_ulb_s.float(), protos, has_proto, algorithm.proto_T)
        lam = mix_weights(algorithm.pl_hist.pi_hat, algorithm.plce_alpha, algorithm.it / algorithm.num_train_iter)
        algorithm.plce_lambda = lam
        return enhance(p, q.to(p.dtype), lam.to(p.dtype))

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        algorithm.pl_hist.update(ulb["pseudo_label"], ulb["mask"])
        if self.every_n_iters(algorithm, algorithm.num_eval_iter):
            hist = algorithm.pl_hist
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                counts = hist.counts.clone()  # every rank refreshes from all ranks' counts
                dist.all_reduce(counts)
                hist.pi_hat = counts.float() / counts.sum().clamp(min=1).float()
            else:
                hist.refresh()

    def before_run(self, algorithm):
        algorithm.pl_hist.to(model_device(algorithm))


class HardExampleMaskingHook(OrMaskingHook):
    """OHEML (§3): the OR mask as in ACR, and per-sample weights ``s * H(p~) + (1 - s)``
    after the warm-up (1 before)."""

    def sample_weights(self, algorithm, probs_x_ulb, **kwargs):
        if not (algorithm.use_oheml and warmed_up(algorithm)):
            return None
        return hard_example_weights(probs_x_ulb, algorithm.oheml_s)


class MemoryBankHook(Hook):
    """Balanced Confidence Decay Memory Bank (§1): push the step's confident strong-view
    features (every step, warm-up included; gathered from all ranks under DDP), decay
    stale entries every ``semi_decay_step`` iterations."""

    def before_run(self, algorithm):
        algorithm.bank.to(model_device(algorithm))

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        conf = ulb["probs"].max(-1).values
        feats, labels, conf, mask = gather_candidates(ulb["feat_s"], ulb["pseudo_label"], conf, ulb["mask"])
        algorithm.bank.push(feats, labels, conf, mask)
        if self.every_n_iters(algorithm, algorithm.decay_step):
            algorithm.bank.decay()


class EmbeddingCenterHook(Hook):
    """Embedding Align (§4): ``center <- m center + (1 - m) mean(teacher)`` after each step."""

    def before_run(self, algorithm):
        algorithm.ealign_center = algorithm.ealign_center.to(model_device(algorithm))

    def after_train_step(self, algorithm):
        teacher = getattr(algorithm, "ealign_teacher", None)
        if teacher is not None:
            algorithm.ealign_center = update_center(algorithm.ealign_center, teacher, algorithm.ealign_momentum,
                                                     all_reduce=True)
            algorithm.ealign_teacher = None
