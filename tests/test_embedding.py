"""test_features.npz at the end of a real digits run, and `semilearn report`'s t-SNE figure of it."""
from __future__ import annotations

import os
import struct

import numpy as np

from conftest import digits_flags, only_run, run_summary
from semi_usb.cli import main


def test_subsample_is_sorted_unique_and_capped():
    from semi_usb.features import subsample

    idx = subsample(10000)
    assert len(idx) == 2000 and len(set(idx.tolist())) == 2000 and np.all(np.diff(idx) > 0) and idx.max() < 10000
    assert np.array_equal(subsample(10000), idx)  # seed 0: the same points every time
    assert np.array_equal(subsample(397), np.arange(397))


def test_digits_run_saves_test_features_and_report_draws_them(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "--algorithm", "semi"] + digits_flags(runs, iters=4, semi_warmup_iter=1)) == 0
    run = only_run(runs)
    s = run_summary(run)
    with np.load(os.path.join(run, "test_features.npz")) as z:
        feat, labels, preds = z["feat"], z["labels"], z["preds"]
    assert feat.dtype == np.float16 and feat.shape == (397, 32)  # the digits test split, cnn_tiny's features
    assert np.isfinite(feat.astype(np.float32)).all() and feat.std() > 0
    # the same points and head as the summary's final evaluation (balanced head for SeMi)
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (labels, preds), 1)
    assert cm.tolist() == s["final"]["confusion_matrix"]

    out = tmp_path / "report"
    assert main(["report", run, "--out", str(out)]) == 0
    png = (out / "embedding_digits_lb40_10_ulb90_10.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    assert w >= 500 and h >= 300 and len(png) > 20000
