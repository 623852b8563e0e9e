"""ACR's formulas (docs/method.md, "ACR") on hand-made tensors, and the algorithm's step on a
real digits batch recomputed independently from the spec."""
from __future__ import annotations

import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import QUICKSTART, REPO
from conftest import build_on_digits as build
from conftest import digits_batch as batch
from conftest import ema_predictions
from semi_usb.imb_algorithms.acr.balanced_head import adjusted_probs, log_prior, logit_adjusted_ce, masked_ce, or_mask
from semi_usb.imb_algorithms.device import unwrap
from semi_usb.imb_algorithms.acr.distribution_estimate import (CLASS_VECTORS, Tau1Estimator, anchors, class_vector,
                                                               confident_class_vector, symmetric_kl, tau1_from_kl,
                                                               update_u_py)
from semi_usb.imb_algorithms.acr.hooks import Tau1Hook


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


def test_the_three_class_vectors_on_a_hand_made_batch():
    """docs/method.md, "ACR", adaptive tau1: class 0 has two confident samples, class 1 a
    confident one and then a non-confident one, class 2 a non-confident one and then a
    confident one, class 3 no sample."""
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01], [0.96, 0.02, 0.01, 0.01],
                          [0.01, 0.98, 0.00, 0.01], [0.10, 0.60, 0.20, 0.10],
                          [0.20, 0.10, 0.60, 0.10], [0.01, 0.01, 0.97, 0.01]])
    vectors = {kind: confident_class_vector(probs, 0.95, kind).tolist() for kind in CLASS_VECTORS}
    assert vectors == {"acr_code": [1.0, 0.0, 1.0, 0.0], "presence": [1.0, 1.0, 1.0, 0.0], "counts": [2.0, 1.0, 1.0, 0.0]}
    # acr_code is what ACR's line gives on the CPU: h[targets] += mask keeps the last sample's mask
    conf, targets = probs.max(-1)
    h = torch.zeros(4)
    h[targets] += conf.ge(0.95).float()
    assert h.tolist() == vectors["acr_code"]
    with pytest.raises(ValueError, match="acr_code, presence, counts"):
        class_vector(targets, conf.ge(0.95), 4, "histogram")


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


def test_tau1_reading_aid_of_the_docs():
    """The values docs/method.md and results/ quote to read ACR's tau1 (C = 10, USB's LT
    prior with N1 1500, gamma 100): an estimate equal to the labeled prior gives 0.08,
    a uniform one 0.81, the reversed prior 1.76 (near 2: a reversed split)."""
    c, gamma, n1 = 10, 100, 1500
    counts = torch.tensor([int(n1 * gamma ** (-k / (c - 1))) for k in range(c)], dtype=torch.float64)
    pi = counts / counts.sum()
    for estimate, expected in [(pi, 0.076), (torch.full((c,), 1 / c, dtype=torch.float64), 0.814),
                               (pi.flip(0), 1.757)]:
        tau1 = tau1_from_kl(symmetric_kl(estimate.unsqueeze(0), anchors(pi)), 0.0, 2.0)
        assert tau1.item() == pytest.approx(expected, abs=5e-4)
    text = " ".join(open(os.path.join(REPO, "docs", "method.md"), encoding="utf-8").read().split())
    assert "estimate equal to `pi` gives 0.08, uniform 0.81, reversed `pi` 1.76" in text


def test_tau1_estimator_epoch_average():
    pi = torch.tensor([0.7, 0.2, 0.1])
    est = Tau1Estimator(pi, tau1=2.0, momentum=0.9)
    probs = torch.tensor([[0.99, 0.005, 0.005]] * 3)
    est.step(probs, 0.95)
    est.step(probs, 0.95)
    est.step(torch.full((3, 3), 1 / 3), 0.95)  # nothing confident: u_py and the sums unchanged
    u1 = 0.9 * torch.full((3,), 1 / 3) + 0.1 * torch.tensor([1.0, 0, 0])
    u2 = 0.9 * u1 + 0.1 * torch.tensor([1.0, 0, 0])
    kl_sum = symmetric_kl(u1.unsqueeze(0), anchors(pi)) + symmetric_kl(u2.unsqueeze(0), anchors(pi))
    assert torch.allclose(est.u_py, u2) and torch.allclose(est.kl_sum, kl_sum) and est.steps.item() == 2
    est.end_epoch(update_tau1=False, epoch_steps=3)
    assert est.tau1.item() == 2.0 and est.steps.item() == 0 and est.kl_sum.abs().sum() == 0
    est.end_epoch(update_tau1=True, epoch_steps=3)  # an epoch that added nothing: tau1 stays
    assert est.tau1.item() == 2.0
    est.step(probs, 0.95)
    expected = tau1_from_kl(symmetric_kl(est.u_py.unsqueeze(0), anchors(pi)) / 4, 0.0, 2.0)  # / the epoch's steps
    est.end_epoch(update_tau1=True, epoch_steps=4)
    assert est.tau1.item() == pytest.approx(expected.item(), rel=1e-6)


def acr_released_estimate(batches, py_con, eval_step: int, est_epoch: int, ema_u: float, threshold: float,
                          tau1: float = 2.0, labeled=None) -> list:
    """The lines of ACR's released train.py (Wei & Gan) that estimate tau1, transcribed in
    plain torch: ``probs_b`` stands for ``softmax(logits_u_w_b / T)``; ``labeled`` (per batch,
    bool per image; None: none) marks the labeled images of the unlabeled stream, which ACR's
    dataset gives the target -2 (``u_real``, lines 495-497: ``mask_l = (u_real != -2)``, and
    line 560: ``now_mask[targets_u_b] += mask_l*mask_b``). Returns, per step, the tau1 the step
    used (``args.adjustment_l1``'s exponent), ``u_py`` and ``count_KL`` after the step."""
    num_classes = py_con.numel()
    py_uni = torch.ones(num_classes) / num_classes
    py_rev = torch.flip(py_con, dims=[0])
    taumin, taumax = 0, tau1
    tau = tau1
    u_py = torch.ones(num_classes) / num_classes
    KL_div = torch.nn.KLDivLoss(reduction="sum")
    count_KL = torch.zeros(3)
    trace = []
    for epoch in range(len(batches) // eval_step):
        if epoch > est_epoch:
            count_KL = count_KL / eval_step
            KL_softmax = (torch.exp(count_KL[0])) / (torch.exp(count_KL[0]) + torch.exp(count_KL[1]) + torch.exp(count_KL[2]))
            t = taumin + (taumax - taumin) * KL_softmax
            if not math.isnan(t):
                tau = float(t)
        count_KL = torch.zeros(3)
        for batch_idx in range(eval_step):
            probs_b = batches[epoch * eval_step + batch_idx]
            max_probs_b, targets_u_b = torch.max(probs_b, dim=-1)
            mask_b = max_probs_b.ge(threshold).float()
            u_real = torch.zeros_like(targets_u_b)
            if labeled is not None:
                u_real[labeled[epoch * eval_step + batch_idx]] = -2
            mask_l = (u_real != -2)
            now_mask = torch.zeros(num_classes)
            if epoch > est_epoch:
                now_mask[targets_u_b] += mask_l * mask_b
                if now_mask.sum() > 0:
                    now_mask = now_mask / now_mask.sum()
                    u_py = ema_u * u_py + (1 - ema_u) * now_mask
                    KL_con = 0.5 * KL_div(py_con.log(), u_py) + 0.5 * KL_div(u_py.log(), py_con)
                    KL_uni = 0.5 * KL_div(py_uni.log(), u_py) + 0.5 * KL_div(u_py.log(), py_uni)
                    KL_rev = 0.5 * KL_div(py_rev.log(), u_py) + 0.5 * KL_div(u_py.log(), py_rev)
                    count_KL[0] = count_KL[0] + KL_con
                    count_KL[1] = count_KL[1] + KL_uni
                    count_KL[2] = count_KL[2] + KL_rev
            trace.append({"tau1": tau, "u_py": u_py.clone(), "kl_sum": count_KL.clone()})
    return trace


@pytest.mark.parametrize("with_labeled", [False, True])
def test_estimate_equals_acr_released_code_over_epochs(with_labeled):
    """The same batches through ACR's released lines and through our hook and estimator,
    as the training loop calls them: equal ``u_py``, KL sums and tau1 at every step, except
    the one deliberate deviation (docs/deviations.md): in the first estimating epoch ACR
    averages empty sums into tau1 = 2/3, ours keeps 2 until an epoch has added to them.
    ``with_labeled``: a stream in which about a third of the images are labeled ones, left
    out of the estimate by ACR's ``mask_l`` and by ours (``from_lb``, ``acr_mask_l``);
    counting them gives another ``u_py``."""
    eval_step, est_epoch, epochs, C = 5, 1, 6, 10
    counts = torch.tensor([int(1500 * 0.01 ** (c / 9)) for c in range(C)], dtype=torch.float)
    pi = counts / counts.sum()
    g = torch.Generator().manual_seed(0)
    batches = []
    for i in range(epochs * eval_step):
        logits = torch.randn(16, C, generator=g) * 2.5
        logits[:, 9 - i % 4] += 3.0  # some confident samples, mostly on labeled-tail classes
        batches.append(torch.softmax(logits / (8.0 if i % 7 == 3 else 1.0), dim=-1))  # some steps with none
    labeled = [torch.rand(16, generator=g) < 0.35 for _ in batches] if with_labeled else None
    ref = acr_released_estimate(batches, pi, eval_step, est_epoch, ema_u=0.99, threshold=0.95, labeled=labeled)
    if with_labeled:  # the labeled images matter: counting them gives another estimate
        counted = acr_released_estimate(batches, pi, eval_step, est_epoch, ema_u=0.99, threshold=0.95)
        assert not torch.allclose(counted[-1]["u_py"], ref[-1]["u_py"], atol=1e-4)

    # the hook reads its settings from its constructor, only it, out_dict and the state from the algorithm
    alg = SimpleNamespace(it=0, tau1_estimator=Tau1Estimator(pi, 2.0, 0.0, 2.0, 0.99, "acr_code"))
    hook, ours = Tau1Hook(p_cutoff=0.95, est_epoch=est_epoch, adaptive=True, epoch_length=eval_step), []
    for it, probs in enumerate(batches):  # as semi_usb.resume.train calls the hooks
        alg.it = it
        hook.before_train_step(alg)
        tau_used = alg.tau1_estimator.tau1.item()
        alg.out_dict = {"ulb": {"probs_bal_w": probs, "from_lb": None if labeled is None else labeled[it]}}
        hook.after_train_step(alg)
        ours.append({"tau1": tau_used, "u_py": alg.tau1_estimator.u_py.clone(), "kl_sum": alg.tau1_estimator.kl_sum.clone()})

    first = (est_epoch + 1) * eval_step  # first estimating step
    vectors = [confident_class_vector(b, 0.95, k) for b in batches[first:] for k in ("acr_code", "presence")]
    assert any(v.sum() == 0 for v in vectors[0::2]) and any(not torch.equal(a, b) for a, b in
                                                            zip(vectors[0::2], vectors[1::2]))  # the batches matter
    assert not torch.equal(ref[-1]["u_py"], ref[first - 1]["u_py"]) and len({round(r["tau1"], 6) for r in ref}) >= 4
    for it, (r, o) in enumerate(zip(ref, ours)):
        assert torch.allclose(o["u_py"], r["u_py"], rtol=0, atol=1e-7), it
        assert torch.allclose(o["kl_sum"], r["kl_sum"], rtol=1e-6, atol=1e-7), it
        epoch = it // eval_step
        if epoch > est_epoch and (epoch - 1 <= est_epoch or ref[epoch * eval_step - 1]["kl_sum"].abs().sum() == 0):
            # ACR: tau1 from the empty sums of the epoch before; ours keeps the epoch before's
            assert r["tau1"] == pytest.approx(2 / 3) and o["tau1"] == ours[epoch * eval_step - 1]["tau1"], it
        else:
            assert o["tau1"] == pytest.approx(r["tau1"], rel=1e-6), it
    assert ref[first]["tau1"] == pytest.approx(2 / 3) and ours[first]["tau1"] == 2.0


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


def _python_class_vector(probs, threshold, kind):
    """The three semantics, sample by sample (docs/method.md, "ACR", adaptive tau1)."""
    h = [0.0] * probs.shape[1]
    for conf, c in zip(*probs.max(-1)):
        confident = float(conf >= threshold)
        h[c] = {"acr_code": confident, "presence": max(h[c], confident), "counts": h[c] + confident}[kind]
    return torch.tensor(h)


def _separating_thresholds(probs) -> list:
    """The thresholds (among the batch's confidences) at which the three class vectors differ."""
    return [t for t in sorted(set(probs.max(-1).values.tolist()))
            if len({tuple((v / v.sum()).tolist()) for v in (_python_class_vector(probs, t, k) for k in CLASS_VECTORS)
                    if v.sum() > 0}) == 3]


def test_acr_class_vector_reaches_the_estimate_on_digits():
    """On a real digits batch, with a threshold at which the three semantics differ, the
    estimate after one step is ``0.99 u + 0.01 h / sum(h)`` with ``h`` of the configured
    semantics (and of no other). The model is trained first (at initialisation the balanced
    head predicts two classes only), then copied into each algorithm. Whether a batch
    separates the semantics depends on the model's predictions, which differ between CPUs
    (after 21 steps one CPU's batch did and another's did not): so it trains from 100 steps
    on until the probed batch separates them, probing every 10 steps, at most 400."""
    flags = {"acr_est_epoch": 0, "num_train_iter": 200, "epoch": 2}  # iteration 100 is in epoch 1: estimating
    trained = build("acr", **flags)
    steps, found = 0, []
    while not found and steps < 400:
        for lb, ulb in zip(trained.loader_dict["train_lb"], trained.loader_dict["train_ulb"]):
            out, _ = trained.train_step(**trained.process_batch(**lb, **ulb))
            out["loss"].backward()
            trained.optimizer.step()
            trained.optimizer.zero_grad()
            steps += 1
            if steps >= 100 and steps % 10 == 0:
                probs = trained.train_step(**batch(trained))[0]["ulb"]["probs_bal_w"].detach()
                found = _separating_thresholds(probs)
                if found or steps >= 400:
                    break
    assert found, "no threshold separates the three class vectors on the probed batch in 400 steps"
    threshold = found[len(found) // 2]
    u = {}
    for kind in CLASS_VECTORS:
        alg = build("acr", acr_class_vector=kind, p_cutoff=threshold, **flags)  # the hooks are built with it
        assert alg.tau1_estimator.kind == kind and alg.tau1_estimator.momentum == 0.99  # the new default
        alg.model.load_state_dict(trained.model.state_dict())
        alg.it = 100
        alg.out_dict, alg.log_dict = alg.train_step(**batch(alg))
        assert torch.equal(alg.out_dict["ulb"]["probs_bal_w"], probs)
        alg.hooks_dict["Tau1Hook"].after_train_step(alg)
        h = _python_class_vector(probs, threshold, kind)
        assert torch.allclose(alg.tau1_estimator.u_py, 0.99 * torch.full((10,), 0.1) + 0.01 * h / h.sum()), kind
        u[kind] = alg.tau1_estimator.u_py
    assert not torch.allclose(u["acr_code"], u["presence"]) and not torch.allclose(u["presence"], u["counts"])
    assert not torch.allclose(u["acr_code"], u["counts"])


@pytest.mark.parametrize("flag,value,message", [
    ("acr_hist_counts", "False", "key 'acr_hist_counts' in the command line was replaced by acr_class_vector"),
    ("acr_class_vector", "histogram", "key 'acr_class_vector' in the command line: expected one of acr_code, "
                                      "presence, counts, got 'histogram'"),
])
def test_old_and_wrong_class_vector_keys_are_one_line_errors(tmp_path, capsys, flag, value, message):
    from conftest import digits_flags
    from semi_usb.cli import main

    assert main(["train", "--algorithm", "acr", f"--{flag}", value] + digits_flags(tmp_path)) == 2
    err = [e for e in capsys.readouterr().err.strip().splitlines() if not e.startswith("note:")]
    assert len(err) == 1 and message in err[0], err
    assert not os.listdir(tmp_path)


def test_acr_evaluates_the_balanced_head_of_the_ema_model():
    alg = build("acr")
    assert (ema_predictions(alg, nine=[alg.model.module.balanced_classifier]) == 9).all()  # balanced head says 9


@pytest.mark.parametrize("method", ["acr", "semi"])
def test_another_base_is_refused_when_built_directly(method):
    """USB's own train.py does not go through semi_usb.config: the algorithm refuses a base
    whose step it would replace (FlexMatch's masking would silently be dropped)."""
    from semi_usb.config import build_args
    from semi_usb.runner import build_algorithm

    args = build_args(method, QUICKSTART, {"save_dir": "/nonexistent"})
    args.algorithm = "flexmatch"
    with pytest.raises(ValueError, match=rf"^{method} runs on fixmatch only \(got flexmatch\)$"):
        build_algorithm(args)


def test_labeled_images_of_the_unlabeled_set_leave_the_estimate_on_digits():
    """``include_lb_to_ulb: True`` on digits: the images flagged ``from_lb`` are the labeled
    images at the head of the unlabeled set, and with ``acr_mask_l`` (ACR's default, as
    released) the estimate after one step counts the others only; ``acr_mask_l: False``
    counts them all. SeMi's default is False (its script comments ACR's ``mask_l`` out)."""
    flags = {"acr_est_epoch": 0, "num_train_iter": 200, "epoch": 2, "include_lb_to_ulb": True,
             "acr_class_vector": "counts", "p_cutoff": 0.0}  # every image confident (the hooks are built with it)
    u = {}
    for mask_l in (True, False):
        alg = build("acr", acr_mask_l=mask_l, **flags)
        lb, ulb = alg.dataset_dict["train_lb"], alg.dataset_dict["train_ulb"]
        n_lb = len(lb)
        assert len(ulb) > n_lb and (ulb.data[:n_lb] == lb.data).all()  # USB puts the labeled images first
        torch.manual_seed(0)  # a balanced head that predicts several classes (at initialisation: one)
        torch.nn.init.normal_(unwrap(alg.model).balanced_classifier.weight, std=2.0)
        b = batch(alg)
        alg.it = 100  # in an estimating epoch
        alg.out_dict, alg.log_dict = alg.train_step(**b)
        from_lb = alg.out_dict["ulb"]["from_lb"]
        if mask_l:
            assert torch.equal(from_lb, b["idx_ulb"] < n_lb) and 0 < from_lb.sum() < from_lb.numel()
        else:
            assert from_lb is None
        alg.hooks_dict["Tau1Hook"].after_train_step(alg)
        pred = alg.out_dict["ulb"]["probs_bal_w"].argmax(-1)
        keep = ~from_lb if mask_l else torch.ones_like(pred, dtype=torch.bool)
        h = torch.bincount(pred[keep], minlength=10).float()
        assert torch.allclose(alg.tau1_estimator.u_py, 0.99 * torch.full((10,), 0.1) + 0.01 * h / h.sum())
        u[mask_l] = alg.tau1_estimator.u_py
    assert not torch.allclose(u[True], u[False])
    assert build("semi", include_lb_to_ulb=True).lb_in_ulb == 0 and build("acr").lb_in_ulb == 0
