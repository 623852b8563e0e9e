"""Declared ranges of USB's numeric configuration keys.

The plugin's algorithms declare the range of each key in its ``SSL_Argument`` type
(:mod:`semi_usb.imb_algorithms.arguments`); USB's keys cannot carry one, so theirs are here:
every numeric key of USB's argument list (:data:`semi_usb.config.BASE_KEYS`) and of the
``SSL_Argument`` lists of USB's algorithms has an entry in :data:`RANGES`: a
:class:`~semi_usb.imb_algorithms.arguments.Range`, or ``None`` where no range applies (a
rank) or where :func:`semi_usb.config.finalize` checks it together with other keys
(the imbalance ratios). ``tests/test_input_errors.py`` fails when a key has neither an entry
nor a declared range. :func:`validate_ranges` is called by
:func:`semi_usb.config.finalize`, before anything is written; a value out of range is a
one-line :class:`~semi_usb.errors.ConfigError`. Also here: the run name must
stay inside ``save_dir`` (:func:`check_save_name`) and ``--gpu`` must name a device that
is present (:func:`check_gpu`, called by the trainer). Nothing here imports torch at
module level.
"""
from __future__ import annotations

import os
from typing import Any

from .errors import ConfigError, brief
from .imb_algorithms.arguments import Range, is_finite

PROB = Range(0, 1)              # probabilities, thresholds, momenta, mixing weights
UNIT_OPEN = Range(0, 1, hi_open=True)
SIZE = Range(1)                 # sizes, counts of iterations or images that must be >= 1
COUNT = Range(0)                # counts that may be 0 (0: off)
POSITIVE = Range(0, lo_open=True)  # rates, temperatures, scales
WEIGHT = Range(0)               # loss weights, decays: >= 0
SEED = Range(0, 2 ** 32 - 1)    # numpy's legacy seeding takes 0 .. 2**32 - 1
NO_RANGE = None

RANGES: dict = {
    # USB's arguments (semilearn train.py) and the plugin's runner keys
    "epoch": SIZE, "num_train_iter": SIZE, "num_warmup_iter": COUNT, "num_eval_iter": SIZE, "num_log_iter": SIZE,
    "num_labels": SIZE, "batch_size": SIZE, "uratio": SIZE, "num_strong_views": Range(1, 2), "eval_batch_size": SIZE, "ema_m": UNIT_OPEN,
    "ulb_loss_ratio": WEIGHT, "lr": POSITIVE, "momentum": PROB, "weight_decay": WEIGHT, "layer_decay": Range(0, 1, lo_open=True),
    "clip_grad": WEIGHT, "num_classes": Range(2), "num_workers": COUNT,
    "lb_imb_ratio": NO_RANGE, "ulb_imb_ratio": NO_RANGE,  # checked by config.finalize (|gamma| >= 1, sign = order)
    "ulb_num_labels": SIZE, "img_size": SIZE, "crop_ratio": Range(0, 1, lo_open=True), "max_length": SIZE,
    "max_length_seconds": POSITIVE, "sample_rate": SIZE, "world_size": SIZE, "rank": COUNT,
    "seed": SEED, "gpu": COUNT, "semi_usb_num_threads": COUNT, "semi_usb_nonfinite_patience": COUNT,
    # base algorithms' SSL_Argument lists
    "p_cutoff": PROB, "T": POSITIVE, "ema_p": UNIT_OPEN, "C": POSITIVE, "gamma": POSITIVE, "rho_min": PROB,
    "num_wu_iter": COUNT, "num_wu_eval_iter": SIZE, "K": SIZE, "in_loss_ratio": WEIGHT, "kl_loss_ratio": WEIGHT,
    "mixup_alpha": POSITIVE, "contrast_loss_ratio": WEIGHT, "contrast_p_cutoff": PROB, "da_len": SIZE,
    "proj_size": SIZE, "queue_batch": SIZE, "smoothing_alpha": PROB, "rot_loss_ratio": WEIGHT, "n_sigma": SIZE,
    "unsup_warm_up": PROB, "ent_loss_ratio": WEIGHT, "vat_eps": POSITIVE,
    # USB's imbalanced algorithms
    "abc_loss_ratio": WEIGHT, "abc_p_cutoff": PROB, "adsh_tau_1": PROB,
    "cossl_max_lam": PROB, "cossl_tfe_u_ratio": SIZE, "cossl_tfe_warm_bs": SIZE, "cossl_tfe_warm_ema_decay": UNIT_OPEN,
    "cossl_tfe_warm_epoch": SIZE, "cossl_tfe_warm_lr": POSITIVE, "cossl_tfe_warm_wd": WEIGHT, "cossl_warm_epoch": COUNT,
    "crest_alpha": POSITIVE, "crest_dist_align_t": POSITIVE, "crest_num_gens": SIZE,
    "darp_alpha": POSITIVE, "darp_iter_T": SIZE, "darp_num_refine_iter": SIZE, "darp_warmup_epochs": COUNT,
    "daso_T_dist": POSITIVE, "daso_T_proto": POSITIVE, "daso_assign_loss_ratio": WEIGHT, "daso_interp_alpha": PROB,
    "daso_num_pl_dist_iter": SIZE, "daso_num_pretrain_iter": COUNT, "daso_queue_len": SIZE,
    "debiaspl_ema_p": UNIT_OPEN, "debiaspl_tau": WEIGHT,
    "tras_A": POSITIVE, "tras_B": POSITIVE, "tras_tro": POSITIVE, "tras_warmup_epochs": COUNT,
}


def validate_ranges(args: Any) -> None:
    """Refuse a numeric value outside its declared range (one line naming key, range, value)."""
    for key, rng in RANGES.items():
        value = getattr(args, key, None)
        if rng is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not rng.contains(value):
            finite = "" if is_finite(value) else "finite (float32: at most 3.4e38) and "
            raise ConfigError(f"{key} must be {finite}{rng.describe()}, got {brief(value)}")


def check_save_name(args: Any) -> None:
    """``save_name`` is a plain folder name inside ``save_dir``: not empty, not ``.`` or
    ``..``, no path separator (so no absolute path and no ``./``), no control character
    (a newline in a folder name breaks every listing of runs)."""
    name = str(args.save_name)
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (not name.strip() or name in (".", "..") or any(c in seps for c in name)
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ConfigError(f"save_name {brief(name)} must name a folder inside save_dir {brief(str(args.save_dir))}: "
                          "a plain name (no absolute path, no '.', '..', path separator or control character)")


def check_gpu(args: Any) -> None:
    """``--gpu N`` must be a device that is present; DDP (``world_size`` > 1) needs GPUs."""
    import torch

    n = torch.cuda.device_count()
    if getattr(args, "world_size", 1) > 1 and n == 0:
        # USB picks each node's main process as rank % GPUs (semilearn/core/hooks/checkpoint.py
        # line 19, logging.py lines 17 and 39): without a GPU that divides by zero, and a rule
        # of one process per node would let every rank write the run folder
        raise ConfigError(f"world_size {args.world_size} needs GPUs: this machine has none, and USB's DDP picks its "
                          "main process by GPU; train on the CPU with world_size 1")
    if getattr(args, "gpu", None) is None:
        return
    if args.gpu >= n:
        have = "no GPU" if n == 0 else f"{n} GPU{'s' if n > 1 else ''} (0..{n - 1})"
        raise ConfigError(f"gpu {args.gpu} is not present: this machine has {have}; leave gpu unset "
                          f"({'the CPU' if n == 0 else 'all GPUs'}) or pick one that exists")
