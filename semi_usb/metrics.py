"""Evaluation of a classifier on a loader: USB's metrics plus per-class accuracy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class EvalResult:
    """Predictions of one evaluation pass and the metrics derived from them."""

    y_true: np.ndarray
    y_pred: np.ndarray
    loss: float
    num_classes: int
    logits: np.ndarray | None = None

    @property
    def confusion(self) -> np.ndarray:
        """Counts, rows = true class, columns = predicted class."""
        idx = self.y_true * self.num_classes + self.y_pred
        return np.bincount(idx, minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def confusion_normalized(self) -> np.ndarray:
        cm = self.confusion.astype(float)
        return cm / np.maximum(cm.sum(1, keepdims=True), 1)

    @property
    def per_class_acc(self) -> np.ndarray:
        """Recall of each class (NaN for a class absent from the set)."""
        cm = self.confusion
        support = cm.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)

    @property
    def top1(self) -> float:
        return float((self.y_true == self.y_pred).mean())

    @property
    def balanced_acc(self) -> float:
        return float(np.nanmean(self.per_class_acc))

    def usb_metrics(self) -> dict:
        """USB's eval keys (semilearn AlgorithmBase.evaluate), macro precision/recall/F1 included."""
        cm = self.confusion.astype(float)
        tp = np.diag(cm)
        present = cm.sum(1) > 0
        predicted = cm.sum(0)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(present, tp / np.maximum(cm.sum(1), 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        labels = present | (predicted > 0)
        return {
            "loss": self.loss,
            "top-1-acc": self.top1,
            "balanced_acc": self.balanced_acc,
            "precision": float(precision[labels].mean()),
            "recall": float(recall[labels].mean()),
            "F1": float(f1[labels].mean()),
        }


@torch.no_grad()
def evaluate_model(model, loader, device, out_key: str = "logits", num_classes: int | None = None,
                   keep_logits: bool = False) -> EvalResult:
    """Run ``model`` over ``loader`` (USB eval batches: dicts with x_lb, y_lb)."""
    y_true, y_pred, logits_all = [], [], []
    total_loss, total = torch.zeros((), device=device), 0
    for data in loader:
        x, y = data["x_lb"], data["y_lb"]
        x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
        y = y.to(device)
        logits = model(x)[out_key]
        total_loss += F.cross_entropy(logits, y, reduction="sum", ignore_index=-1)
        total += y.shape[0]
        y_true.append(y)
        y_pred.append(logits.argmax(-1))
        if keep_logits:
            logits_all.append(logits.float().cpu())
    y_true_np = torch.cat(y_true).cpu().numpy()
    y_pred_np = torch.cat(y_pred).cpu().numpy()
    if num_classes is None:
        num_classes = int(max(y_true_np.max(), y_pred_np.max())) + 1
    return EvalResult(
        y_true=y_true_np, y_pred=y_pred_np, loss=float(total_loss) / max(total, 1),
        num_classes=num_classes,
        logits=torch.cat(logits_all).numpy() if keep_logits else None,
    )
