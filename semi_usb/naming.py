"""The one place that formats setting names and method names.

Two method spellings, both USB's:

* the **label** ``fixmatch+semi`` (base ``+`` imbalanced algorithm; a base alone is its own
  name), used in ``summary.json``'s ``method``, in reports and in :mod:`semi_usb.published`;
* the **folder** form ``fixmatch_semi``, USB's ``save_name`` / config-folder naming
  (``config/classic_cv_imb/fixmatch_semi/...``).

A **setting** is USB's ``save_name`` without the method and the seed:
``<dataset>_lb<N1>_<gamma_l>_ulb<M1>_<gamma_u>``, e.g. ``cifar10_lb1500_100_ulb3000_-100``,
followed by ``_<ulb_distribution>`` when that is not USB's (``..._ulb4000_100_middle``).
Nothing here imports torch or semilearn.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

from .errors import ConfigError
from .ulb_distribution import ULB_DISTRIBUTIONS, suffix as ulb_suffix

SETTING_RE = re.compile(r"^(?P<dataset>.+)_lb(?P<nl>\d+)_(?P<gl>-?[\d.]+)_ulb(?P<nu>\d+|None)_(?P<gu>-?[\d.]+)"
                        r"(?:_(?P<dist>" + "|".join(re.escape(d) for d in ULB_DISTRIBUTIONS if d != "usb") + r"))?$")


def method_label(algorithm: str, imb_algorithm: Optional[str] = None) -> str:
    """``fixmatch`` + ``semi`` -> ``fixmatch+semi``; a base algorithm alone keeps its name."""
    return f"{algorithm}+{imb_algorithm}" if imb_algorithm else str(algorithm)


def method_folder(algorithm: str, imb_algorithm: Optional[str] = None) -> str:
    """USB's folder / save_name form: ``fixmatch_semi``, ``fixmatch``."""
    return f"{algorithm}_{imb_algorithm}" if imb_algorithm else str(algorithm)


def rename_method(save_name: str, old_folder: str, new_folder: str) -> Optional[str]:
    """A YAML's ``save_name`` for another method: ``fixmatch_daso_cifar10_..._0`` with
    ``fixmatch_daso`` -> ``fixmatch_semi`` gives ``fixmatch_semi_cifar10_..._0``; None when the
    name does not start with ``old_folder`` followed by ``_`` (or equal it)."""
    if save_name == old_folder:
        return new_folder
    if save_name.startswith(old_folder + "_"):
        return new_folder + save_name[len(old_folder):]
    return None


def normalise_method(name: str) -> str:
    """A method label as reports compare it: lowercase, no spaces."""
    return "".join(str(name).lower().split())


def format_setting(dataset: str, num_labels, lb_imb_ratio, ulb_num_labels, ulb_imb_ratio) -> str:
    """The one formatter of a setting name: ``<dataset>_lb<N1>_<gamma_l>_ulb<M1>_<gamma_u>``,
    each value written as given (``str``); :func:`setting_name` and :func:`make_setting`
    choose the values, ``config/generate.py`` names its files with it."""
    return f"{dataset}_lb{num_labels}_{lb_imb_ratio}_ulb{ulb_num_labels}_{ulb_imb_ratio}"


def setting_name(args: Any) -> str:
    """USB's file naming without the seed, from the configuration, values as configured:
    ``cifar10_lb1500_100_ulb3000_-100`` (for an image folder, the folder's name stands for
    the dataset); an unlabeled distribution other than USB's is appended
    (``..._ulb4000_100_middle``, :mod:`semi_usb.ulb_distribution`)."""
    name = os.path.basename(os.path.normpath(args.data_dir)) if args.dataset == "imagefolder" else args.dataset
    return (format_setting(name, args.num_labels, args.lb_imb_ratio, args.ulb_num_labels, args.ulb_imb_ratio)
            + ulb_suffix(getattr(args, "ulb_distribution", "usb")))


def make_setting(dataset: str, num_labels: int, lb_imb_ratio: float,
                 ulb_num_labels: Optional[int], ulb_imb_ratio: float) -> str:
    """Return USB's setting name, e.g. ``cifar10_lb1500_100_ulb3000_-100``.

    Integral ratios are written without a decimal point, as USB does; ``ulb_num_labels`` None
    (the dataset's own unlabeled set, STL-10) is written ``ulbNone``.
    """

    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    return format_setting(dataset, int(num_labels), fmt(lb_imb_ratio),
                          None if ulb_num_labels is None else int(ulb_num_labels), fmt(ulb_imb_ratio))


def parse_setting(setting: str) -> dict:
    """``cifar10_lb1500_100_ulb3000_-100`` -> the USB keys it stands for (as strings); a
    ``_middle`` / ``_head-tail`` suffix adds ``ulb_distribution``."""
    m = SETTING_RE.match(setting)
    if not m:
        raise ConfigError(f"setting {setting!r} is not <dataset>_lb<N1>_<gamma_l>_ulb<M1|None>_<gamma_u>"
                          f"[_{'|_'.join(d for d in ULB_DISTRIBUTIONS if d != 'usb')}]")
    keys = {"dataset": m["dataset"], "num_labels": m["nl"], "lb_imb_ratio": m["gl"],
            "ulb_num_labels": m["nu"], "ulb_imb_ratio": m["gu"]}
    return {**keys, "ulb_distribution": m["dist"]} if m["dist"] else keys


def summary_method(summary: Mapping[str, Any]) -> Optional[str]:
    """The normalised method label of a ``summary.json`` (its ``method``, else rebuilt from
    ``algorithm`` / ``imb_algorithm``); None when it names neither."""
    method = summary.get("method")
    if not method:
        algo = summary.get("algorithm")
        if not algo:
            return None
        method = method_label(str(algo), summary.get("imb_algorithm"))
    return normalise_method(method)


def summary_setting(summary: Mapping[str, Any]) -> Optional[str]:
    """The canonical setting name rebuilt from a summary's fields (:func:`make_setting`);
    None when a field is missing or not a number."""
    keys = ("dataset", "num_labels", "lb_imb_ratio", "ulb_num_labels", "ulb_imb_ratio")
    if all(summary.get(k) is not None for k in keys):
        try:
            return make_setting(str(summary["dataset"]), int(summary["num_labels"]),
                                float(summary["lb_imb_ratio"]),
                                int(summary["ulb_num_labels"]),
                                float(summary["ulb_imb_ratio"])) + ulb_suffix(summary.get("ulb_distribution"))
        except (TypeError, ValueError):
            return None
    return None
