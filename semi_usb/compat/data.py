"""semilearn's data handling, fixed where it writes into site-packages, downloads, or gives
a class fewer images than asked; the plugin's datasets and unlabeled distributions. Each
patch names the semilearn line it works around.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import types
from typing import Callable

from ..errors import DataError


def _with_throwaway_split_dump(dataset_utils: types.ModuleType) -> Callable:
    # Wraps semilearn/datasets/utils.py's sample_labeled_unlabeled_data, which np.saves the
    # split's indices under `base_dir` (line 63: os.makedirs(<site-packages>/data/<dataset>/
    # labeled_idx)): site-packages or any fixed folder may be read-only, and a command that
    # fails later would leave them behind. The split is drawn again from the seed on every
    # run (split_ssl_data passes load_exist=False), so the files go to a temporary folder,
    # removed when the split is made. (STL-10's loader passes load_exist=True; with no file
    # left to find it draws its split from the seed, as on a first run.)
    sample = dataset_utils.sample_labeled_unlabeled_data

    def wrapped(*args, **kwargs):
        with tempfile.TemporaryDirectory(prefix="semi_usb_split_") as tmp:
            saved, dataset_utils.base_dir = dataset_utils.base_dir, tmp
            try:
                return sample(*args, **kwargs)
            finally:
                dataset_utils.base_dir = saved

    return wrapped


def _with_ulb_distribution(sample: Callable) -> Callable:
    # Wraps semilearn/datasets/utils.py's sample_labeled_unlabeled_data, whose unlabeled
    # counts (lines 84-94) are make_imbalance_data's, consistent or reversed only. For
    # ulb_distribution middle / head-tail (semi_usb.ulb_distribution) it draws the split as
    # USB does with every remaining image unlabeled (ulb_num_labels None, ratio 1: the same
    # per-class shuffles), then keeps the first counts[c] unlabeled images of each class c:
    # the images USB's own slice would take with those counts.
    from ..datasets import unlabeled_per_class
    from ..ulb_distribution import keep_per_class

    def wrapped(args, data, target, num_classes, lb_num_labels, ulb_num_labels=None,
                lb_imbalance_ratio=1.0, ulb_imbalance_ratio=1.0, load_exist=True):
        dist = getattr(args, "ulb_distribution", "usb")
        if dist == "usb" or ulb_num_labels in (None, "None"):
            return sample(args, data, target, num_classes, lb_num_labels, ulb_num_labels,
                          lb_imbalance_ratio, ulb_imbalance_ratio, load_exist)
        lb_idx, rest = sample(args, data, target, num_classes, lb_num_labels, None,
                              lb_imbalance_ratio, 1.0, load_exist)
        counts = unlabeled_per_class(int(ulb_num_labels), num_classes, ulb_imbalance_ratio, dist)
        return lb_idx, keep_per_class(rest, target, counts)

    return wrapped


def _offline_cifar(base: type) -> type:
    """torchvision's CIFAR class, reading files semilearn expects without the md5 check.

    Works around semilearn/datasets/cv_datasets/cifar.py:27 (and :106), ``dset =
    getattr(torchvision.datasets, name.upper())`` with ``download=True``: torchvision
    verifies the md5 of each pickle and downloads when it does not match, so CIFAR imported
    from images (same layout, other bytes) would trigger a download.
    """
    from ..datasets import missing_message

    class OfflineCIFAR(base):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        def download(self) -> None:
            if self._check_integrity():
                return
            if os.environ.get("SEMI_USB_OFFLINE", "") not in ("", "0"):
                raise DataError(missing_message(base.__name__.lower(), self.root))
            try:
                super().download()
            except Exception:
                raise DataError(missing_message(base.__name__.lower(), self.root)) from None

    OfflineCIFAR.__name__ = base.__name__
    return OfflineCIFAR


def _with_plugin_datasets(usb_get_dataset: Callable) -> Callable:
    """semilearn's ``get_dataset`` extended with the plugin datasets and offline checks.

    Works around semilearn/core/utils/build.py:60-105, whose if/elif over dataset names
    knows no image folders (``else: return None``) and, offline, lets torchvision try to
    download; semilearn/core/algorithmbase.py:30 imports it, :135 calls it.
    """
    from ..datasets import PLUGIN_DATASETS, check_usb_data_present

    def get_dataset(args, algorithm, dataset, num_labels, num_classes, data_dir="./data", include_lb_to_ulb=True):
        if dataset in PLUGIN_DATASETS:
            lb, ulb, ev = PLUGIN_DATASETS[dataset](args, algorithm, data_dir)
            return {"train_lb": lb, "train_ulb": ulb, "eval": ev, "test": None}
        check_usb_data_present(dataset, data_dir)
        return usb_get_dataset(args, algorithm, dataset, num_labels, num_classes, data_dir, include_lb_to_ulb)

    get_dataset.semi_usb_wrapped = usb_get_dataset  # type: ignore[attr-defined]
    return get_dataset


def _checked_split(usb_split: Callable) -> Callable:
    """semilearn's ``split_ssl_data`` that first refuses a split asking a class for more
    images than it has.

    Works around semilearn/datasets/utils.py:102-106 (sample_labeled_unlabeled_data), whose
    ``idx[:lb_samples_per_class[c]]`` slices silently return fewer images than asked for;
    semilearn/datasets/cv_datasets/cifar.py:13 imports split_ssl_data, :57 calls it.
    """
    import numpy as np

    from ..datasets import check_split

    def split_ssl_data(args, data, targets, num_classes, lb_num_labels, ulb_num_labels=None,
                       lb_imbalance_ratio=1.0, ulb_imbalance_ratio=1.0, *rest, **kwargs):
        if num_classes != len(np.unique(np.asarray(targets))):
            raise DataError(f"{args.dataset} has {len(np.unique(np.asarray(targets)))} classes but num_classes={num_classes}")
        check_split(np.bincount(np.asarray(targets), minlength=num_classes), lb_num_labels, ulb_num_labels,
                    lb_imbalance_ratio, ulb_imbalance_ratio, args.dataset, getattr(args, "ulb_distribution", "usb"))
        return usb_split(args, data, targets, num_classes, lb_num_labels, ulb_num_labels,
                         lb_imbalance_ratio, ulb_imbalance_ratio, *rest, **kwargs)

    return split_ssl_data


def _patch_cifar(cifar_module) -> None:
    """Point semilearn's CIFAR loader (semilearn/datasets/cv_datasets/cifar.py) at the
    offline classes and the checked split."""
    import torchvision

    cifar_module.split_ssl_data = _checked_split(cifar_module.split_ssl_data)
    cifar_module.torchvision = types.SimpleNamespace(datasets=types.SimpleNamespace(
        CIFAR10=_offline_cifar(torchvision.datasets.CIFAR10),
        CIFAR100=_offline_cifar(torchvision.datasets.CIFAR100)))


def install() -> None:
    """Patch semilearn/datasets/utils.py's split, its STL-10 and CIFAR loaders and
    AlgorithmBase's get_dataset."""
    from semilearn.core import algorithmbase
    import semilearn.datasets.utils as dataset_utils
    from semilearn.datasets.cv_datasets import cifar, stl10

    dataset_utils.sample_labeled_unlabeled_data = _with_ulb_distribution(_with_throwaway_split_dump(dataset_utils))
    # semilearn/datasets/cv_datasets/stl10.py imported the function by name
    stl10.sample_labeled_unlabeled_data = dataset_utils.sample_labeled_unlabeled_data
    # semilearn/core/algorithmbase.py:30 imports get_dataset from core/utils/build.py, whose
    # if/elif knows no image folders and, offline, lets torchvision try to download.
    # The wrapper adds the plugin datasets (digits, imagefolder) and one-line errors.
    algorithmbase.get_dataset = _with_plugin_datasets(algorithmbase.get_dataset)
    # semilearn/datasets/cv_datasets/cifar.py:27: getattr(torchvision.datasets, name.upper())
    # verifies the md5 of each pickle, so CIFAR imported from images triggers a download;
    # cifar.py:57: split_ssl_data silently gives a class fewer images than asked for.
    _patch_cifar(cifar)
