"""Evaluation of a classifier on a loader: USB's metrics plus per-class accuracy, from scikit-learn,
and the expected calibration error (:mod:`semi_usb.calibration`)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support,
                             recall_score)

from .calibration import CalibrationBins, Reliability


@dataclass
class EvalResult:
    """Predictions of one evaluation pass and the metrics derived from them."""

    y_true: np.ndarray
    y_pred: np.ndarray
    loss: float
    num_classes: int
    logits: np.ndarray | None = None
    calibration: Reliability | None = None  # ECE bins of the predicting head (semi_usb.calibration)

    @property
    def ece(self) -> float | None:
        """Expected calibration error (15 bins, top-1 confidence); None when not measured."""
        return None if self.calibration is None else self.calibration.ece

    @property
    def confusion(self) -> np.ndarray:
        """Counts, rows = true class, columns = predicted class (scikit-learn's confusion_matrix)."""
        return confusion_matrix(self.y_true, self.y_pred, labels=np.arange(self.num_classes))

    def confusion_normalized(self) -> np.ndarray:
        cm = self.confusion.astype(float)
        return cm / np.maximum(cm.sum(1, keepdims=True), 1)

    @property
    def per_class_acc(self) -> np.ndarray:
        """Recall of each class (NaN for a class absent from the set)."""
        return recall_score(self.y_true, self.y_pred, labels=np.arange(self.num_classes), average=None,
                            zero_division=np.nan)

    @property
    def top1(self) -> float:
        return float(accuracy_score(self.y_true, self.y_pred))

    @property
    def balanced_acc(self) -> float:
        """Mean recall over the classes present in the set (scikit-learn's balanced_accuracy_score)."""
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": those are left out, as intended
            warnings.simplefilter("ignore", UserWarning)
            return float(balanced_accuracy_score(self.y_true, self.y_pred))

    def usb_metrics(self) -> dict:
        """USB's eval keys (semilearn AlgorithmBase.evaluate, which also takes precision,
        recall and F1 from scikit-learn, macro over the classes seen in labels or predictions),
        and the expected calibration error when it was measured."""
        precision, recall, f1, _ = precision_recall_fscore_support(self.y_true, self.y_pred, average="macro",
                                                                   zero_division=0)
        return {
            "loss": self.loss,
            "top-1-acc": self.top1,
            "balanced_acc": self.balanced_acc,
            "precision": float(precision),
            "recall": float(recall),
            "F1": float(f1),
            **({} if self.ece is None else {"ece": self.ece}),  # ours, beside USB's keys
        }


@torch.no_grad()
def evaluate_model(model, loader, device, out_key: str = "logits", num_classes: int | None = None,
                   keep_logits: bool = False) -> EvalResult:
    """Run ``model`` over ``loader`` (USB eval batches: dicts with x_lb, y_lb); the ECE bins
    are accumulated on ``device`` and come to the host with the labels, at the end."""
    y_true, y_pred, logits_all = [], [], []
    total_loss, total = torch.zeros((), device=device), 0
    bins = CalibrationBins(device)
    for data in loader:
        x, y = data["x_lb"], data["y_lb"]
        x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
        y = y.to(device)
        logits = model(x)[out_key]
        total_loss += F.cross_entropy(logits, y, reduction="sum", ignore_index=-1)
        total += y.shape[0]
        y_true.append(y)
        y_pred.append(logits.argmax(-1))
        bins.add(logits, y)
        if keep_logits:
            logits_all.append(logits.float().cpu())
    labels = torch.stack((torch.cat(y_true).long(), torch.cat(y_pred).long())).cpu().numpy()  # one copy for both
    sums = torch.cat((total_loss.float().reshape(1), bins.state().flatten())).cpu()  # loss and bins
    y_true_np, y_pred_np = labels
    if num_classes is None:
        num_classes = int(max(y_true_np.max(), y_pred_np.max())) + 1
    return EvalResult(
        y_true=y_true_np, y_pred=y_pred_np, loss=float(sums[0]) / max(total, 1),
        num_classes=num_classes,
        logits=torch.cat(logits_all).numpy() if keep_logits else None,
        calibration=Reliability.from_state(sums[1:].reshape(3, -1).tolist()),
    )
