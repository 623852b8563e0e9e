"""Protocol keys on digits: ``lr_schedule`` for every algorithm, ``num_strong_views: 2`` in the
loaders (USB's and ``data_pipeline: gpu``) and in ACR's, SeMi's and FixMatch's steps
(docs/protocols.md, "Learning-rate schedule", "Strong views"; docs/method.md, "Two strong views")."""
from __future__ import annotations

import glob
import math
import os

import pytest
import torch

from conftest import build_on_digits, digits_batch, digits_flags, error_lines

COSINE_END = math.cos(7 * math.pi / 16)  # USB's cosine after num_train_iter steps


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize("method,extra", [("fixmatch", {}), ("semi", {}), ("daso", {"daso_num_pretrain_iter": 2})])
@pytest.mark.parametrize("schedule", ["usb", "cosine", "constant"])
def test_lr_schedule_at_the_last_step(method, extra, schedule):
    """The learning rate after num_train_iter scheduler steps: USB's choice (cosine for the
    base algorithm, constant for imbalanced ones on this dataset), cosine or constant."""
    alg = build_on_digits(method, lr_schedule=schedule, num_train_iter=8, **extra)
    for _ in range(alg.num_train_iter):  # as ParamUpdateHook does after each step
        if alg.scheduler is not None:
            alg.scheduler.step()
    lr = alg.optimizer.param_groups[-1]["lr"]
    cosine = schedule == "cosine" or (schedule == "usb" and method == "fixmatch")
    assert lr == pytest.approx(0.03 * COSINE_END if cosine else 0.03)


def test_cosine_and_two_views_reach_a_training_run(tmp_path):
    """End to end: the checkpoint's learning rate after a SeMi run with lr_schedule cosine
    (USB alone would keep 0.03) and two strong views."""
    from semi_usb.cli import main

    flags = digits_flags(tmp_path, iters=4, lr_schedule="cosine", num_strong_views=2, semi_warmup_iter=1)
    assert main(["train", "--algorithm", "semi"] + flags) == 0
    (ckpt,) = glob.glob(os.path.join(str(tmp_path), "**", "latest_model.pth"), recursive=True)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["optimizer"]["param_groups"][-1]["lr"] == pytest.approx(0.03 * COSINE_END)


def test_two_views_refused_where_no_step_uses_them(tmp_path, capsys):
    from semi_usb.cli import main

    assert main(["train", "--algorithm", "daso"] + digits_flags(tmp_path, num_strong_views=2)) == 2
    assert main(["train", "--algorithm", "semi"] + digits_flags(tmp_path, lr_schedule="linear")) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2 and "num_strong_views 2" in lines[0] and "lr_schedule" in lines[1]
    assert not os.listdir(tmp_path)


def _two_distinct_views(batch: dict) -> None:
    s0, s1 = batch["x_ulb_s"], batch["x_ulb_s_1"]
    assert s0.shape == s1.shape == batch["x_ulb_w"].shape
    assert not torch.equal(s0, s1)  # independent RandAugment draws of the same images


def test_stock_and_gpu_loaders_deliver_two_strong_views():
    from semi_usb import device_loader

    alg = build_on_digits("fixmatch", num_strong_views=2)
    _two_distinct_views(next(iter(alg.loader_dict["train_ulb"])))
    device_loader.install(alg, torch.device("cpu"))
    _two_distinct_views(next(iter(alg.loader_dict["train_ulb"])))
    one = build_on_digits("fixmatch")
    assert "x_ulb_s_1" not in next(iter(one.loader_dict["train_ulb"]))


@pytest.mark.parametrize("views", [1, 2])
def test_semi_two_views_in_losses_and_bank(views, monkeypatch):
    """L_u and L_u^b over views x B_u rows (weak labels and masks repeated), one bank entry per
    view of each confident image, q from the first view, Embedding Align against each view."""
    import semi_usb.imb_algorithms.acr.acr as acr_module
    import semi_usb.imb_algorithms.semi.semi as semi_module

    # threshold 0: every image is confident, so it is pushed (K = 512 leaves room for all)
    alg = build_on_digits("semi", num_strong_views=views, p_cutoff=0.0, semi_bank_size=512, semi_warmup_iter=0)
    batch = digits_batch(alg)
    n_ulb = batch["x_ulb_w"].shape[0]
    assert ("x_ulb_s_1" in batch) == (views == 2)

    seen = {"ce": [], "ealign": [], "q": []}
    real_ce, real_ealign = acr_module.masked_ce, semi_module.embedding_align_loss

    def spy_ce(logits, targets, mask, weight=None):
        seen["ce"].append((logits.shape[0], targets, mask, weight))
        return real_ce(logits, targets, mask, weight)

    def spy_ealign(feat_w, feat_s, center, mask, T):
        seen["ealign"].append((feat_w, feat_s, mask))
        return real_ealign(feat_w, feat_s, center, mask, T)

    monkeypatch.setattr(acr_module, "masked_ce", spy_ce)
    monkeypatch.setattr(semi_module, "embedding_align_loss", spy_ealign)
    hook = alg.hooks_dict["PseudoLabelingHook"]
    real_q = hook.gen_ulb_targets
    monkeypatch.setattr(hook, "gen_ulb_targets", lambda algorithm, logits, feats_x_ulb_s=None, **kw: (
        seen["q"].append(feats_x_ulb_s.shape[0]), real_q(algorithm, logits, feats_x_ulb_s, **kw))[1])

    alg.out_dict, alg.log_dict = alg.train_step(**batch)
    assert [rows for rows, *_ in seen["ce"]] == [views * n_ulb, views * n_ulb]  # L_u, L_u^b
    for _, targets, mask, weight in seen["ce"]:
        halves = [t.chunk(views) for t in (targets, mask) + ((weight,) if weight is not None else ())]
        assert all(torch.equal(h[0], h[-1]) for h in halves)  # the weak pseudo-labels repeated
    assert seen["q"] == [n_ulb]  # q from the first strong view
    ((feat_w, feat_s, mask),) = seen["ealign"]
    assert feat_w.shape[0] == feat_s.shape[0] == mask.shape[0] == views * n_ulb
    assert torch.equal(feat_w[:n_ulb], feat_w[-n_ulb:])

    alg.hooks_dict["MemoryBankHook"].after_train_step(alg)
    confident = int(alg.out_dict["ulb"]["mask"].sum())
    assert confident == n_ulb
    assert int(alg.bank.fill().sum()) == views * confident


def test_fixmatch_two_views_through_its_own_step():
    """FixMatch's step gets the weak view repeated and both strong views stacked: L_u over
    2 x B_u rows with the weak pseudo-labels repeated."""
    alg = build_on_digits("fixmatch", num_strong_views=2)
    batch = digits_batch(alg)
    assert "x_ulb_s_1" not in batch
    n = batch["x_ulb_w"].shape[0] // 2
    assert torch.equal(batch["x_ulb_w"][:n], batch["x_ulb_w"][n:])
    assert batch["x_ulb_s"].shape[0] == 2 * n and not torch.equal(batch["x_ulb_s"][:n], batch["x_ulb_s"][n:])
    out, log = alg.train_step(**batch)
    assert out["feat"]["x_ulb_s"].shape[0] == 2 * n and math.isfinite(float(log["train/unsup_loss"]))


def test_include_lb_to_ulb_puts_the_labeled_images_into_the_unlabeled_set(cifar_subset_data):
    """semilearn's imbalanced CIFAR split (cifar.py -> utils.split_ssl_data): with
    include_lb_to_ulb the unlabeled set is the labeled images followed by the M_k of each class."""
    import numpy as np

    from semi_usb import compat
    from semi_usb.config import build_args

    compat.apply()
    from semilearn.datasets.cv_datasets.cifar import get_cifar

    args = build_args("semi", None, {"dataset": "cifar10", "num_classes": "10", "data_dir": cifar_subset_data,
                                     "num_labels": "20", "ulb_num_labels": "30", "lb_imb_ratio": "10",
                                     "ulb_imb_ratio": "-10", "save_dir": "/nonexistent", "seed": "0"})
    sets = {}
    for include in (False, True):
        np.random.seed(0)  # split_ssl_data samples with the global numpy RNG
        sets[include] = get_cifar(args, "fixmatch", "cifar10", 20, 10, cifar_subset_data, include_lb_to_ulb=include)
    (lb, ulb_apart, _), (lb_in, ulb_in, _) = sets[False], sets[True]
    assert np.array_equal(lb.data, lb_in.data)
    assert len(ulb_in) == len(ulb_apart) + len(lb) and len(lb) == sum(int(20 * 10 ** (-k / 9)) for k in range(10))
    assert np.array_equal(ulb_in.data[:len(lb)], lb.data)  # the labeled images themselves, first
    count = lambda t: np.bincount(np.asarray(t), minlength=10)  # noqa: E731
    assert np.array_equal(count(ulb_in.targets), count(ulb_apart.targets) + count(lb.targets))
