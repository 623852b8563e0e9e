"""What every plugin algorithm on FixMatch shares: :class:`FixMatchImbAlgorithm`.

The plugin's algorithms (ACR, SeMi, CPE, CDMAD, SimPro, BaCon) each compute FixMatch's step
themselves, so each refuses another base algorithm; each may wrap USB's network in its own
(:meth:`FixMatchImbAlgorithm.wrap_network`, the EMA model wrapped the same way), predict
with a head of its own (``eval_head``) and keep state objects beside the model
(``state_attributes``, saved and loaded with the checkpoint and moved to the model's device
by :class:`MethodStateHook`; see :mod:`.state`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from semilearn.core import ImbAlgorithmBase
from semilearn.core.hooks import Hook

from .device import model_device
from .state import load_states, move_states, save_states


def repeat_views(tensors, n_views: int) -> tuple:
    """Per-image tensors (``B_u`` rows; None stays None) tiled to ``n_views x B_u`` rows, in
    the order of stacked strong views ``[view 0; view 1]`` (docs/method.md, "Two strong views")."""
    return tuple(None if t is None else t.repeat(n_views, *([1] * (t.dim() - 1))) for t in tensors)


class MethodStateHook(Hook):
    """Before training, move the algorithm's state objects (``layout``: its
    ``state_attributes``) to the device of its model (they live outside the model, so USB
    does not move them)."""

    def __init__(self, layout: Mapping):
        self.layout = layout

    def before_run(self, algorithm):
        move_states(algorithm, self.layout, model_device(algorithm))


class FixMatchImbAlgorithm(ImbAlgorithmBase):
    """An imbalanced algorithm whose own ``train_step`` replaces FixMatch's."""

    #: Base algorithms whose step this one computes: its own train_step replaces the base's,
    #: so on another base (FlexMatch, ...) the base's own step would silently be dropped.
    base_algorithms = ("fixmatch",)
    #: Method state saved beside the model (checkpoint key -> attribute; see .state).
    state_attributes: dict = {}
    #: The head it predicts with, (name, output key of the model): its evaluation, the
    #: run's summary.json and its test features read it.
    eval_head = ("standard", "logits")

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        if args.algorithm not in self.base_algorithms:  # USB's train.py; semilearn train refuses earlier
            raise ValueError(f"{args.imb_algorithm} runs on {', '.join(self.base_algorithms)} only "
                             f"(got {args.algorithm})")
        self.check_arguments(args)
        super().__init__(args, net_builder, tb_log, logger, **kwargs)

    @staticmethod
    def check_arguments(args) -> None:
        """What one key's range cannot say: a ValueError (one line) for a bad combination."""

    @staticmethod
    def absent_means(key: str, saved: dict):
        """The value of the method's key ``key`` that a saved ``config.yaml`` written before
        the key existed (``saved``, a dict) means, where a later default computes something
        else; None: the key cannot change such a run (resume and compare then take the run as
        the same experiment)."""
        return None

    def set_hooks(self):
        super().set_hooks()
        if self.state_attributes:
            self.register_hook(MethodStateHook(self.state_attributes), "MethodStateHook")

    # ---------------------------------------------------------------- model
    def lb_class_counts(self) -> torch.Tensor:
        """Labeled images per class (a CPU int64 tensor of ``num_classes`` entries)."""
        targets = np.asarray(self.dataset_dict["train_lb"].targets, dtype=np.int64)
        return torch.from_numpy(np.bincount(targets, minlength=self.num_classes))

    def wrap_network(self, backbone):
        """The method's network around USB's ``backbone`` (the backbone itself by default)."""
        return backbone

    def set_model(self):
        return self.wrap_network(super().set_model())

    def set_ema_model(self):
        ema_model = self.wrap_network(self.net_builder(num_classes=self.num_classes))
        ema_model.load_state_dict(self.model.state_dict())
        return ema_model

    def evaluate(self, eval_dest="eval", out_key=None, return_logits=False):
        """Prediction is ``argmax`` of :attr:`eval_head` (of the EMA model)."""
        return super().evaluate(eval_dest=eval_dest, out_key=out_key or self.eval_head[1], return_logits=return_logits)

    # ---------------------------------------------------------------- checkpoint
    def get_save_dict(self):
        return {**super().get_save_dict(), **save_states(self, self.state_attributes)}

    def load_model(self, load_path):
        checkpoint = super().load_model(load_path)
        load_states(self, self.state_attributes, checkpoint)
        return checkpoint
