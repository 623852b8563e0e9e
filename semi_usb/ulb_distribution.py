"""The unlabeled class distribution of a long-tailed split (``ulb_distribution``).

* ``usb`` (default): USB's own, set by ``ulb_imb_ratio`` alone: consistent (``gamma_u =
  gamma_l``), uniform (1) or reversed (negative).
* ``middle`` and ``head-tail``: SimPro's (ICML 2024; ``LeapLabTHU/SimPro``,
  ``SimPro/dataset/cifar.py``, ``make_imb_data`` with ``flag_LT`` 3, "centric", and 4,
  "off-centric"). USB's long-tailed counts for ``M1 = ulb_num_labels`` and
  ``gamma_u = ulb_imb_ratio`` (largest first) are given to the classes in another order:
  ``middle`` puts the largest count on the middle class and smaller ones towards both ends
  (class order ``C-2, C-4, ..., 0, 1, 3, ..., C-1`` for even C), ``head-tail`` the largest on
  the last and first classes and the smallest in the middle (``1, 3, ..., C-1, C-2, ..., 0``).
  Class ``k`` of the unlabeled set gets ``counts[order[k]]``.

The labeled set is USB's in every case. The images are drawn as USB draws them
(``semilearn.datasets.utils.sample_labeled_unlabeled_data``: each class shuffled with the seed,
its first ``N_k`` images labeled, the next ones unlabeled), only the unlabeled counts change.
Nothing here imports torch, or numpy at module level (setting names are made here).
"""
from __future__ import annotations

from typing import Any, List, Sequence

from .errors import ConfigError, brief

#: The values of ``ulb_distribution``.
ULB_DISTRIBUTIONS = ("usb", "middle", "head-tail")


def class_order(distribution: str, num_classes: int) -> List[int]:
    """Which of USB's long-tailed counts (index 0 = largest) each class gets (SimPro's orders)."""
    if distribution == "middle":
        return list(range(0, num_classes, 2))[::-1] + list(range(1, num_classes, 2))
    if distribution == "head-tail":
        return list(range(1, num_classes, 2)) + list(range(0, num_classes, 2))[::-1]
    return list(range(num_classes))


def permuted_counts(counts: Sequence[int], distribution: str) -> List[int]:
    """USB's consistent counts ``counts`` (largest first) in ``distribution``'s class order."""
    return [int(counts[i]) for i in class_order(distribution, len(counts))]


def check(args: Any) -> None:
    """A known ``ulb_distribution``; ``middle`` / ``head-tail`` need ``ulb_num_labels`` and a
    ``ulb_imb_ratio`` above 1 (the largest-to-smallest ratio of the counts they reorder)."""
    dist = getattr(args, "ulb_distribution", "usb")
    if dist not in ULB_DISTRIBUTIONS:
        raise ConfigError(f"ulb_distribution must be one of {', '.join(ULB_DISTRIBUTIONS)}, got {brief(dist)}")
    if dist == "usb":
        return
    if args.ulb_num_labels in (None, "None"):
        raise ConfigError(f"ulb_distribution {dist} needs ulb_num_labels (M1), not the dataset's own unlabeled set")
    if not float(args.ulb_imb_ratio) > 1:
        raise ConfigError(f"ulb_distribution {dist} needs ulb_imb_ratio > 1 (the ratio of the counts it "
                          f"reorders), got {args.ulb_imb_ratio}")


def keep_per_class(ulb_idx, targets, counts: Sequence[int]):
    """The first ``counts[c]`` indices of each class ``c`` in ``ulb_idx`` (numpy arrays),
    classes in order."""
    import numpy as np

    ulb_idx = np.asarray(ulb_idx)
    labels = np.asarray(targets)[ulb_idx]
    return np.concatenate([ulb_idx[labels == c][:n] for c, n in enumerate(counts)]).astype(ulb_idx.dtype)


def suffix(distribution: Any) -> str:
    """What a setting name carries for the distribution: nothing for ``usb``, else ``_<name>``."""
    return "" if distribution in (None, "usb") else f"_{distribution}"
