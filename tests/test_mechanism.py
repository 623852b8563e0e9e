"""What SeMi's parts do (docs/method.md, "Mechanism metrics" and "SeMi: PLCE", its bound):
the PLCE bound on random tensors (a formula test), the metrics of a real digits step against
an independent computation, and their way into log.txt, TensorBoard and summary.json."""
from __future__ import annotations

import glob
import json
import math
import os

import torch
import torch.nn.functional as F

from conftest import build_on_digits as build
from conftest import digits_batch as batch
from conftest import digits_flags, only_run
from semi_usb.cli import main
from semi_usb.imb_algorithms.acr.balanced_head import or_mask
from semi_usb.imb_algorithms.mechanism import MECHANISM_KEYS, MechanismLog
from semi_usb.imb_algorithms.semi.mechanism import plce_effect
from semi_usb.imb_algorithms.semi.plce import enhance, mix_weights


def plce_draw(n: int, num_classes: int, alpha: float, seed: int, hard: bool):
    """Random pseudo-labels ``p``, semantic labels ``q`` and weights ``lambda = alpha * progress
    * pi_hat``. ``hard``: the draws that come closest to the bound (the runner-up class ``b``
    near ``1 - p_a``, ``q`` one-hot on it, ``pi_hat`` concentrated on it, progress near 1)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, num_classes, generator=g) * torch.rand(n, 1, generator=g) * 8, -1)
    q = torch.softmax(torch.randn(n, num_classes, generator=g) * 10, -1)
    torch.manual_seed(seed)
    pi_hat = torch.distributions.Dirichlet(torch.full((num_classes,), 0.3)).sample()
    progress = float(torch.rand((), generator=g))
    if hard:
        top2 = p.topk(2, dim=-1).indices
        a, b = top2[:, 0], top2[:, 1]
        p_a = 0.5 + 0.25 * torch.rand(n, generator=g)
        p = torch.full((n, num_classes), 1e-6)
        p[torch.arange(n), a], p[torch.arange(n), b] = p_a, 1 - p_a - 1e-6 * (num_classes - 2)
        q = F.one_hot(b, num_classes).float()
        pi_hat = torch.full((num_classes,), 0.02 / (num_classes - 1))
        pi_hat[b[0]] = 0.98
        p, q = p[b == b[0]], q[b == b[0]]  # the samples whose runner-up carries the weight
        progress = 0.999
    return p, q, mix_weights(pi_hat / pi_hat.sum(), alpha, progress)


def masked_changes(p, q, lam, tau):
    p_tilde = enhance(p, q, lam)
    mask = or_mask(p_tilde, p, tau)  # SeMi's OR mask, tau1 = 0: the raw label is p itself
    return ((p_tilde.argmax(-1) != p.argmax(-1)) & (mask > 0)).sum(), (mask > 0).sum()


def test_plce_never_changes_a_masked_class_above_the_bound():
    """docs/method.md, "SeMi: PLCE", bound: with ``Lambda = sum_c lambda_c``, no sample in
    the OR mask at a threshold ``tau > (1 + Lambda) / 2`` has another class after PLCE."""
    for seed in range(40):
        for hard in (False, True):
            p, q, lam = plce_draw(4000, 10, 0.4, seed, hard)
            bound = (1 + float(lam.sum())) / 2
            for tau in (bound + 1e-4, 0.95):
                changed, masked = masked_changes(p, q, lam, tau)
                assert changed == 0, (seed, hard, tau)
                assert masked > 0 or not hard or tau == 0.95  # the hard draws reach the mask above the bound


def test_plce_changes_masked_classes_below_the_bound():
    """Below the bound the same draws do change classes in the mask: the bound is what keeps
    them, not the draws; and the samples masked by their raw confidence keep their class
    from ``tau >= 1 / (2 - Lambda)`` on (those that change entered through ``p~`` alone)."""
    p, q, lam = plce_draw(4000, 10, 0.4, 0, hard=True)
    big_lambda = float(lam.sum())
    assert abs(big_lambda - 0.4 * 0.999) < 1e-5
    tau = (1 + big_lambda) / 2 - 0.05
    changed, masked = masked_changes(p, q, lam, tau)
    assert changed > 0 and masked > changed
    p_tilde = enhance(p, q, lam)
    raw = p.amax(-1) >= 1 / (2 - big_lambda)
    assert (raw & (p_tilde.argmax(-1) != p.argmax(-1))).sum() == 0


def test_plce_effect_counts_by_hand():
    p = torch.tensor([[0.6, 0.4, 0.0], [0.9, 0.1, 0.0], [0.3, 0.3, 0.4], [0.5, 0.2, 0.3]])
    p_tilde = torch.tensor([[0.3, 0.7, 0.0], [0.9, 0.1, 0.0], [0.1, 0.1, 0.8], [0.5, 0.2, 0.3]])
    mask_raw, mask = torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0, 0.0])
    out = plce_effect(p, p_tilde, mask_raw, mask, torch.tensor([0.1, 0.3, 0.0]))
    assert abs(out["plce_changed"].item() - 1 / 3) < 1e-7 and out["plce_added"].item() == 2
    assert abs(out["plce_lambda_max"].item() - 0.3) < 1e-7


def test_mechanism_metrics_of_a_digits_step():
    """A logged step after the warm-up, the bank and pi_hat filled: every metric is a device
    tensor and equals its definition computed here from the step's own outputs."""
    alg = build("semi", semi_warmup_iter=0, p_cutoff=0.145, num_log_iter=1)
    b = batch(alg)
    alg.out_dict, alg.log_dict = alg.train_step(**b)
    alg.hooks_dict["MemoryBankHook"].after_train_step(alg)
    alg.pl_hist.counts += torch.arange(1, 11)
    alg.pl_hist.refresh()
    alg.it = 50
    out, log = alg.train_step(**b)
    for key in MECHANISM_KEYS:
        assert isinstance(log["train/" + key], torch.Tensor) and log["train/" + key].dim() == 0, key
    ulb = out["ulb"]
    with torch.no_grad():
        o = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], b["x_ulb_s"]]))
    n = b["x_lb"].shape[0]
    z_w, z_s = o["logits"][n:].chunk(2)
    p, mask, w = torch.softmax(z_w, -1), ulb["mask"], ulb["weight"]
    raw = (p.amax(-1) >= 0.145).float()
    changed = ((ulb["probs"].argmax(-1) != p.argmax(-1)) & (mask > 0)).sum() / (mask > 0).sum()
    assert 0 < mask.sum() < mask.numel()
    assert torch.allclose(log["train/plce_changed"], changed) and log["train/plce_added"] == ((mask > 0) & (raw == 0)).sum()
    assert torch.allclose(log["train/plce_lambda_max"], 0.4 * 0.5 * torch.tensor(10 / 55))
    ce = F.cross_entropy(z_s, ulb["probs"].argmax(-1), reduction="none") * mask
    assert torch.allclose(log["train/oheml_scale"], (ce * w).sum() / ce.sum(), atol=1e-5)
    on = w[mask > 0]
    assert torch.allclose(log["train/oheml_weight_mean"], on.mean(), atol=1e-6)
    assert torch.allclose(log["train/oheml_weight_std"], on.std(unbiased=False), atol=1e-6)
    assert torch.allclose(log["train/ealign_share"], log["train/ealign_loss"] / log["train/total_loss"])
    assert torch.allclose(log["train/ealign_frac"], 1 - mask.mean())
    fill = alg.bank.fill()
    assert torch.allclose(log["train/bank_fill"], fill.sum() / (10 * 128)) and fill.sum() > 0
    assert log["train/tau1"] == 0.0


def test_mechanism_log_means_and_checkpoint_form():
    m = MechanismLog(from_it=2)
    for it, v in enumerate((5.0, 7.0, 1.0, 3.0)):
        m.add(it, {"train/oheml_scale": torch.tensor(v), "train/unsup_loss": torch.tensor(9.0)})
    other = MechanismLog()
    other.load_state_dict(m.state_dict())
    assert other.summary() == {"from_it": 2, "logged_steps": 2, "mean": {"oheml_scale": 2.0}, "last": {"oheml_scale": 3.0}}


def test_mechanism_metrics_reach_log_tensorboard_and_summary(tmp_path):
    """A short SeMi run past its warm-up: the metrics in log.txt, in TensorBoard and in
    summary.json's ``mechanism`` section (means from the end of the warm-up); ACR's summary
    holds its tau1."""
    flags = dict(iters=8, semi_warmup_iter=2, p_cutoff=0.145, use_tensorboard="True")
    assert main(["train", "--algorithm", "semi"] + digits_flags(tmp_path / "semi", **flags)) == 0
    run = only_run(tmp_path / "semi")
    log = open(os.path.join(run, "log.txt")).read()
    full = json.load(open(os.path.join(run, "summary.json")))
    summary = full["mechanism"]
    # the declared defaults of SeMi's own keys, not the values this run used
    defaults = full["method_defaults"]
    assert defaults["p_cutoff"] == 0.95 and defaults["semi_warmup_iter"] == 3000 and defaults["semi_use_bank"] is True
    assert "num_train_iter" not in defaults and "seed" not in defaults  # trainer keys are not the method's
    assert summary["from_it"] == 2 and summary["logged_steps"] == 3  # iterations 4, 6 and 8
    for key in MECHANISM_KEYS:
        assert f"train/{key}:" in log, key
        assert math.isfinite(summary["mean"][key]) and math.isfinite(summary["last"][key]), key
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.dirname(glob.glob(os.path.join(run, "tensorboard", "**", "events.*"),
                                                        recursive=True)[0]))
    events.Reload()
    assert {"train/plce_changed", "train/oheml_scale", "train/ealign_share", "train/bank_fill"} <= set(
        events.Tags()["scalars"])
    assert main(["train", "--algorithm", "acr"] + digits_flags(tmp_path / "acr", iters=4)) == 0
    acr = json.load(open(os.path.join(only_run(tmp_path / "acr"), "summary.json")))["mechanism"]
    assert set(acr["mean"]) == {"tau1"} and acr["logged_steps"] == 2


def test_mechanism_log_goes_through_the_checkpoint(tmp_path):
    """A resumed run keeps its running means (``mechanism_log`` in the checkpoint); a
    checkpoint without it (earlier versions) loads, with empty means."""
    alg = build("semi", semi_warmup_iter=0)
    alg.semi_usb_done, alg.semi_usb_epoch_step, alg.epoch = 1, 1, 0
    alg.mechanism.add(5, {"train/oheml_scale": torch.tensor(0.3), "train/tau1": torch.tensor(0.0)})
    alg.save_model("ckpt.pth", str(tmp_path))
    other = build("semi", semi_warmup_iter=0)
    other.load_model(str(tmp_path / "ckpt.pth"))
    assert other.mechanism.summary() == alg.mechanism.summary() and other.mechanism.counts == {"oheml_scale": 1,
                                                                                                "tau1": 1}
    state = torch.load(tmp_path / "ckpt.pth", weights_only=False)
    del state["mechanism_log"]
    torch.save(state, tmp_path / "old.pth")
    old = build("semi", semi_warmup_iter=0)
    old.load_model(str(tmp_path / "old.pth"))
    assert old.mechanism.summary()["logged_steps"] == 0
