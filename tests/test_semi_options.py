"""SeMi's options on a real digits batch, each tested so that the test fails if the option is
ignored: ``semi_feature_pairing: released`` against a transcription of the released
``train_semi.py`` lines (pywin/SeMi, ``train`` around lines 541-550 and 630-640) and
``semi_ulb_std_weight`` (docs/method.md, "SeMi: options")."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import build_on_digits as build
from conftest import digits_batch as batch
from semi_usb.imb_algorithms.semi.memory_bank import ConfidenceDecayMemoryBank
from semi_usb.imb_algorithms.semi.plce import semantic_label


def released_interleave(x, size):
    """train_semi.py's ``interleave`` (line 97), as released."""
    s = list(x.shape)
    return x.reshape([-1, size] + s[1:]).transpose(0, 1).reshape([-1] + s[1:])


def released_slices(model, b, mu: int = 1):
    """The released lines that take the features from the interleaved forward:
    ``inputs = interleave(cat(x, u_w, u_s, u_s1), 3 mu + 1)``, ``logits_feat = model(inputs)``,
    ``feat_u_w = logits_feat[B:2B]``, ``feat_u_s = [2B:3B]``, ``feat_u_s1 = [3B:4B]``,
    ``feat_u_ss = [2B:4B]`` with ``B = batch_size`` (the labeled batch)."""
    batch_size = b["x_lb"].shape[0]
    inputs = released_interleave(torch.cat((b["x_lb"], b["x_ulb_w"], b["x_ulb_s"], b["x_ulb_s_1"])), 3 * mu + 1)
    with torch.no_grad():
        logits_feat = model(inputs)["feat"]
    return {"feat_u_w": logits_feat[batch_size:2 * batch_size], "feat_u_s": logits_feat[2 * batch_size:3 * batch_size],
            "feat_u_s1": logits_feat[3 * batch_size:4 * batch_size],
            "feat_u_ss": logits_feat[2 * batch_size:4 * batch_size]}


def released_lcons(feat_u_w, feat_u_s, feat_u_s1, mask_ss_t, qbar, proto_t=0.09, conswt=0.15):
    """The released Embedding Align lines (``q_u_w = cat(feat_u_w, feat_u_w)``, ...,
    ``Lcons = (sum(-q_out * log_softmax(q_u_s / proto_t)) * inv_mask).mean()``) times ``conswt``."""
    q_u_w = torch.cat([feat_u_w, feat_u_w], dim=0)
    q_u_s = torch.cat([feat_u_s, feat_u_s1], dim=0)
    q_out = F.softmax((q_u_w.detach() - qbar) / (proto_t / 5), dim=1)
    inv_mask = torch.cat([mask_ss_t, mask_ss_t]).bool().logical_not().float()
    return conswt * (torch.sum(-q_out * F.log_softmax(q_u_s / proto_t, dim=1), dim=1) * inv_mask).mean()


def test_released_feature_pairing_is_the_released_scripts_slicing():
    """``semi_feature_pairing: released`` with the script's batch (``uratio 1``, two strong
    views): the bank's candidates, the features of ``q`` and of Embedding Align are the
    script's slices of its interleaved forward, and Embedding Align's loss is its ``conswt *
    Lcons``. Mutating one slice (an offset, the interleave's width, ``feat_u_ss`` for
    ``feat_u_s``) breaks an assertion; ``aligned`` (the default) gives other features."""
    flags = dict(uratio=1, num_strong_views=2, semi_warmup_iter=0, p_cutoff=0.145, semi_plce_alpha=0.4)
    alg = build("semi", semi_feature_pairing="released", **flags)
    b = batch(alg)
    assert b["x_ulb_w"].shape[0] == b["x_lb"].shape[0] and "x_ulb_s_1" in b  # the script's mu = 1
    # a first step fills the bank and pi_hat, so that q and lambda act in the second
    alg.out_dict, alg.log_dict = alg.train_step(**b)
    alg.hooks_dict["MemoryBankHook"].after_train_step(alg)
    alg.pl_hist.counts += 1
    alg.pl_hist.refresh()
    alg.it = 50
    protos, has = alg.bank.prototypes()
    out, log = alg.train_step(**b)
    ulb = out["ulb"]
    ref = released_slices(alg.model, b)
    n = b["x_lb"].shape[0]
    # the features paired with each image: weak [B, 2B), both strong [2B, 4B) of the interleaved output
    assert torch.allclose(ulb["feat_w"], ref["feat_u_w"], atol=1e-5)
    assert torch.allclose(ulb["feat_s"], ref["feat_u_ss"], atol=1e-5)
    # q from feat_u_s (the first strong slice): p~ = (1 - lambda) p + lambda q
    with torch.no_grad():
        z = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], b["x_ulb_s"], b["x_ulb_s_1"]]))["logits"][n:2 * n]
    lam = 0.4 * (50 / 100) * alg.pl_hist.pi_hat
    q = semantic_label(ref["feat_u_s"], protos, has, 0.1)
    assert torch.allclose(ulb["probs"], (1 - lam) * torch.softmax(z, -1) + lam * q, atol=1e-5)
    # Embedding Align: the script's Lcons on its slices, the centre still zero (qbar)
    lcons = released_lcons(ref["feat_u_w"], ref["feat_u_s"], ref["feat_u_s1"], ulb["mask"], torch.zeros(1, 1))
    assert 0 < ulb["mask"].mean() < 1 and lcons > 0
    assert torch.allclose(log["train/ealign_loss"], lcons, rtol=1e-4)
    # the bank's push: the script's memory.push(feat_u_ss, pseudo_label_twice, u_confidences, mask_twice)
    alg.bank = ConfidenceDecayMemoryBank(10, ulb["feat_s"].shape[1], 128)
    alg.out_dict = out
    alg.hooks_dict["MemoryBankHook"].after_train_step(alg)
    expect = ConfidenceDecayMemoryBank(10, ulb["feat_s"].shape[1], 128)
    twice = lambda t: torch.cat([t, t])  # noqa: E731
    expect.push(ref["feat_u_ss"], twice(ulb["probs"].argmax(-1)), twice(ulb["probs"].max(-1).values), twice(ulb["mask"]))
    assert alg.bank.fill().sum() > 0 and torch.allclose(alg.bank.feats, expect.feats, atol=1e-5)
    # the default pairs each image's own views: other features
    aligned = build("semi", **flags)
    out_a, _ = aligned.train_step(**batch(aligned))
    assert not torch.allclose(out_a["ulb"]["feat_w"], ref["feat_u_w"], atol=1e-3)


def test_released_pairing_needs_an_integer_unlabeled_ratio():
    from semi_usb.imb_algorithms.semi.pairing import released_pairing

    w, s = released_pairing(torch.zeros(4, 3), torch.ones(8, 3), torch.full((8, 3), 2.0))
    assert w.shape == (8, 3) and s.shape == (8, 3)
    try:
        released_pairing(torch.zeros(3, 3), torch.ones(4, 3), torch.ones(4, 3))
    except ValueError as exc:
        assert "multiple" in str(exc)
    else:
        raise AssertionError("11 rows over 3 labeled rows must be refused")


def test_ulb_std_weight_scales_the_standard_branch_alone():
    """``semi_ulb_std_weight: 0.3``: the total loss is the default's minus ``0.7 lambda_u L_u``
    (the standard branch's), every logged term unchanged; before the warm-up it is 1."""
    flags = dict(semi_warmup_iter=0, p_cutoff=0.145, semi_use_oheml=False)
    one, scaled = build("semi", **flags), build("semi", semi_ulb_std_weight=0.3, **flags)
    out_1, log_1 = one.train_step(**batch(one))
    out_s, log_s = scaled.train_step(**batch(scaled))
    unsup = log_1["train/unsup_loss"]
    assert unsup > 0
    for key in ("train/sup_loss", "train/unsup_loss", "train/bal_sup_loss", "train/bal_unsup_loss"):
        assert torch.equal(log_1[key], log_s[key]), key
    assert torch.allclose(out_s["loss"], out_1["loss"] - 0.7 * one.lambda_u * unsup, atol=1e-6)
    warming = build("semi", semi_ulb_std_weight=0.3, semi_warmup_iter=5, p_cutoff=0.5)
    default = build("semi", semi_warmup_iter=5, p_cutoff=0.5)
    assert torch.equal(warming.train_step(**batch(warming))[0]["loss"], default.train_step(**batch(default))[0]["loss"])
