"""ACR's formulas (docs/method.md, "ACR") on hand-made tensors, and the algorithm's step on a
real digits batch recomputed independently from the spec."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from conftest import build_on_digits as build
from conftest import digits_batch as batch
from semi_usb.imb_algorithms.acr.balanced_head import adjusted_probs, log_prior, logit_adjusted_ce, masked_ce, or_mask
from semi_usb.imb_algorithms.acr.distribution_estimate import (Tau1Estimator, anchors, confident_class_histogram,
                                                               symmetric_kl, tau1_from_kl, update_u_py)


def test_log_prior_and_logit_adjusted_loss_by_hand():
    counts = torch.tensor([6.0, 3.0, 1.0])
    lp = log_prior(counts)
    assert torch.allclose(lp, torch.log(torch.tensor([0.6, 0.3, 0.1])))
    b = torch.tensor([[1.0, 0.0, -1.0]])
    y = torch.tensor([2])
    # CE(b + 2 log pi, 2) = -log softmax([1+2ln.6, 2ln.3, -1+2ln.1])[2]
    z = [1 + 2 * math.log(0.6), 2 * math.log(0.3), -1 + 2 * math.log(0.1)]
    expected = -(z[2] - math.log(sum(math.exp(v) for v in z)))
    assert logit_adjusted_ce(b, y, lp, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_adjusted_probs_and_or_mask():
    lp = torch.log(torch.tensor([0.5, 0.5]))
    logits = torch.tensor([[2.0, 0.0]])
    # a uniform prior shifts both logits equally: no change
    assert torch.allclose(adjusted_probs(logits, lp, 2.0), torch.softmax(logits, -1))
    lp = torch.log(torch.tensor([0.9, 0.1]))
    p = adjusted_probs(logits, lp, 1.0, T=1.0)
    z = torch.tensor([2.0 - math.log(0.9), -math.log(0.1)])
    assert torch.allclose(p, torch.softmax(z, -1).unsqueeze(0))
    a = torch.tensor([[0.96, 0.04], [0.5, 0.5], [0.2, 0.8]])
    b = torch.tensor([[0.5, 0.5], [0.97, 0.03], [0.6, 0.4]])
    assert or_mask(a, b, 0.95).tolist() == [1.0, 1.0, 0.0]


def test_masked_ce_is_mean_over_all_samples():
    logits = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([0, 1])
    ce = F.cross_entropy(logits, y, reduction="none")
    assert masked_ce(logits, y, torch.tensor([1.0, 0.0])).item() == pytest.approx(ce[0].item() / 2)
    w = torch.tensor([0.5, 1.0])
    assert masked_ce(logits, y, torch.tensor([1.0, 1.0]), w).item() == pytest.approx((0.5 * ce[0] + ce[1]).item() / 2)


def test_histogram_presence_vector_and_counts():
    probs = torch.tensor([[0.97, 0.02, 0.01], [0.96, 0.02, 0.02], [0.1, 0.1, 0.8], [0.01, 0.98, 0.01]])
    # class 0 twice confident, class 2 not confident, class 1 once
    assert confident_class_histogram(probs, 0.95).tolist() == [1.0, 1.0, 0.0]
    assert confident_class_histogram(probs, 0.95, counts=True).tolist() == [2.0, 1.0, 0.0]


def test_u_py_update_and_skip():
    u = torch.full((4,), 0.25)
    hist = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert torch.allclose(update_u_py(u, hist, 0.9), 0.9 * u + 0.1 * torch.tensor([0.5, 0.5, 0.0, 0.0]))
    assert torch.equal(update_u_py(u, torch.zeros(4), 0.9), u)


def test_symmetric_kl_anchors_and_tau1():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert symmetric_kl(p, q).item() == pytest.approx(0.5 * kl_pq + 0.5 * kl_qp, rel=1e-6)
    pi = torch.tensor([0.7, 0.2, 0.1])
    a = anchors(pi)
    assert torch.allclose(a[0], pi) and torch.allclose(a[1], torch.full((3,), 1 / 3)) and torch.allclose(a[2], pi.flip(0))
    kl = torch.tensor([0.1, 0.5, 2.0])
    w = math.exp(0.1) / (math.exp(0.1) + math.exp(0.5) + math.exp(2.0))
    assert tau1_from_kl(kl, 0.0, 2.0).item() == pytest.approx(2 * w, rel=1e-6)


def test_tau1_estimator_epoch_average():
    pi = torch.tensor([0.7, 0.2, 0.1])
    est = Tau1Estimator(pi, tau1=2.0)
    probs = torch.tensor([[0.99, 0.005, 0.005]] * 3)
    est.step(probs, 0.95)
    est.step(probs, 0.95)
    u1 = 0.9 * torch.full((3,), 1 / 3) + 0.1 * torch.tensor([1.0, 0, 0])
    u2 = 0.9 * u1 + 0.1 * torch.tensor([1.0, 0, 0])
    kl_sum = symmetric_kl(u1.unsqueeze(0), anchors(pi)) + symmetric_kl(u2.unsqueeze(0), anchors(pi))
    assert torch.allclose(est.kl_sum, kl_sum)
    est.end_epoch(update_tau1=False)
    assert est.tau1.item() == 2.0 and est.steps.item() == 0
    est.step(probs, 0.95)
    expected = tau1_from_kl(symmetric_kl(est.u_py.unsqueeze(0), anchors(pi)), 0.0, 2.0)
    est.end_epoch(update_tau1=True)
    assert est.tau1.item() == pytest.approx(expected.item(), rel=1e-6)


# --------------------------------------------------------------------------- the algorithm
def test_acr_step_matches_the_spec():
    alg = build("acr")
    b = batch(alg)
    alg.tau1_estimator.tau1 = torch.tensor(1.5)
    out, log = alg.train_step(**b)
    with torch.no_grad():
        n_lb = b["x_lb"].shape[0]
        o = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], b["x_ulb_s"]]))
        z, bb = o["logits"], o["logits_bal"]
        z_lb, z_w, z_s = z[:n_lb], *z[n_lb:].chunk(2)
        b_lb, b_w, b_s = bb[:n_lb], *bb[n_lb:].chunk(2)
        counts = torch.bincount(torch.as_tensor(alg.dataset_dict["train_lb"].targets), minlength=10).float()
        lpi = torch.log(counts / counts.sum())
        tau = alg.p_cutoff
        l_x = F.cross_entropy(z_lb, b["y_lb"])
        p = torch.softmax(z_w - 1.5 * lpi, -1)
        mask = ((p.max(-1).values >= tau) | (torch.softmax(z_w, -1).max(-1).values >= tau)).float()
        l_u = (F.cross_entropy(z_s, p.argmax(-1), reduction="none") * mask).mean()
        l_xb = F.cross_entropy(b_lb + 2 * lpi, b["y_lb"])
        p2 = torch.softmax(z_w - 2 * lpi, -1)
        mask_b = ((torch.softmax(b_w, -1).max(-1).values >= tau) | (p2.max(-1).values >= tau)).float()
        l_ub = (F.cross_entropy(b_s, p2.argmax(-1), reduction="none") * mask_b).mean()
    assert log["train/sup_loss"].item() == pytest.approx(l_x.item(), rel=1e-5)
    assert log["train/unsup_loss"].item() == pytest.approx(l_u.item(), rel=1e-5, abs=1e-7)
    assert log["train/bal_sup_loss"].item() == pytest.approx(l_xb.item(), rel=1e-5)
    assert log["train/bal_unsup_loss"].item() == pytest.approx(l_ub.item(), rel=1e-5, abs=1e-7)
    assert out["loss"].item() == pytest.approx((l_x + l_u + l_xb + l_ub).item(), rel=1e-5)


def test_acr_evaluates_the_balanced_head_of_the_ema_model():
    alg = build("acr")
    with torch.no_grad():
        alg.model.module.balanced_classifier.bias.copy_(torch.arange(10.0) * 100)  # balanced head says 9
    alg.ema.register()  # EMA := current weights
    alg.evaluate("eval")
    assert (alg.last_eval.y_pred == 9).all()


@pytest.mark.parametrize("method", ["acr", "semi"])
def test_another_base_is_refused_when_built_directly(method):
    """USB's own train.py does not go through semi_usb.config: the algorithm refuses a base
    whose step it would replace (FlexMatch's masking would silently be dropped)."""
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm

    args = build_args(method, os.path.join(REPO, "config", "quickstart", "digits_lt.yaml"), {"save_dir": "/nonexistent"})
    args.algorithm = "flexmatch"
    with pytest.raises(ValueError, match=rf"^{method} runs on fixmatch only \(got flexmatch\)$"):
        build_algorithm(args)
