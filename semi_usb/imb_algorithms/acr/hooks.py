"""USB hooks of ACR (docs/method.md, "ACR"), registered under USB's hook names where they
replace one: logit-adjusted pseudo-labels, OR masks, the tau1 estimate, and the mechanism log.
SeMi's hooks derive from these.

Each hook is built with its settings (as USB's DASO hooks are); from the algorithm it reads
only the iteration ``it``, the step's output (``out_dict``, ``log_dict``, or what the step
passes to the hook) and the state objects (``tau1_estimator``, ``mechanism``).
"""
from __future__ import annotations

import torch
from semilearn.core.hooks import Hook

from .balanced_head import adjusted_probs, or_mask


class AdjustedPseudoLabelingHook(Hook):
    """``p = softmax((z_w - tau1 log pi) / T)`` (ACR's standard branch), ``log pi`` and
    ``tau1`` as the step passes them. Returns the distribution; the hard label is its argmax."""

    def __init__(self, T: float):
        self.T = T

    @torch.no_grad()
    def gen_ulb_targets(self, algorithm, logits, *, log_pi, tau1, **kwargs):
        return adjusted_probs(logits, log_pi, tau1, self.T)


class OrMaskingHook(Hook):
    """``mask = [max p >= tau] OR [max softmax(z_w / T) >= tau]``; sample weights 1."""

    def __init__(self, p_cutoff: float, T: float):
        self.p_cutoff, self.T = p_cutoff, T

    @torch.no_grad()
    def masking(self, algorithm, probs_x_ulb, logits_x_ulb, **kwargs):
        return or_mask(probs_x_ulb, torch.softmax(logits_x_ulb / self.T, dim=-1), self.p_cutoff)

    def sample_weights(self, algorithm, probs_x_ulb, **kwargs):
        return None


def estimating(it: int, epoch_length: int, est_epoch: int) -> bool:
    """Whether step ``it`` feeds the estimate: ACR's ``epoch > est_epoch``, with the epoch
    counted from 0 by iterations (``it // epoch_length``), so that a run resumed mid-epoch
    stays in step."""
    return it // epoch_length > est_epoch


def logging_step(it: int, num_log_iter: int, num_train_iter: int) -> bool:
    """Whether USB's LoggingHook writes the log of step ``it`` (``num_log_iter``, the last step)."""
    return (it + 1) % num_log_iter == 0 or it + 1 == num_train_iter


class MechanismLogHook(Hook):
    """After each logged step, the step's mechanism metrics into the run's running means
    (``algorithm.mechanism``, a :class:`~semi_usb.imb_algorithms.mechanism.MechanismLog`)."""

    def __init__(self, num_log_iter: int, num_train_iter: int):
        self.num_log_iter, self.num_train_iter = num_log_iter, num_train_iter

    def after_train_step(self, algorithm):
        if logging_step(algorithm.it, self.num_log_iter, self.num_train_iter):
            algorithm.mechanism.add(algorithm.it, algorithm.log_dict)


class Tau1Hook(Hook):
    """Feeds ACR's distribution estimate in the steps of the epochs after ``est_epoch``
    (the global batch under DDP, so that tau1 is the same on every rank; without the labeled
    images of the unlabeled set when ``acr_mask_l``: the step's ``from_lb``), and at each
    epoch start sets tau1 from the epoch that ended (when ``adaptive``) and resets the sums.
    Epochs are counted by iterations (:func:`estimating`)."""

    def __init__(self, p_cutoff: float, est_epoch: int, adaptive: bool, epoch_length: int):
        self.p_cutoff, self.est_epoch, self.adaptive, self.epoch_length = p_cutoff, est_epoch, adaptive, epoch_length

    def after_train_step(self, algorithm):
        if estimating(algorithm.it, self.epoch_length, self.est_epoch):
            ulb = algorithm.out_dict["ulb"]
            from_lb = ulb.get("from_lb")
            algorithm.tau1_estimator.step(ulb["probs_bal_w"], self.p_cutoff, all_reduce=True,
                                          keep=None if from_lb is None else ~from_lb)

    def before_train_step(self, algorithm):
        n = self.epoch_length
        if algorithm.it > 0 and algorithm.it % n == 0:
            algorithm.tau1_estimator.end_epoch(update_tau1=self.adaptive, epoch_steps=n)
