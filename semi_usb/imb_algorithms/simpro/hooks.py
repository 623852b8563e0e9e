"""USB hook of SimPro (docs/method.md, "SimPro"): the epoch sums after every step and the
E-step at every epoch start. It reads the step's tensors from ``algorithm.out_dict['ulb']``."""
from __future__ import annotations

from semilearn.core.hooks import Hook


class MarginalEstimateHook(Hook):
    """After each step, add its labeled counts and confident pseudo-label mass to the
    epoch's sums (of all ranks under DDP); at each epoch start after the first (every
    ``epoch_iters`` iterations, counted from the iteration so that a run resumed mid-epoch
    stays in step), the E-step: new marginals and adjustments, sums reset."""

    def __init__(self, epoch_iters: int):
        self.epoch_iters = int(epoch_iters)

    def before_train_step(self, algorithm):
        if algorithm.it > 0 and algorithm.it % self.epoch_iters == 0:
            algorithm.simpro_estimate.end_epoch()

    def after_train_step(self, algorithm):
        ulb = algorithm.out_dict["ulb"]
        algorithm.simpro_estimate.accumulate(ulb["y_lb"], ulb["probs"], ulb["mask"], all_reduce=True)
