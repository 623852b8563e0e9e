"""Expected calibration error (semi_usb.calibration): a hand-computed example through the
evaluation pass, and ECE with its reliability bins in a real run's summary.json,
eval_history.jsonl and ``semilearn eval``'s JSON."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from conftest import digits_flags, only_run, run_summary
from semi_usb.calibration import ECE_BINS, expected_calibration_error, reliability_from_json
from semi_usb.cli import main
from semi_usb.metrics import evaluate_model

# (softmax probabilities, label): confidence, bin ((b-1)/15, b/15] index, correct
CASES = [
    ([0.90, 0.05, 0.05], 0),  # 0.90 -> bin 13, right
    ([0.95, 0.03, 0.02], 1),  # 0.95 -> bin 14, wrong
    ([0.50, 0.30, 0.20], 0),  # 0.50 -> bin 7, right
    ([0.20, 0.45, 0.35], 2),  # 0.45 -> bin 6, wrong
    ([0.55, 0.25, 0.20], 0),  # 0.55 -> bin 8, right
    ([0.92, 0.04, 0.04], 0),  # 0.92 -> bin 13, right
]
# By hand: bin 13 holds 2 images, both right, confidences 1.82: |2 - 1.82| = 0.18; bin 14:
# |0 - 0.95|; bin 7: |1 - 0.50|; bin 6: |0 - 0.45|; bin 8: |1 - 0.55|. Sum 2.53, over 6 images.
HAND_ECE = 2.53 / 6
HAND_COUNTS = {6: 1, 7: 1, 8: 1, 13: 2, 14: 1}


class _Logits(torch.nn.Module):
    """A 'model' whose logits are its input (the log of the probabilities above)."""

    def forward(self, x):
        return {"logits": x}


def _loader(batch: int):
    x = torch.log(torch.tensor([p for p, _ in CASES]))
    y = torch.tensor([c for _, c in CASES])
    return [{"x_lb": x[i:i + batch], "y_lb": y[i:i + batch]} for i in range(0, len(CASES), batch)]


@pytest.mark.parametrize("batch", [6, 4, 1])
def test_hand_computed_ece_through_the_evaluation_pass(batch):
    result = evaluate_model(_Logits(), _loader(batch), torch.device("cpu"), num_classes=3)
    rel = result.calibration
    assert rel.bins == ECE_BINS == 15
    assert {b: int(n) for b, n in enumerate(rel.count) if n} == HAND_COUNTS
    assert result.ece == pytest.approx(HAND_ECE, abs=1e-6)
    assert result.usb_metrics()["ece"] == pytest.approx(HAND_ECE, abs=1e-6)
    bins = rel.to_json()
    assert bins["accuracy"][13] == 1.0 and bins["confidence"][13] == pytest.approx(0.91, abs=1e-6)
    assert bins["accuracy"][14] == 0.0 and bins["count"][0] == 0 and bins["confidence"][0] is None
    assert result.top1 == pytest.approx(4 / 6)
    back = reliability_from_json(bins)
    assert back.ece == pytest.approx(HAND_ECE, abs=1e-6)


def test_ece_formula_edge_cases():
    assert expected_calibration_error([0] * 15, [0] * 15, [0] * 15) is None
    # perfectly calibrated: 10 images at confidence 0.8 of which 8 right
    assert expected_calibration_error([10], [8.0], [8]) == 0.0


def test_ece_in_summary_history_and_eval_json(tmp_path, capsys):
    """A real digits run: summary.json's final block and every eval_history.jsonl row carry
    the ECE; the reliability bins hold the 397 test images and give the same ECE; `semilearn
    eval` of the checkpoint prints the same."""
    assert main(["train", "--algorithm", "abc"] + digits_flags(tmp_path, iters=4)) == 0
    run = only_run(tmp_path)
    s = run_summary(run)
    final = s["final"]
    assert 0.0 <= final["ece"] <= 1.0 and s["head"] == "aux"
    assert sum(final["reliability"]["count"]) == 397 and final["reliability"]["bins"] == 15
    assert reliability_from_json(final["reliability"]).ece == pytest.approx(final["ece"], abs=1e-6)
    # the bins' accuracy is the top-1 of the head the summary reports
    right = sum(a * n for a, n in zip(final["reliability"]["accuracy"], final["reliability"]["count"]) if n)
    assert right / 397 == pytest.approx(final["top1"], abs=1e-6)
    rows = [json.loads(line) for line in open(os.path.join(run, "eval_history.jsonl"))]
    assert rows and all(0.0 <= r["ece"] <= 1.0 for r in rows)
    assert rows[-1]["ece"] == pytest.approx(final["ece"], abs=1e-6)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", os.path.join(run, "latest_model.pth")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert math.isclose(out["final"]["ece"], final["ece"], abs_tol=1e-5)
    assert out["final"]["reliability"]["count"] == final["reliability"]["count"]
