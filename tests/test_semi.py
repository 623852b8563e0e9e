"""SeMi as an algorithm (docs/method.md, the SeMi sections) on a real digits batch: its frame
is ACR's, its step uses the same step's prototype label and weights, its state (bank,
pseudo-label histogram, Embedding Align centre) goes through checkpoints under the keys it
always had, and every part logs. The formulas are tested by module: test_memory_bank.py,
test_plce.py, test_hard_examples.py."""
from __future__ import annotations

import math
import os

import torch

from conftest import build_on_digits as build
from conftest import digits_batch as batch
from conftest import digits_flags
from semi_usb.cli import main


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
    from semi_usb.imb_algorithms.semi.plce import semantic_label

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
    assert torch.equal(alg.ealign_center.center, other.ealign_center.center)
    assert alg.bank.fill().sum() > 0 and alg.ealign_center.center.abs().sum() > 0


def test_semi_logs_all_components(tmp_path):
    assert main(["train", "--algorithm", "semi"] + digits_flags(tmp_path, iters=8, semi_warmup_iter=2)) == 0
    log = open(next(os.path.join(r, "log.txt") for r, _, f in os.walk(tmp_path) if "log.txt" in f)).read()
    for key in ("train/unsup_loss", "train/bal_sup_loss", "train/bal_unsup_loss", "train/ealign_loss",
                "train/oheml_weight", "train/plce_lambda", "train/bank_fill/0", "train/util_ratio"):
        assert key in log, key


def test_step_values_travel_in_the_step_output_not_on_the_algorithm():
    """The Embedding Align teacher reaches the centre's hook through ``out_dict['ulb']``; the
    PLCE lambda is logged from the same step's histogram; neither is kept on the algorithm."""
    alg = build("semi", semi_warmup_iter=0, num_log_iter=1)
    alg.pl_hist.counts += torch.arange(1, 11)
    alg.pl_hist.refresh()
    alg.it = 50
    alg.out_dict, alg.log_dict = alg.train_step(**batch(alg))
    teacher = alg.out_dict["ulb"]["ealign_teacher"]
    assert teacher.shape == alg.out_dict["ulb"]["feat_w"].shape and not teacher.requires_grad
    expect = 0.9 * alg.ealign_center.center + 0.1 * teacher.mean(0)
    alg.hooks_dict["EmbeddingCenterHook"].after_train_step(alg)
    assert torch.allclose(alg.ealign_center.center, expect)
    lam = 0.4 * (50 / 100) * torch.arange(1, 11) / 55  # alpha * progress * pi_hat
    assert abs(alg.log_dict["train/plce_lambda"].item() - lam.mean().item()) < 1e-7
    assert not hasattr(alg, "ealign_teacher") and not hasattr(alg, "plce_lambda")
    before = build("semi", semi_warmup_iter=5)  # Embedding Align not started: no teacher
    out, _ = before.train_step(**batch(before))
    assert "ealign_teacher" not in out["ulb"]


def test_checkpoint_keys_are_the_ones_of_earlier_versions(tmp_path):
    """``acr_tau1_state`` and ``semi_state/{bank, pl_hist, ealign_center}`` (the centre as a
    bare tensor), so that checkpoints written before the state protocol still load."""
    alg = build("semi", semi_warmup_iter=0)
    alg.semi_usb_done, alg.semi_usb_epoch_step, alg.epoch = 1, 1, 0
    save = alg.get_save_dict()
    assert set(save["semi_state"]) == {"bank", "pl_hist", "ealign_center"}
    assert isinstance(save["semi_state"]["ealign_center"], torch.Tensor)
    assert set(save["acr_tau1_state"]) == {"anchors", "u_py", "kl_sum", "steps", "tau1"}
    assert set(save["semi_state"]["bank"]) == {"feats", "conf", "filled", "fresh"}
    assert set(save["semi_state"]["pl_hist"]) == {"counts", "pi_hat"}


def test_plce_weights_inverse_frequency_on_digits():
    """``semi_plce_weights: inv_freq``: pi_hat is 1/counts renormalised (0 for a class without
    a count), and the step's lambda uses it; ``freq`` (the default) is counts / total."""
    counts = torch.tensor([4, 1, 0, 2, 1, 1, 1, 1, 1, 1])
    inv = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros(10))
    for kind, expect in (("freq", counts / counts.sum()), ("inv_freq", inv / inv.sum())):
        alg = build("semi", semi_warmup_iter=0, semi_plce_weights=kind, num_log_iter=1)
        alg.pl_hist.counts += counts
        alg.pl_hist.refresh()
        assert torch.allclose(alg.pl_hist.pi_hat, expect) and alg.pl_hist.pi_hat[2] == 0, kind
        alg.it = 50
        _, log = alg.train_step(**batch(alg))
        assert abs(log["train/plce_lambda"].item() - (0.4 * 0.5 * expect).mean().item()) < 1e-7


def test_readme_readings_tau1_2_and_bank_512_on_digits():
    """The README command's readings: ``acr_tau1: 2`` gives the standard branch logit-adjusted
    pseudo-labels (before the warm-up, so PLCE does not mix), ``semi_bank_size: 512`` 512 slots."""
    alg = build("semi", acr_tau1=2.0, semi_bank_size=512)
    b = batch(alg)
    out, _ = alg.train_step(**b)
    with torch.no_grad():
        z = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], b["x_ulb_s"]]))["logits"][b["x_lb"].shape[0]:].chunk(2)[0]
    expect = torch.softmax(z - 2.0 * alg.log_pi, -1)
    assert torch.allclose(out["ulb"]["probs"], expect, atol=1e-6)
    assert not torch.allclose(out["ulb"]["probs"], torch.softmax(z, -1), atol=1e-3)
    assert alg.bank.state_dict()["conf"].shape == (10, 512)


def test_semi_defaults_in_help(capsys):
    """Warm-up 3000 (the authors' 6 epochs of 500), PLCE weights, ACR's class vector and
    momentum: all in ``semilearn train --algorithm semi --help``."""
    assert main(["train", "--algorithm", "semi", "--help"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()
             if line.strip().startswith("--")and len(line.split()) > 1}
    assert lines["--semi_warmup_iter"] == "3000" and lines["--semi_plce_weights"] == "'freq'"
    assert lines["--acr_class_vector"] == "'acr_code'" and lines["--acr_u_momentum"] == "0.99"
    assert "--acr_hist_counts" not in lines
