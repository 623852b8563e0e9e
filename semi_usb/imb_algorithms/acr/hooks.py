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


def estimating(algorithm) -> bool:
    """Whether this step feeds ACR's estimate: ACR's ``epoch > est_epoch``, with the epoch
    counted from 0 by iterations (``it // num_iter_per_epoch``)."""
    return algorithm.it // algorithm.num_iter_per_epoch > algorithm.est_epoch


class MechanismLogHook(Hook):
    """After each logged step, the step's mechanism metrics into the run's running means
    (``algorithm.mechanism``, a :class:`~semi_usb.imb_algorithms.mechanism.MechanismLog`)."""

    def after_train_step(self, algorithm):
        if algorithm.logging_step():
            algorithm.mechanism.add(algorithm.it, algorithm.log_dict)


class Tau1Hook(Hook):
    """Feeds ACR's distribution estimate in the steps of the epochs after ``acr_est_epoch``
    (the global batch under DDP, so that tau1 is the same on every rank; without the labeled
    images of the unlabeled set when ``acr_mask_l``), and at each epoch
    start sets tau1 from the epoch that ended (when ``acr_adaptive_tau1``) and resets the sums."""

    def after_train_step(self, algorithm):
        if estimating(algorithm):
            ulb = algorithm.out_dict["ulb"]
            from_lb = ulb.get("from_lb")
            algorithm.tau1_estimator.step(ulb["probs_bal_w"], algorithm.p_cutoff, all_reduce=True,
                                          keep=None if from_lb is None else ~from_lb)

    def before_train_step(self, algorithm):
        # At each epoch start (by iteration count, so a run resumed mid-epoch stays in step).
        n = algorithm.num_iter_per_epoch
        if algorithm.it > 0 and algorithm.it % n == 0:
            algorithm.tau1_estimator.end_epoch(update_tau1=algorithm.adaptive_tau1, epoch_steps=n)
