"""No non-finite model is called a result: the guard checks the weights a step produces
(in its one per-step check), no checkpoint with non-finite weights is written, no summary
reports one, ``eval`` and ``--resume`` refuse one, and a stopped run says whether a good
checkpoint exists.

Real data (scikit-learn's digits) and the real trainer on the CPU. docs/reliability.md lists
each case.
"""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from run_helpers import digits_cfg, digits_yaml, finished_run, flags, load  # noqa: F401  (fixtures)
from semi_usb.cli import main

# lr at the top of float32 with a large weight decay: the first step's loss and gradients
# are finite, the weights it produces overflow to inf (the case the guard did not see:
# `--lr inf`, now refused by the ranges, did the same).
OVERFLOW = {"lr": 3e38, "weight_decay": 10}


def _nonfinite(state: dict) -> list:
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def test_a_step_that_overflows_the_weights_is_skipped_and_nothing_non_finite_is_saved(digits_yaml, tmp_path, capsys):
    """Before: rc 0, an ordinary summary.json, 5 of 26 weight tensors of the checkpoint inf/NaN."""
    code = main(["train", "--algorithm", "fixmatch"] + flags(digits_yaml, tmp_path, num_train_iter=2, epoch=1,
                                                              num_eval_iter=2, **OVERFLOW))
    assert code == 0, capsys.readouterr().err[-2000:]
    run = tmp_path / "run"
    log = (run / "log.txt").read_text(encoding="utf-8")
    assert "non-finite loss, gradient, buffer or weight at iteration 1: step skipped (1 in a row, 1 in all)" in log
    ckpt = load(run / "latest_model.pth")
    assert _nonfinite(ckpt["model"]) == [] and _nonfinite(ckpt["ema_model"]) == []
    momentum = [s["momentum_buffer"] for s in ckpt["optimizer"]["state"].values() if "momentum_buffer" in s]
    assert all(torch.isfinite(m).all() for m in momentum)


def test_a_run_stopped_before_any_good_checkpoint_says_so(digits_yaml, tmp_path, capsys):
    code = main(["train", "--algorithm", "fixmatch"] + flags(digits_yaml, tmp_path, num_train_iter=12, epoch=1,
                                                              num_eval_iter=4, semi_usb_nonfinite_patience=3,
                                                              **OVERFLOW))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (
        f"semilearn train: error: 3 non-finite steps in a row at iteration 3: stopped; no good checkpoint exists in "
        f"{tmp_path / 'run'} (none was written before the run diverged): start it again with other settings "
        "(a lower lr, say)"), err
    assert not (tmp_path / "run" / "latest_model.pth").exists() and not (tmp_path / "run" / "summary.json").exists()


def test_a_checkpoint_with_non_finite_weights_is_never_written(finished_run, tmp_path):
    """The check in the checkpoint writer itself (patience 0 or amp runs have no guard):
    the previous checkpoint stays as it was."""
    from conftest import build_on_digits

    from semi_usb.errors import NonFiniteError

    alg = build_on_digits("fixmatch")
    alg.it = alg.epoch = alg.semi_usb_done = alg.semi_usb_epoch_step = 0  # the loop's position, as train() sets it
    shutil.copy2(os.path.join(finished_run, "latest_model.pth"), tmp_path / "latest_model.pth")  # a good one
    before = (tmp_path / "latest_model.pth").read_bytes()
    with torch.no_grad():
        next(alg.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"non-finite weights at iteration \d+ \(1 tensors, e\.g\. model/module\."
                                             r".*latest_model\.pth not written; the last checkpoint in .* is intact"):
        alg.save_model("latest_model.pth", str(tmp_path))
    assert (tmp_path / "latest_model.pth").read_bytes() == before


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_eval_and_resume_refuse_a_checkpoint_with_non_finite_weights(finished_run, digits_yaml, tmp_path, capsys,
                                                                     command):
    from run_helpers import SEMI

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "summary.json").unlink()  # an unfinished run, for the resume
    ckpt = load(run / "latest_model.pth")
    key = next(k for k, v in ckpt["ema_model"].items() if v.is_floating_point())
    ckpt["ema_model"][key][...] = float("nan")
    torch.save(ckpt, run / "latest_model.pth")
    before = sorted(os.listdir(run))
    if command == "eval":
        code = main(["eval", "--checkpoint", str(run / "latest_model.pth")])
        use = "nothing to evaluate"
    else:
        code = main(["train", "--algorithm", "semi", "--resume", "True"] + flags(digits_yaml, tmp_path, num_train_iter=4,
                                                                                  epoch=1, num_eval_iter=2, **SEMI))
        use = "start the run again with other settings (another --save_name)"
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"checkpoint {run / 'latest_model.pth'} holds non-finite weights (1 tensors, e.g. ema_model/{key}): the run " \
           f"diverged; {use}" in err[0], err[0]
    assert sorted(os.listdir(run)) == before
