"""A run's ``summary.json``: the EMA model on the test set (USB's eval split) with the
configuration, class counts, hardware and versions it was obtained with (read by
``semilearn report``, :mod:`semi_usb.report.runs`)."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket

import numpy as np
import torch

from .config import algorithm_keys
from .naming import method_label, setting_name

#: (name, output key) of the head an algorithm predicts with unless it says otherwise.
STANDARD_HEAD = ("standard", "logits")


def eval_head(alg) -> tuple:
    """The head ``alg`` is evaluated with: its class attribute ``eval_head`` (ACR, SeMi;
    USB's ABC through :mod:`semi_usb.compat`), else the standard one."""
    return getattr(alg, "eval_head", STANDARD_HEAD)


def versions() -> dict:
    """Versions of semi_usb, semilearn, torch, torchvision, numpy and python."""
    import semilearn
    import torchvision

    from . import __version__

    return {"semi_usb": __version__, "semilearn": getattr(semilearn, "__version__", "0.3.2"),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``; ``None`` where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def hardware() -> dict:
    """The training device (GPU name or cpu), CPU architecture and model, logical CPUs, torch
    threads and host."""
    info = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "num_threads": torch.get_num_threads(), "host": socket.gethostname()}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["num_gpus"] = torch.cuda.device_count()
    return info


def _class_counts(dataset, num_classes: int) -> list:
    if dataset is None:
        return []
    return np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=num_classes).tolist()


def method_defaults(args) -> dict:
    """The declared default of each of the method's own keys (its algorithms' ``SSL_Argument``
    lists): ``semilearn report`` names a variant by the keys in which it differs from them."""
    return {k.name: k.default for k in algorithm_keys(args.algorithm, args.imb_algorithm)
            if isinstance(k.default, (str, int, float, bool, type(None)))}


def make_summary(args, alg, wall_time_s: float | None = None, start_it: int = 0) -> dict:
    """Machine-readable result of the EMA model on the test set (the USB eval split).

    ``wall_time_s`` is the run's training time, summed over the processes that trained it
    (:func:`semi_usb.resume.train_time_s`); ``resumed_from_it`` is where the last of them
    started (0 if the run went in one go)."""
    result = getattr(alg, "last_eval", None)
    if result is None:
        alg.evaluate("eval")
        result = alg.last_eval
    head = eval_head(alg)[0]
    per_class = [None if np.isnan(a) else float(a) for a in result.per_class_acc]
    ds = alg.dataset_dict or {}
    # what the method's parts did (ACR, SeMi: docs/method.md, "Mechanism metrics")
    mechanism = {"mechanism": alg.mechanism.summary()} if getattr(alg, "mechanism", None) is not None else {}
    return {
        "algorithm": args.algorithm, "imb_algorithm": args.imb_algorithm,
        "method": method_label(args.algorithm, args.imb_algorithm),
        "dataset": args.dataset, "net": args.net, "seed": args.seed, "num_classes": args.num_classes,
        "num_labels": args.num_labels, "ulb_num_labels": args.ulb_num_labels,
        "lb_imb_ratio": args.lb_imb_ratio, "ulb_imb_ratio": args.ulb_imb_ratio,
        "ulb_distribution": getattr(args, "ulb_distribution", "usb"),
        "setting": setting_name(args), "save_name": args.save_name,
        "num_train_iter": args.num_train_iter, "iterations_done": int(alg.it),
        "batch_size": args.batch_size, "uratio": args.uratio,
        # the protocol that `semilearn report` shows per method (docs/protocols.md)
        "lr_schedule": getattr(args, "lr_schedule", "usb"), "num_strong_views": getattr(args, "num_strong_views", 1),
        "p_cutoff": getattr(args, "p_cutoff", None), "include_lb_to_ulb": args.include_lb_to_ulb,
        "method_defaults": method_defaults(args),
        "model": "ema", "head": head,
        "final": {"it": int(alg.it), "top1": result.top1, "balanced_acc": result.balanced_acc,
                  "per_class_acc": per_class, "confusion_matrix": result.confusion.tolist(),
                  "ece": result.ece,  # 15 bins, top-1 confidence of the predicting head
                  "reliability": None if result.calibration is None else result.calibration.to_json(),
                  "class_names": getattr(ds.get("eval"), "class_names", None)},
        "best": {"it": int(alg.best_it) + 1, "top1": float(alg.best_eval_acc)}, **mechanism,
        "lb_class_counts": _class_counts(ds.get("train_lb"), args.num_classes),
        "ulb_class_counts": _class_counts(ds.get("train_ulb"), args.num_classes),
        "hardware": hardware(), "versions": versions(),
        "wall_time_s": wall_time_s, "resumed_from_it": start_it, "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
