"""The protocol features the plugin adds to semilearn (docs/protocols.md): the learning-rate
schedule (``lr_schedule``) and two strong views per unlabeled image (``num_strong_views``).
Each patch names the semilearn line it extends.
"""
from __future__ import annotations

from typing import Callable

import torch


def _stack_views_for_base_step(batch: dict, input_args) -> dict:
    # Two strong views for a step that takes one (FixMatch.train_step, semilearn/algorithms/
    # fixmatch/fixmatch.py): both views in L_u over 2 x B_u rows, the weak view repeated so that
    # its pseudo-labels and masks are repeated (docs/protocols.md, "Strong views").
    if "x_ulb_s_1" in batch and "x_ulb_s_1" not in input_args and "x_ulb_s" in batch:
        batch = dict(batch)
        second = batch.pop("x_ulb_s_1")
        batch["x_ulb_w"] = torch.cat((batch["x_ulb_w"], batch["x_ulb_w"]))
        batch["x_ulb_s"] = torch.cat((batch["x_ulb_s"], second))
    return batch


def _with_lr_schedule(set_optimizer: Callable) -> Callable:
    """``set_optimizer`` whose scheduler follows ``args.lr_schedule`` (docs/protocols.md,
    "Learning-rate schedule").

    Wraps AlgorithmBase.set_optimizer (semilearn/core/algorithmbase.py:216-232, USB's 7/16
    cosine) and ImbAlgorithmBase.set_optimizer (:591-613, ``scheduler = None`` for CIFAR/STL),
    which every algorithm reaches, DASO and ABC included (ABC, CReST, CoSSL, TRAS call it again
    after building their own model). ``usb`` (or no key: USB's own train.py) keeps semilearn's
    choice; the optimizer's parameter groups are semilearn's in every case.
    """
    def wrapped(self):
        from semilearn.core.utils import get_cosine_schedule_with_warmup

        optimizer, scheduler = set_optimizer(self)
        schedule = getattr(self.args, "lr_schedule", "usb")
        if schedule == "cosine":
            scheduler = get_cosine_schedule_with_warmup(optimizer, self.num_train_iter,
                                                        num_warmup_steps=self.args.num_warmup_iter)
        elif schedule == "constant":
            scheduler = None
        return optimizer, scheduler

    return wrapped


def _with_strong_views(set_dataset: Callable) -> Callable:
    # Wraps AlgorithmBase.set_dataset (semilearn/core/algorithmbase.py:129-153): tell the
    # unlabeled dataset how many strong views to return (args.num_strong_views; USB's own
    # train.py has no such key: one view).
    def wrapped(self, *args, **kwargs):
        dataset_dict = set_dataset(self, *args, **kwargs)
        ulb = dataset_dict.get("train_ulb") if dataset_dict else None
        if ulb is not None:
            ulb.num_strong_views = getattr(self.args, "num_strong_views", 1)
        return dataset_dict

    return wrapped


def _with_second_strong_view(getitem: Callable) -> Callable:
    # Wraps BasicDataset.__getitem__ (semilearn/datasets/cv_datasets/datasetbase.py:72-116),
    # which gives two strong views (x_ulb_s_0, x_ulb_s_1) only to algorithms named comatch or
    # remixmatch: with num_strong_views 2 the unlabeled item gets a second, independent
    # RandAugment view of the same image as x_ulb_s_1 beside x_ulb_s.
    def wrapped(self, idx):
        item = getitem(self, idx)
        if getattr(self, "num_strong_views", 1) == 2 and "x_ulb_s" in item:
            from PIL import Image
            import numpy as np

            img, _ = self.__sample__(idx)
            item["x_ulb_s_1"] = self.strong_transform(Image.fromarray(img) if isinstance(img, np.ndarray) else img)
        return item

    return wrapped


def declare() -> None:
    """``FixMatch.two_strong_views``: FixMatch's own step (semilearn/algorithms/fixmatch/
    fixmatch.py, ``train_step(x_lb, y_lb, x_ulb_w, x_ulb_s)``) takes a second strong view
    through :func:`_stack_views_for_base_step`, which ``process_batch`` applies
    (:mod:`semi_usb.compat.trainer`)."""
    from semilearn.algorithms.fixmatch import FixMatch

    FixMatch.two_strong_views = True


def install() -> None:
    """Wrap semilearn's set_optimizer (AlgorithmBase, ImbAlgorithmBase), AlgorithmBase.set_dataset
    and BasicDataset.__getitem__."""
    from semilearn.core.algorithmbase import AlgorithmBase, ImbAlgorithmBase
    from semilearn.datasets.cv_datasets.datasetbase import BasicDataset

    for cls in (AlgorithmBase, ImbAlgorithmBase):
        cls.set_optimizer = _with_lr_schedule(cls.set_optimizer)
    AlgorithmBase.set_dataset = _with_strong_views(AlgorithmBase.set_dataset)
    BasicDataset.__getitem__ = _with_second_strong_view(BasicDataset.__getitem__)
