"""USB hook of BaCon (docs/method.md, "BaCon"): after each step, the reliable projections of
the step into the feature bank and the class centres recomputed (they are the next step's
positive anchors). It reads the step's tensors from ``algorithm.out_dict['ulb']``."""
from __future__ import annotations

from semilearn.core.hooks import Hook


class FeatureBankHook(Hook):
    """Store the step's reliable labeled and weak-view projections, recompute the centres
    (the rows of all ranks under DDP)."""

    def after_train_step(self, algorithm):
        u = algorithm.out_dict["ulb"]
        algorithm.feature_bank.update_features(u["idx_lb"], u["proj_lb"], u["select_lb"], u["idx_ulb"], u["proj_w"],
                                               u["select_ulb"], all_gather=True)
