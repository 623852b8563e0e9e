"""CDMAD (docs/method.md, "CDMAD"): its formulas on hand-made tensors, its step and its test
prediction against line-by-line transcriptions of the released script on real digits
batches, and real runs of the quick start (kill and resume bitwise included). CDMAD keeps no
state outside the model (the bias is measured again in every step), so there is nothing of
its own to save or to keep equal across DDP ranks beyond what USB does for the model."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from conftest import build_on_digits as build, digits_batch as batch, digits_flags, only_run, run_summary
from conftest import semilearn_eval
from kill_resume import kill_then_resume
from run_helpers import digits_cfg, digits_yaml  # noqa: F401  (fixtures)
from semi_usb.cli import main
from semi_usb.imb_algorithms.cdmad.debias import debiased, debiased_targets, solid_image


# --------------------------------------------------------------------------- formulas
def test_solid_image_and_debiased_logits():
    like = torch.zeros(5, 3, 4, 4, dtype=torch.float64)
    img = solid_image(like, 0.5)
    assert img.shape == (1, 3, 4, 4) and img.dtype == torch.float64 and (img == 0.5).all()
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert torch.equal(debiased(z, torch.tensor([[1.0, 2.0, 0.0]])), torch.tensor([[0.0, 0.0, 3.0], [-1.0, -2.0, 0.0]]))


def test_debiased_targets_soft_hard_threshold_and_start():
    z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    bias = torch.tensor([[2.0, 0.0]])  # the classifier favours class 0 by 2
    soft, mask = debiased_targets(z, bias, 0.0, hard=False)
    assert torch.allclose(soft, torch.softmax(torch.tensor([[0.0, 0.0], [-2.0, 0.0]]), -1))
    assert mask.tolist() == [1.0, 1.0]  # threshold 0: every sample (released --tau 0)
    hard, mask = debiased_targets(z, bias, 0.8, hard=True)
    assert hard.tolist() == [0, 1] and mask.tolist() == [0.0, 1.0]  # 1/2 < 0.8 <= e^2/(1+e^2)
    before, _ = debiased_targets(z, None, 0.0, hard=True)  # before debiasing starts: the raw logits
    assert before.tolist() == [0, 0]


# --------------------------------------------------------------------------- transcription
def released_cdmad_step(model, num_class, epoch, debiasstart, tau, inputs_x, targets_x, inputs_u, inputs_u2,
                        inputs_u3, hard=False):
    """Line-by-line transcription of the released step, LeeHyuck/CDMAD ``fixmatchcdmad.py``
    lines 224-257 (``train``: the white image's logits ``biaseddegree``, the weak view's
    logits minus them after ``debiasstart``, soft targets ``softmax``, ``select_mask =
    max_p.ge(tau)`` repeated for the two strong views, separate forwards of the labeled and
    both strong views) and lines 409-413 (``SemiLoss``). ``hard``: the commented-out line 246
    (one-hot ``p_hat`` targets). The model returns a dict here (``['logits']``), a tuple there;
    the white image takes the input's shape (``(1, 3, 32, 32)`` there)."""
    batch_size = inputs_x.size(0)
    targets_x2 = torch.zeros(batch_size, num_class).scatter_(1, targets_x.view(-1, 1), 1)
    with torch.no_grad():
        white = torch.ones((1, *inputs_u.shape[1:]))
        biaseddegree = model(white)["logits"]
        outputs_u = model(inputs_u)["logits"]
        if epoch > debiasstart:
            outputs_u = outputs_u - biaseddegree.detach()
        targets_u2 = F.softmax(outputs_u, dim=1).detach()
    max_p, p_hat = torch.max(targets_u2, dim=1)
    p_hat = torch.zeros(inputs_u.size(0), num_class).scatter_(1, p_hat.view(-1, 1), 1)
    select_mask = max_p.ge(tau)
    select_mask = torch.cat([select_mask, select_mask], 0).float()
    if hard:
        all_targets = torch.cat([targets_x2, p_hat, p_hat], dim=0)
    else:
        all_targets = torch.cat([targets_x2, targets_u2, targets_u2], dim=0)
    logits_x = model(inputs_x)["logits"]
    logits_u2 = model(inputs_u2)["logits"]
    logits_u3 = model(inputs_u3)["logits"]
    logits_u = torch.cat([logits_u2, logits_u3], dim=0)
    # SemiLoss
    Lx = -torch.mean(torch.sum(torch.log(F.softmax(logits_x, dim=1) + 1e-8) * all_targets[:batch_size], dim=1))
    Lu = -torch.mean(torch.sum(torch.log(F.softmax(logits_u, dim=1) + 1e-8) * all_targets[batch_size:], dim=1)
                     * select_mask)
    return Lx, Lu, select_mask.mean()


@pytest.mark.parametrize("debias,hard,tau", [(True, False, 0.0), (False, False, 0.0), (True, True, 0.1075)])
def test_cdmad_step_equals_the_released_code(debias, hard, tau):
    """The same real digits batch (two strong views, each view forwarded on its own as the
    released script does: ``use_cat: False``) through our step and the transcription above:
    equal losses and utilisation to float tolerance (the released log adds 1e-8 to the
    softmax). Debiasing on (``it >= cdmad_debias_start_iter``; released ``epoch >
    debiasstart``) and off; soft targets without threshold (released) and hard ones with a
    threshold that splits the batch. Checked to fail when the bias is added instead of
    subtracted in :func:`~semi_usb.imb_algorithms.cdmad.debias.debiased`, or when
    :func:`~semi_usb.imb_algorithms.cdmad.debias.debiased_targets` returns the hard label
    whatever ``hard`` says. (Measuring the bias after the step's forward instead of before
    it changes only batch norm's running statistics, which a training-mode forward does not
    read: this test cannot see that order.)"""
    alg = build("cdmad", use_cat=False, num_strong_views=2, cdmad_debias_start_iter=0 if debias else 5,
                cdmad_p_cutoff=tau, cdmad_hard_label=hard)
    b = batch(alg)
    assert "x_ulb_s_1" in b
    net = alg.model.module if hasattr(alg.model, "module") else alg.model
    _, log = alg.train_step(**b)
    Lx, Lu, util = released_cdmad_step(net.backbone, 10, int(debias), 0, tau, b["x_lb"], b["y_lb"], b["x_ulb_w"],
                                       b["x_ulb_s"], b["x_ulb_s_1"], hard=hard)
    assert log["train/sup_loss"].item() == pytest.approx(Lx.item(), rel=1e-5)
    assert log["train/unsup_loss"].item() == pytest.approx(Lu.item(), rel=1e-5)
    assert log["train/util_ratio"].item() == pytest.approx(util.item())
    if tau > 0:
        assert 0 < util < 1


def test_debiasing_changes_the_pseudo_labels_on_this_batch():
    """The transcription test compares something: with the released settings the debiased
    and the raw unlabeled losses of the same batch differ."""
    on, off = build("cdmad", cdmad_debias_start_iter=0), build("cdmad", cdmad_debias_start_iter=5)
    _, log_on = on.train_step(**batch(on))
    _, log_off = off.train_step(**batch(off))
    assert torch.equal(log_on["train/sup_loss"], log_off["train/sup_loss"])
    assert abs(log_on["train/unsup_loss"].item() - log_off["train/unsup_loss"].item()) > 1e-4


def test_cdmad_predicts_with_the_debiased_logits_of_the_ema_model():
    """Evaluation transcribes ``validate`` (``fixmatchcdmad.py`` lines 312-328): in evaluation
    mode, the white image's logits subtracted from each test image's, argmax. A constant added
    to the classifier's bias cancels out: the raw head then says 9 everywhere, the debiased
    one does not move."""
    alg = build("cdmad")
    net = alg.model.module if hasattr(alg.model, "module") else alg.model
    alg.ema.register()
    alg.evaluate("eval")
    before = alg.last_eval.y_pred.copy()
    with torch.no_grad():
        net.backbone.classifier.bias.add_(torch.arange(10.0) * 100)
    alg.ema.register()
    alg.evaluate("eval")
    assert (alg.last_eval.y_pred == before).all()
    net.eval()
    with torch.no_grad():
        xs = torch.cat([x["x_lb"] for x in alg.loader_dict["eval"]])
        white = torch.ones(1, *xs.shape[1:])
        biaseddegree = net.backbone(white)["logits"]
        outputs = net.backbone(xs)["logits"]
        prediction2 = torch.argmax(F.softmax(outputs - biaseddegree, dim=1), dim=1)
    net.train()
    assert (torch.argmax(outputs, 1) == 9).all()
    assert prediction2.tolist() == alg.last_eval.y_pred.tolist()


# --------------------------------------------------------------------------- real runs
def test_cdmad_trains_the_quick_start(tmp_path, capsys):
    """``semilearn train --algorithm cdmad --config config/quickstart/digits_lt.yaml`` (few
    iterations, debiasing from iteration 2): a summary from the debiased head, which
    ``semilearn eval`` of the checkpoint reproduces."""
    assert main(["train", "--algorithm", "cdmad"] + digits_flags(tmp_path, iters=6, cdmad_debias_start_iter=2)) == 0
    run = only_run(tmp_path)
    s = run_summary(run)
    assert s["method"] == "fixmatch+cdmad" and s["head"] == "debiased" and s["iterations_done"] == 6
    assert "train/bias_spread" in open(os.path.join(run, "log.txt"), encoding="utf-8").read()
    evaluated = semilearn_eval(run, capsys)
    assert evaluated["head"] == "debiased"
    assert evaluated["final"]["confusion_matrix"] == s["final"]["confusion_matrix"]


def test_cdmad_resumes_bitwise_after_a_kill(tmp_path, digits_yaml):  # noqa: F811
    """SIGKILL after the first checkpoint, resume: bitwise the uninterrupted run (two strong
    views, debiasing from iteration 3, so across its start)."""
    kill_then_resume("cdmad", {"num_strong_views": 2, "cdmad_debias_start_iter": 3}, digits_yaml, tmp_path)


def test_cdmad_keys_in_help(capsys):
    assert main(["train", "--algorithm", "cdmad", "--help"]) == 0
    text = capsys.readouterr().out
    for key, default in (("cdmad_debias_start_iter", "50500"), ("cdmad_fill", "1.0"), ("cdmad_p_cutoff", "0.0"),
                         ("cdmad_hard_label", "False")):
        assert any(line.split()[:2] == [f"--{key}", default] for line in text.splitlines()), key
