"""The EMA model's test-set features of a finished run, ``test_features.npz`` in the run
folder, for ``semilearn report``'s feature-embedding figure (:mod:`semi_usb.report.embedding`).

The backbone's ``feat`` (the input of the classifier heads) of at most :data:`MAX_POINTS`
test images, drawn without replacement with seed 0, stored as float16 with the true labels
and the predictions of the head the method is evaluated with (:func:`semi_usb.summary.eval_head`).
"""
from __future__ import annotations


import numpy as np
import torch

from .checkpoint import atomic_write
from .imb_algorithms.device import model_device
from .layout import features_path
from .summary import eval_head

MAX_POINTS = 2000


@torch.no_grad()
def collect_features(model, loader, device, out_key: str = "logits") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, predictions) of ``model`` over ``loader`` (USB eval batches)."""
    feats, labels, preds = [], [], []
    for data in loader:
        x = data["x_lb"]
        x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
        out = model(x)
        feats.append(out["feat"].float().cpu())
        preds.append(out[out_key].argmax(-1).cpu())
        labels.append(data["y_lb"].cpu())
    return torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(preds).numpy()


def subsample(n: int, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` items, drawn without replacement."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def save_test_features(alg, path: str, max_points: int = MAX_POINTS) -> str:
    """Write the EMA model's test features of ``alg`` into ``path/test_features.npz`` atomically."""
    out_key = eval_head(alg)[1]
    alg.model.eval()
    alg.ema.apply_shadow()
    try:
        feat, y, pred = collect_features(alg.model, alg.loader_dict["eval"], model_device(alg), out_key)
    finally:
        alg.ema.restore()
        alg.model.train()
    keep = subsample(len(y), max_points)
    target = features_path(path)
    atomic_write(target, lambda f: np.savez(f, feat=feat[keep].astype(np.float16), labels=y[keep].astype(np.int64),
                                            preds=pred[keep].astype(np.int64), index=keep.astype(np.int64)))
    return target
