"""semi_usb.metrics (scikit-learn) equals the hand-written formulas it replaced, on hand-made
predictions: every class right or wrong, a class absent from the labels but predicted, a class
never predicted, a single sample."""
from __future__ import annotations

import numpy as np
import pytest

from semi_usb.metrics import EvalResult


# --- the formulas semi_usb.metrics had before scikit-learn (the reference) ---
def old_confusion(y_true, y_pred, k):
    return np.bincount(y_true * k + y_pred, minlength=k ** 2).reshape(k, -1)


def old_per_class(cm):
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def old_usb(cm):
    cm = cm.astype(float)
    tp = np.diag(cm)
    present = cm.sum(1) > 0
    predicted = cm.sum(0)
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    recall = np.where(present, tp / np.maximum(cm.sum(1), 1), 0.0)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    labels = present | (predicted > 0)
    return float(precision[labels].mean()), float(recall[labels].mean()), float(f1[labels].mean())


CASES = {
    "mixed": ([0, 0, 0, 1, 1, 2, 2, 2, 2, 3], [0, 1, 1, 1, 2, 2, 2, 0, 2, 3], 4),
    "absent class predicted": ([0, 0, 1, 1, 1], [0, 2, 1, 1, 0], 4),  # 2 predicted, never true; 3 nowhere
    "never predicted": ([0, 1, 2, 2, 2, 2], [0, 0, 0, 0, 2, 2], 3),
    "all right": ([2, 1, 0, 2], [2, 1, 0, 2], 3),
    "all wrong": ([0, 1, 2], [1, 2, 0], 3),
    "one sample": ([1], [1], 5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sklearn_metrics_equal_the_old_formulas(name):
    y_true, y_pred, k = np.asarray(CASES[name][0]), np.asarray(CASES[name][1]), CASES[name][2]
    r = EvalResult(y_true=y_true, y_pred=y_pred, loss=0.5, num_classes=k)
    cm = old_confusion(y_true, y_pred, k)
    np.testing.assert_array_equal(r.confusion, cm)
    np.testing.assert_allclose(r.per_class_acc, old_per_class(cm), equal_nan=True)
    assert r.top1 == pytest.approx(float((y_true == y_pred).mean()))
    assert r.balanced_acc == pytest.approx(float(np.nanmean(old_per_class(cm))))
    usb = r.usb_metrics()
    assert (usb["precision"], usb["recall"], usb["F1"]) == pytest.approx(old_usb(cm))
    assert usb["top-1-acc"] == r.top1 and usb["balanced_acc"] == r.balanced_acc and usb["loss"] == 0.5


def test_the_reference_can_tell_a_wrong_metric():
    """A recall computed over predicted instead of true counts differs on the 'mixed' case."""
    y_true, y_pred, k = np.asarray(CASES["mixed"][0]), np.asarray(CASES["mixed"][1]), 4
    cm = old_confusion(y_true, y_pred, k)
    assert not np.allclose(np.diag(cm) / cm.sum(0), EvalResult(y_true, y_pred, 0.0, k).per_class_acc)
