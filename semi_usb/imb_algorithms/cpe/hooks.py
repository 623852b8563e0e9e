"""USB hook of CPE: the pseudo-label class distributions it logs (``priors.py``)."""
from __future__ import annotations

from semilearn.core.hooks import Hook

from ..acr.hooks import estimating


class PriorsHook(Hook):
    """After each step of the epochs after ``cpe_est_epoch`` (the released ``epoch >
    est_epoch``), the step's pseudo-labels of every expert (of all ranks under DDP) move
    ``u_py`` and ``au_py``."""

    def after_train_step(self, algorithm):
        if estimating(algorithm):
            ulb = algorithm.out_dict["ulb"]
            algorithm.priors.update(ulb["pseudo_label"], ulb["mask"], all_reduce=True)
