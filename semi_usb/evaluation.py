"""``semilearn eval``: the EMA model of a checkpoint on the test set, summarised like the end
of training (:func:`semi_usb.summary.make_summary`)."""
from __future__ import annotations

import os

from .checkpoint import check_finite_model, load_checkpoint
from .datasets import write_data_caches
from .run_log import run_logger, usb_prints
from .runner import build_algorithm, load_weights, place_models, seed_everything
from .summary import make_summary


def evaluate_checkpoint(args, checkpoint: str) -> dict:
    """Evaluate the EMA model of ``checkpoint`` on the test set, like the end of training.

    Nothing goes to stdout (the command prints the JSON there): USB's lines go to stderr
    with ``args.verbose``, else nowhere."""
    # one-line error if unreadable or diverged; load_weights reads it, once (mapped here)
    check_finite_model(load_checkpoint(checkpoint, mmap=True), checkpoint, "nothing to evaluate")
    logger = run_logger(f"{args.save_name}.eval", None, "INFO", args.verbose)
    with usb_prints(logger, args.verbose, stdout=False):
        return _evaluate(args, checkpoint, logger)


def _evaluate(args, checkpoint: str, logger) -> dict:
    from semilearn.core.utils import EMA

    seed_everything(args.seed)
    args.distributed = False
    alg = build_algorithm(args, None, logger)
    place_models(args, alg)
    load_weights(args, alg, checkpoint)
    write_data_caches(alg)  # the checkpoint fits: past the input checks
    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.register()
    alg.ema.load(alg.ema_model)
    alg.evaluate("eval")
    alg.it = int(alg.it)  # the checkpoint's, set by load_model
    summary = make_summary(args, alg)
    summary["checkpoint"] = os.path.abspath(checkpoint)
    return summary
