"""SimPro (docs/method.md, "SimPro"): its formulas on hand-made tensors, its update against a
line-by-line transcription of the released code, its step on a real digits batch, exact
resume, identical state on two DDP ranks, the quick start and ``--help``."""
from __future__ import annotations

import datetime
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from conftest import build_on_digits as build
from conftest import digits_batch as batch
from conftest import digits_flags, ema_predictions, help_defaults, only_run, run_summary, semilearn_eval
from kill_resume import kill_then_resume
from run_helpers import assert_same_final_state, flags, load, resume_a_copy
from run_helpers import digits_cfg, digits_yaml, snapshots  # noqa: F401  (fixtures)
from semi_usb.cli import main
from semi_usb.imb_algorithms.simpro.estimate import (MarginalEstimate, adjustment, confident, pseudo_label_probs,
                                                     scale_ratio, soft_ce, supervised_loss, unsupervised_loss)
from semi_usb.imb_algorithms.simpro.hooks import MarginalEstimateHook


# --------------------------------------------------------------------------- formulas
def test_adjustment_pseudo_labels_and_mask_by_hand():
    pi = torch.tensor([0.5, 0.25, 0.25, 0.0])
    adj = adjustment(pi, 2.0)
    assert torch.allclose(adj[:3], torch.log(torch.tensor([0.25, 0.0625, 0.0625]) + 1e-12))
    assert adj[3].item() == pytest.approx(math.log(1e-12))  # an empty class stays finite
    z = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    p = pseudo_label_probs(z, adjustment(torch.tensor([0.5, 0.25, 0.125, 0.125]), 1.0))
    e = [math.e * 0.5, math.e * 0.25, 0.125, 0.125]
    assert torch.allclose(p, torch.tensor([[v / sum(e) for v in e]]))
    probs = torch.tensor([[0.96, 0.04], [0.95, 0.05], [0.6, 0.4]])
    assert confident(probs, 0.95).tolist() == [1.0, 1.0, 0.0]


def test_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    adj = torch.tensor([0.0, -1.0])
    y = torch.tensor([0, 1])
    ce = [-math.log(math.exp(2) / (math.exp(2) + math.exp(-1))), -math.log(math.exp(0) / (1 + 1))]
    assert supervised_loss(logits, y, adj, 2.0).item() == pytest.approx((ce[0] + ce[1]) / 2 / 2, rel=1e-6)
    soft = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    ls = F.log_softmax(logits + adj, -1)
    rows = [-(0.75 * ls[0, 0] + 0.25 * ls[0, 1]).item(), -(0.5 * ls[1, 0] + 0.5 * ls[1, 1]).item()]
    assert soft_ce(logits + adj, soft).tolist() == pytest.approx(rows, rel=1e-6)
    # the mean runs over all rows, the masked one included
    assert unsupervised_loss(logits, soft, torch.tensor([1.0, 0.0]), adj).item() == pytest.approx(rows[0] / 2, rel=1e-6)


def test_scale_ratio_is_unlabeled_batches_per_labeled_batch():
    # 1200 labeled / 64 = 18 batches; 9900 unlabeled / (64 x 8) = 19 batches
    assert scale_ratio(1200, 9900, 64, 8) == pytest.approx(19 / 18)
    assert scale_ratio(10, 10, 64, 8) == 1.0  # fewer images than a batch: one batch each


def test_marginal_estimate_epoch_by_hand():
    est = MarginalEstimate(torch.tensor([0.6, 0.3, 0.1]), tau=2.0, momentum=0.9)
    assert torch.allclose(est.pi_ulb, torch.full((3,), 1 / 3))
    assert torch.allclose(est.adjustment_all, torch.log(torch.tensor([0.36, 0.09, 0.01]) + 1e-12))
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.4, 0.3, 0.3]])
    est.accumulate(torch.tensor([0, 0, 1]), probs, torch.tensor([1.0, 1.0, 0.0]))
    est.accumulate(torch.tensor([2]), probs[:1], torch.tensor([1.0]))
    mass = torch.tensor([1.9, 0.2, 0.9])
    assert torch.allclose(est.ulb_mass, mass) and est.lb_counts.tolist() == [2.0, 1.0, 1.0]
    before = est.adjustment_all.clone()
    assert torch.equal(est.adjustment_all, before)  # adjustments change only at the epoch's end
    est.end_epoch()
    pi_ulb = 0.9 * torch.full((3,), 1 / 3) + 0.1 * mass / (3.0 + 1)
    pi_all = 0.9 * torch.tensor([0.6, 0.3, 0.1]) + 0.1 * (torch.tensor([2.0, 1.0, 1.0]) + mass) / 7.0
    assert torch.allclose(est.pi_ulb, pi_ulb) and torch.allclose(est.pi_all, pi_all)
    assert torch.allclose(est.adjustment_ulb, torch.log(pi_ulb ** 2 + 1e-12))
    assert torch.allclose(est.adjustment_all, torch.log(pi_all ** 2 + 1e-12))
    assert est.ulb_mass.sum() == 0 and est.lb_counts.sum() == 0


# --------------------------------------------------------------------------- the released code
def simpro_released(batches, py_l, num_classes: int, eval_step: int, tau: float, ema_u: float, threshold: float,
                    scale_ratio_: float) -> list:
    """LeapLabTHU/SimPro, ``SimPro/train.py`` (commit aa2425d), lines 577-705, transcribed
    in plain torch (the model, optimizer, EMA and logging left out). Each batch gives
    ``(logits_l_w, logits_l_s, targets_l, logits_u_w, logits_u_s, logits_u_s1)``; returns,
    per step, ``Lx``, ``Lu`` and, after each epoch, ``adapt_dis`` and ``estimated_dis``."""
    def compute_adjustment_by_py(py, tro):                               # lines 90-93
        return torch.log(py ** tro + 1e-12)

    adapt_dis = py_l                                                     # line 577
    estimated_dis = torch.ones(num_classes) / num_classes                # line 578 (py_uni, line 444)
    trace = []
    for epoch in range(len(batches) // eval_step):
        adjustment_u = compute_adjustment_by_py(estimated_dis, tau)      # line 587
        adjust = compute_adjustment_by_py(adapt_dis, tau)                # line 588
        dis_unlabeled = torch.zeros(num_classes)                         # line 590
        count_labeled_dataset = torch.zeros(num_classes)                 # line 591
        for batch_idx in range(eval_step):
            logits_l_w, logits_l_s, targets_l, logits_u_w, logits_u_s, logits_u_s1 = batches[epoch * eval_step
                                                                                             + batch_idx]
            pseudo_label = torch.softmax(logits_u_w.detach() + adjustment_u, dim=-1)     # lines 637-639
            max_probs, _ = torch.max(pseudo_label, dim=-1)                # line 641
            mask = max_probs.ge(threshold)                                # line 642
            count_labeled_dataset += torch.bincount(targets_l, minlength=num_classes)   # lines 644-646
            dis_unlabeled += torch.sum(pseudo_label[mask], dim=0)        # line 648
            mask = mask.float()                                           # line 650
            mask_twice = torch.cat([mask, mask], dim=0)                   # line 651
            logits_u_s_twice = torch.cat([logits_u_s, logits_u_s1], dim=0)       # line 653
            targets_u_twice = torch.cat([pseudo_label, pseudo_label], dim=0)    # line 654
            logits_l = torch.cat([logits_l_w, logits_l_s], dim=0)        # line 656
            targets_l = torch.cat([targets_l, targets_l], dim=0)         # line 657
            Lx = F.cross_entropy(logits_l + adjust, targets_l, reduction="mean") / scale_ratio_  # lines 659-662
            Lu = (F.cross_entropy(logits_u_s_twice + adjust, targets_u_twice, reduction="none")
                  * mask_twice).mean()                                    # lines 664-671
            trace.append({"Lx": Lx, "Lu": Lu})
        estimated_dis_epoch = dis_unlabeled / (dis_unlabeled.sum() + 1)  # line 690
        estimated_dis = estimated_dis * ema_u + estimated_dis_epoch * (1 - ema_u)   # lines 692-694
        count_forward = count_labeled_dataset + dis_unlabeled            # line 701
        adapt_dis = adapt_dis * ema_u + (count_forward / count_forward.sum()) * (1 - ema_u)  # lines 703-705
        trace[-1].update(adapt_dis=adapt_dis.clone(), estimated_dis=estimated_dis.clone())
    return trace


def test_update_equals_simpro_released_code_over_epochs():
    """The same batches through the released lines and through ``MarginalEstimate``, its
    hook and the loss functions, as the training loop calls them: equal ``L_x``, ``L_u`` at
    every step and equal marginals after every epoch (3 epochs of 4 steps, two strong views).

    USB's loaders give no strong view of a labeled image (docs/deviations.md, "SimPro"):
    the released ``L_x`` averages the weak and the strong view; the transcription is fed the
    weak labeled logits as both, where it must equal ours.

    One-line mutation checked to fail: ``self.ulb_mass / (self.ulb_mass.sum() + 1)`` in
    ``MarginalEstimate.end_epoch`` changed to ``self.ulb_mass / self.ulb_mass.sum()`` fails
    at the first epoch's marginals (and, through the adjustments, the next epoch's losses)."""
    C, B, U, eval_step, epochs, tau, m, thr, ratio = 6, 8, 12, 4, 3, 2.0, 0.9, 0.7, 1.5
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([40.0, 20, 10, 5, 3, 2])
    py_l = counts / counts.sum()
    batches = []
    for i in range(epochs * eval_step):
        l_w = torch.randn(B, C, generator=g)
        y = torch.randint(0, C, (B,), generator=g)
        u_w = torch.randn(U, C, generator=g) * 3
        u_w[:, i % C] += 2.0  # confident samples on changing classes
        batches.append((l_w, l_w, y, u_w, torch.randn(U, C, generator=g), torch.randn(U, C, generator=g)))
    ref = simpro_released(batches, py_l, C, eval_step, tau, m, thr, ratio)

    est = MarginalEstimate(py_l, tau, m)
    alg = SimpleNamespace(it=0, simpro_estimate=est)
    hook = MarginalEstimateHook(eval_step)
    masks = []
    for it, (l_w, _, y, u_w, u_s, u_s1) in enumerate(batches):
        alg.it = it
        hook.before_train_step(alg)
        probs = pseudo_label_probs(u_w, est.adjustment_ulb)
        mask = confident(probs, thr)
        masks.append(mask)
        lx = supervised_loss(l_w, y, est.adjustment_all, ratio)
        lu = unsupervised_loss(torch.cat([u_s, u_s1]), probs.repeat(2, 1), mask.repeat(2), est.adjustment_all)
        assert lx.item() == pytest.approx(ref[it]["Lx"].item(), rel=1e-6), it
        assert lu.item() == pytest.approx(ref[it]["Lu"].item(), rel=1e-6, abs=1e-8), it
        alg.out_dict = {"ulb": {"y_lb": y, "probs": probs, "mask": mask}}
        hook.after_train_step(alg)
        if (it + 1) % eval_step == 0:
            est_next = MarginalEstimate(py_l, tau, m)
            est_next.load_state_dict(est.state_dict())
            est_next.end_epoch()  # what the next epoch's start computes
            assert torch.allclose(est_next.pi_all, ref[it]["adapt_dis"], atol=1e-7), it
            assert torch.allclose(est_next.pi_ulb, ref[it]["estimated_dis"], atol=1e-7), it
    ms = torch.stack(masks)
    assert 0 < ms.mean() < 1 and all(0 < ms[e * eval_step:(e + 1) * eval_step].sum() for e in range(epochs))
    assert len({round(r["Lu"].item(), 6) for r in ref}) > 6  # the losses move with the adjustments


# --------------------------------------------------------------------------- the algorithm
@pytest.mark.parametrize("views", [1, 2])
def test_simpro_step_matches_the_spec(views):
    """One step on a real digits batch, recomputed from docs/method.md with marginals set by
    hand (both strong views enter ``L_u`` with the weak view's soft pseudo-labels)."""
    alg = build("simpro", num_strong_views=views)
    b = batch(alg)
    assert ("x_ulb_s_1" in b) == (views == 2)
    est = alg.simpro_estimate
    pi_all, pi_ulb = torch.linspace(1, 2, 10), torch.linspace(2, 1, 10)
    est.pi_all, est.pi_ulb = pi_all / pi_all.sum(), pi_ulb / pi_ulb.sum()
    est.adjustment_all, est.adjustment_ulb = torch.log(est.pi_all ** 2), torch.log(est.pi_ulb ** 2)
    with torch.no_grad():  # (train mode: batch statistics, the same outputs as in the step)
        strong = [b["x_ulb_s"]] + ([b["x_ulb_s_1"]] if views == 2 else [])
        z = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], *strong]))["logits"]
        n_lb, n_u = b["x_lb"].shape[0], b["x_ulb_w"].shape[0]
        z_lb, z_w, z_s = z[:n_lb], z[n_lb:n_lb + n_u], z[n_lb + n_u:]
        p = torch.softmax(z_w + 2 * torch.log(est.pi_ulb), -1)
        conf = p.max(-1).values.sort().values
        alg.p_cutoff = ((conf[7] + conf[8]) / 2).item()  # half the batch confident, none at the threshold
        mask = (p.max(-1).values >= alg.p_cutoff).float()
        counts = torch.bincount(torch.as_tensor(alg.dataset_dict["train_lb"].targets), minlength=10)
        ratio = (len(alg.dataset_dict["train_ulb"]) // (8 * 2)) / (len(alg.dataset_dict["train_lb"]) // 8)
        l_x = F.cross_entropy(z_lb + 2 * torch.log(est.pi_all), b["y_lb"]) / ratio
        ce = -(p.repeat(views, 1) * F.log_softmax(z_s + 2 * torch.log(est.pi_all), -1)).sum(-1)
        l_u = (ce * mask.repeat(views)).mean()
    out, log = alg.train_step(**b)
    assert counts.sum() == len(alg.dataset_dict["train_lb"]) and alg.scale_ratio == pytest.approx(ratio)
    assert 0 < mask.mean() < 1
    assert log["train/sup_loss"].item() == pytest.approx(l_x.item(), rel=1e-5)
    assert log["train/unsup_loss"].item() == pytest.approx(l_u.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((l_x + l_u).item(), rel=1e-5)
    assert torch.equal(out["ulb"]["mask"], mask) and torch.equal(out["ulb"]["y_lb"], b["y_lb"])


def test_initial_marginals_and_scale_ratio_key():
    alg = build("simpro", simpro_tau=1.0, simpro_ema_u=0.5, simpro_scale_ratio=3.0)
    counts = torch.bincount(torch.as_tensor(alg.dataset_dict["train_lb"].targets), minlength=10).float()
    est = alg.simpro_estimate
    assert torch.allclose(est.pi_all, counts / counts.sum()) and torch.allclose(est.pi_ulb, torch.full((10,), 0.1))
    assert est.tau == 1.0 and est.momentum == 0.5 and alg.scale_ratio == 3.0


def test_simpro_evaluates_the_standard_head_of_the_ema_model():
    alg = build("simpro")
    assert (ema_predictions(alg, nine=[alg.model.module.classifier]) == 9).all()  # the only head says 9


def test_simpro_trains_the_quick_start_and_lists_its_keys(tmp_path, capsys):
    assert main(["train", "--algorithm", "simpro"] + digits_flags(tmp_path, iters=6, num_strong_views=2)) == 0
    summary = run_summary(only_run(tmp_path))
    assert summary["method"] == "fixmatch+simpro" and summary["head"] == "standard"
    assert summary["num_strong_views"] == 2 and summary["iterations_done"] == 6
    ckpt = load(os.path.join(only_run(tmp_path), "latest_model.pth"))
    assert set(ckpt["simpro_state"]) == {"pi_all", "pi_ulb", "adjustment_all", "adjustment_ulb", "lb_counts",
                                         "ulb_mass"}
    evaluated = semilearn_eval(only_run(tmp_path), capsys)  # semilearn eval: the same head
    assert evaluated["head"] == "standard"
    assert evaluated["final"]["confusion_matrix"] == summary["final"]["confusion_matrix"]
    lines = help_defaults("simpro", capsys)
    assert (lines["--simpro_tau"], lines["--simpro_ema_u"], lines["--simpro_scale_ratio"]) == ("2.0", "0.9", "0.0")


def test_simpro_resume_from_a_mid_run_checkpoint_is_bitwise(tmp_path, digits_yaml, snapshots):
    """6 iterations an epoch, 18 in 3, a checkpoint every 4: resuming from iteration 4 (mid
    epoch 0, mid-sums) and 8 (mid epoch 1, after an E-step) ends with exactly the
    uninterrupted run's checkpoint."""
    run_flags = {"num_train_iter": 18, "epoch": 3, "num_eval_iter": 4, "p_cutoff": 0.12}
    assert main(["train", "--algorithm", "simpro"] + flags(digits_yaml, tmp_path / "ref", **run_flags)) == 0
    ref_run = tmp_path / "ref" / "run"
    ref = load(ref_run / "latest_model.pth")
    assert ref["it"] == 18 and not torch.equal(ref["simpro_state"]["pi_ulb"], torch.full((10,), 0.1))
    for it in (4, 8):
        mid = load(snapshots[it])
        assert mid["simpro_state"]["ulb_mass"].sum() > 0  # the sums of an unfinished epoch travel too
        run = resume_a_copy(snapshots[it], tmp_path / f"resumed_from_{it}", "simpro", digits_yaml, run_flags,
                            ref_run / "config.yaml")
        assert f"at iteration {it}" in (run / "log.txt").read_text()
        assert_same_final_state(ref, load(run / "latest_model.pth"))


def test_simpro_resumes_bitwise_after_a_kill(tmp_path, digits_yaml):  # noqa: F811
    """SIGKILL after the first checkpoint, resume: bitwise the uninterrupted run. 3 iterations
    an epoch, a checkpoint every 4: the run is killed after an E-step (re-estimated
    marginals and adjustments) and mid-epoch (non-zero sums). Resuming without restoring
    ``simpro_state`` (``load_states`` skipped in ``SimPro.load_model``) fails here: the
    model, the EMA model and the marginals differ."""
    def moved(ckpt):
        state = ckpt["simpro_state"]
        assert ckpt["it"] >= 4
        assert not torch.equal(state["pi_ulb"], torch.full((10,), 0.1))
        assert not torch.equal(state["adjustment_ulb"], adjustment(torch.full((10,), 0.1), 2.0))
        assert state["ulb_mass"].sum() > 0 and state["lb_counts"].sum() > 0

    kill_then_resume("simpro", {"epoch": 4, "p_cutoff": 0.12}, digits_yaml, tmp_path, at_kill=moved)


# --------------------------------------------------------------------------- DDP
C, WORLD, STEPS = 4, 2, 3


def _step(step, rank):
    g = torch.Generator().manual_seed(100 * step + rank)
    probs = torch.softmax(torch.randn(5, C, generator=g) * 3, -1)
    probs[:, 2 * rank] += 2.0  # rank 0 on class 0, rank 1 on class 2
    probs = probs / probs.sum(-1, keepdim=True)
    return torch.randint(0, C, (3,), generator=g), probs, (probs.max(-1).values >= 0.5).float()


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    from semi_usb.imb_algorithms.simpro.estimate import MarginalEstimate

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        est = MarginalEstimate(torch.tensor([0.4, 0.3, 0.2, 0.1]), 2.0, 0.9)
        for step in range(STEPS):
            est.accumulate(*_step(step, rank), all_reduce=True)
        mid = est.state_dict()
        est.end_epoch()
        torch.save({"mid": mid, "end": est.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_marginal_estimate_identical_across_ranks(tmp_path):
    """Two gloo processes, each with its own batches: both hold the state of one process fed
    both ranks' batches (the sums mid-epoch, the marginals after the E-step)."""
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    ref = MarginalEstimate(torch.tensor([0.4, 0.3, 0.2, 0.1]), 2.0, 0.9)
    for step in range(STEPS):
        parts = [_step(step, r) for r in range(WORLD)]
        ref.accumulate(*(torch.cat([p[i] for p in parts]) for i in range(3)))
    ref_mid = ref.state_dict()
    ref.end_epoch()
    assert ref_mid["ulb_mass"][0] > 0 and ref_mid["ulb_mass"][2] > 0  # both ranks' classes
    for r in range(WORLD):
        for when, expect in (("mid", ref_mid), ("end", ref.state_dict())):
            for key, value in expect.items():
                assert torch.allclose(states[r][when][key], value, atol=1e-6), (r, when, key)


def test_published_simpro_numbers_have_a_config_of_their_protocol():
    """Every published SimPro number is of its authors' protocol, and config/simpro_paper/
    holds a file of its setting for each seed, so that a run of that tree meets it in the
    report."""
    from pathlib import Path

    from semi_usb.published import PUBLISHED, lookup

    tree = Path(__file__).resolve().parents[1] / "config" / "simpro_paper" / "fixmatch_simpro"
    keys = [s for m, s in PUBLISHED if m == "fixmatch+simpro"]
    assert len(keys) == 17
    for setting in keys:
        e = lookup("fixmatch+simpro", setting)
        assert (e.protocol, e.statistic, e.network) == ("simpro", "best", "wrn_28_2")
        stem = setting.replace("ulbNone_1", "ulbNone_1.0") if setting.startswith("stl10") else setting
        assert all((tree / f"fixmatch_simpro_{stem}_{seed}.yaml").is_file() for seed in range(3)), setting
