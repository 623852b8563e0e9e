"""``semilearn eval``: the EMA model of a checkpoint on the test set, summarised like the end
of training (:func:`semi_usb.summary.make_summary`)."""
from __future__ import annotations

import os

from .checkpoint import load_checkpoint
from .runner import build_algorithm, load_weights, place_models, seed_everything
from .summary import make_summary


def evaluate_checkpoint(args, checkpoint: str) -> dict:
    """Evaluate the EMA model of ``checkpoint`` on the test set, like the end of training."""
    from semilearn.core.utils import EMA

    ckpt = load_checkpoint(checkpoint)
    seed_everything(args.seed)
    args.distributed = False
    alg = build_algorithm(args)
    place_models(args, alg)
    load_weights(args, alg, checkpoint)
    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.register()
    alg.ema.load(alg.ema_model)
    alg.evaluate("eval")
    alg.it = int(ckpt["it"])
    summary = make_summary(args, alg)
    summary["checkpoint"] = os.path.abspath(checkpoint)
    return summary
