"""USB hooks of ACR (docs/method.md, "ACR"), registered under USB's hook names where they
replace one: logit-adjusted pseudo-labels, OR masks, the tau1 estimate; and the hook that
puts the method state on the model's device. SeMi's hooks derive from these.
"""
from __future__ import annotations

import torch
from semilearn.core.hooks import Hook

from ...compat import model_device
from ..state import move_states
from .balanced_head import adjusted_probs, or_mask


class MethodStateHook(Hook):
    """Before training, move the algorithm's state objects (``state_attributes``) to the
    device of its model (they live outside the model, so USB does not move them)."""

    def before_run(self, algorithm):
        move_states(algorithm, algorithm.state_attributes, model_device(algorithm))


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

    def after_train_step(self, algorithm):
        algorithm.tau1_estimator.step(algorithm.out_dict["ulb"]["probs_bal_w"], algorithm.p_cutoff, all_reduce=True)

    def before_train_step(self, algorithm):
        # At each epoch start (by iteration count, so a run resumed mid-epoch stays in step).
        if algorithm.it > 0 and algorithm.it % algorithm.num_iter_per_epoch == 0:
            algorithm.tau1_estimator.end_epoch(
                update_tau1=algorithm.adaptive_tau1 and algorithm.it // algorithm.num_iter_per_epoch >= algorithm.est_epoch)
