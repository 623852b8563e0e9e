"""ACR's formulas (SEMI_METHOD.md, "ACR") on hand-made tensors, and the algorithm's step on a
real digits batch recomputed independently from the spec."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from semi_usb.balanced_head import adjusted_probs, log_prior, logit_adjusted_ce, masked_ce, or_mask
from semi_usb.distribution_estimate import (Tau1Estimator, anchors, confident_class_histogram, symmetric_kl,
                                            tau1_from_kl, update_u_py)

DIGITS = os.path.join(REPO, "config", "quickstart", "digits_lt.yaml")


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
def build(method: str, **flags):
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm, place_models, seed_everything
    from semilearn.core.utils import EMA

    base = {"save_dir": "/nonexistent", "num_train_iter": 100, "batch_size": 8, "uratio": 2, "use_tensorboard": False,
            "epoch": 1, "seed": 0}
    base.update(flags)
    args = build_args(method, DIGITS, {k: str(v) for k, v in base.items()})
    seed_everything(0)
    alg = build_algorithm(args)
    place_models(args, alg)
    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.register()
    for name in ("Tau1Hook", "MemoryBankHook", "PseudoLabelingHook", "EmbeddingCenterHook"):
        hook = alg.hooks_dict.get(name)
        if hook is not None and hasattr(hook, "before_run"):
            hook.before_run(alg)
    return alg


def batch(alg):
    from semi_usb.runner import seed_everything

    seed_everything(1)  # same augmentations (python/numpy RNG) for every algorithm
    lb = next(iter(alg.loader_dict["train_lb"]))
    ulb = next(iter(alg.loader_dict["train_ulb"]))
    return alg.process_batch(**lb, **ulb)


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


def test_semi_with_all_parts_off_is_acr_with_fixed_tau1():
    off = {"semi_use_bank": False, "semi_use_plce": False, "semi_use_oheml": False, "semi_use_ealign": False,
           "semi_warmup_iter": 0, "acr_tau1": 0.7}
    semi = build("semi", **off)
    acr = build("acr", acr_adaptive_tau1=False, acr_tau1=0.7)
    for (k1, v1), (k2, v2) in zip(semi.model.state_dict().items(), acr.model.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    out_s, log_s = semi.train_step(**batch(semi))
    out_a, log_a = acr.train_step(**batch(acr))
    assert torch.equal(out_s["loss"], out_a["loss"])
    for key in ("train/sup_loss", "train/unsup_loss", "train/bal_sup_loss", "train/bal_unsup_loss"):
        assert torch.equal(log_s[key], log_a[key]), key


def test_semi_uses_the_same_steps_prototype_label_and_weights():
    alg = build("semi", semi_warmup_iter=0, semi_plce_alpha=0.4, p_cutoff=0.0)  # every sample enters the bank
    b = batch(alg)
    # fill the bank and pi_hat from a first step, then look at the second
    alg.out_dict, alg.log_dict = alg.train_step(**b)
    alg.hooks_dict["MemoryBankHook"].after_train_step(alg)
    alg.pl_hist.counts += 1
    alg.pl_hist.refresh()
    alg.it = 50
    out, _ = alg.train_step(**b)
    ulb = out["ulb"]
    from semi_usb.plce import semantic_label

    protos, has = alg.bank.prototypes()
    assert has.any() and (alg.pl_hist.pi_hat > 0).all()
    q = semantic_label(ulb["feat_s"], protos, has, 0.1)  # this step's strong features
    with torch.no_grad():  # SeMi's linear label: tau1 = 0, T = 1 (same concatenated forward as the step)
        z = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], b["x_ulb_s"]]))["logits"][b["x_lb"].shape[0]:]
    p = torch.softmax(z.chunk(2)[0], -1)
    lam = 0.4 * (50 / 100) * alg.pl_hist.pi_hat
    assert torch.allclose(ulb["probs"], (1 - lam) * p + lam * q, atol=1e-5)
    h = -(ulb["probs"].clamp(1e-8, 1 - 1e-8) * ulb["probs"].clamp(1e-8, 1 - 1e-8).log()).sum(-1) / math.log(10)
    assert torch.allclose(ulb["weight"], 0.75 * h + 0.25, atol=1e-6)


def test_semi_state_survives_a_checkpoint(tmp_path):
    alg = build("semi", semi_warmup_iter=0, p_cutoff=0.0)
    b = batch(alg)
    alg.semi_usb_done, alg.semi_usb_epoch_step, alg.epoch = 1, 1, 0
    alg.out_dict, alg.log_dict = alg.train_step(**b)
    for name in ("MemoryBankHook", "PseudoLabelingHook", "EmbeddingCenterHook", "Tau1Hook"):
        alg.hooks_dict[name].after_train_step(alg)
    alg.pl_hist.refresh()
    alg.save_model("ckpt.pth", str(tmp_path))
    other = build("semi", semi_warmup_iter=0)
    other.load_model(str(tmp_path / "ckpt.pth"))
    for a, c in ((alg.bank.state_dict(), other.bank.state_dict()), (alg.pl_hist.state_dict(), other.pl_hist.state_dict()),
                 (alg.tau1_estimator.state_dict(), other.tau1_estimator.state_dict())):
        for k in a:
            assert torch.equal(a[k], c[k]), k
    assert torch.equal(alg.ealign_center, other.ealign_center)
    assert alg.bank.fill().sum() > 0 and alg.ealign_center.abs().sum() > 0
