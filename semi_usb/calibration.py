"""Expected calibration error (ECE) and the reliability diagram's bins of one evaluation pass.

The confidence of a test image is its top-1 softmax probability from the logits the method
predicts with (the balanced head for ACR / SeMi, ABC's auxiliary head), and the prediction is
that top-1 class. Confidences fall into :data:`ECE_BINS` (15) equal-width bins
``((b - 1) / 15, b / 15]`` (a confidence of exactly 0 would go to the first); per bin the pass
counts the images, sums their confidences and counts the correct ones. Then

    ECE = sum over bins of  n_b / N * |accuracy_b - confidence_b|
        = sum over bins of  |correct_b - confidence sum_b| / N.

:class:`CalibrationBins` accumulates on the evaluation device (``index_add_``, no host
transfer per batch); :meth:`CalibrationBins.state` is the one tensor the pass copies to the
host at its end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

#: Number of equal-width confidence bins.
ECE_BINS = 15


class CalibrationBins:
    """Per-bin image count, confidence sum and correct count, on ``device``."""

    def __init__(self, device: Any, bins: int = ECE_BINS):
        import torch

        self.bins = bins
        self.sums = torch.zeros(3, bins, device=device, dtype=torch.float32)

    def add(self, logits, labels) -> None:
        """Add a batch: ``logits`` (N x C) of the predicting head, ``labels`` (N)."""
        conf, pred = logits.detach().float().softmax(-1).max(-1)
        idx = (conf * self.bins).ceil().long().clamp_(1, self.bins) - 1
        rows = (conf.new_ones(conf.shape), conf, (pred == labels).float())
        for row, values in zip(self.sums, rows):
            row.index_add_(0, idx, values)

    def state(self):
        """The 3 x bins tensor (count, confidence sum, correct), still on the device."""
        return self.sums


@dataclass(frozen=True)
class Reliability:
    """The bins of one evaluation: counts, confidence sums and correct counts (host lists)."""

    count: List[float]
    confidence_sum: List[float]
    correct: List[float]

    @classmethod
    def from_state(cls, state: Sequence[Sequence[float]]) -> "Reliability":
        count, conf, correct = ([float(v) for v in row] for row in state)
        return cls(count, conf, correct)

    @property
    def bins(self) -> int:
        return len(self.count)

    @property
    def ece(self) -> Optional[float]:
        """The expected calibration error (a fraction); None for an empty evaluation."""
        return expected_calibration_error(self.count, self.confidence_sum, self.correct)

    def to_json(self) -> Dict[str, Any]:
        """``{"bins", "count", "confidence", "accuracy"}``: per bin its image count, mean
        confidence and accuracy (None for an empty bin)."""
        def mean(sums: Sequence[float]) -> List[Optional[float]]:
            return [s / n if n else None for s, n in zip(sums, self.count)]

        return {"bins": self.bins, "count": [int(n) for n in self.count],
                "confidence": mean(self.confidence_sum), "accuracy": mean(self.correct)}


def expected_calibration_error(count: Sequence[float], confidence_sum: Sequence[float],
                               correct: Sequence[float]) -> Optional[float]:
    """``sum_b |correct_b - confidence_sum_b| / N`` over the bins; None when ``N`` is 0."""
    total = float(sum(count))
    if total <= 0:
        return None
    return sum(abs(float(c) - float(s)) for c, s in zip(correct, confidence_sum)) / total


def reliability_from_json(block: Dict[str, Any]) -> Optional[Reliability]:
    """A :class:`Reliability` back from :meth:`Reliability.to_json` (None if malformed)."""
    try:
        count = [float(n) for n in block["count"]]
        conf = [float(c or 0.0) * n for c, n in zip(block["confidence"], count)]
        acc = [float(a or 0.0) * n for a, n in zip(block["accuracy"], count)]
    except (KeyError, TypeError, ValueError):
        return None
    return Reliability(count, conf, acc) if len(count) == len(conf) == len(acc) else None
