"""USB hook of CPE: the pseudo-label class distributions it logs (``priors.py``)."""
from __future__ import annotations

from semilearn.core.hooks import Hook

from ..acr.hooks import estimating


class PriorsHook(Hook):
    """After each step of the epochs after ``est_epoch`` (the released ``epoch >
    est_epoch``, epochs of ``epoch_length`` iterations), the step's pseudo-labels of every
    expert (of all ranks under DDP) move ``u_py`` and ``au_py``."""

    def __init__(self, est_epoch: int, epoch_length: int):
        self.est_epoch, self.epoch_length = est_epoch, epoch_length

    def after_train_step(self, algorithm):
        if estimating(algorithm.it, self.epoch_length, self.est_epoch):
            ulb = algorithm.out_dict["ulb"]
            algorithm.priors.update(ulb["pseudo_label"], ulb["mask"], all_reduce=True)
