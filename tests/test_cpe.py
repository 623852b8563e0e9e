"""CPE (docs/method.md, "CPE"): its formulas on hand-made tensors, its step against a
line-by-line transcription of the released code on a real digits batch, its evaluation head,
its logged state across checkpoints and DDP ranks, and real runs of the quick start."""
from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from conftest import REPO, build_on_digits as build, digits_batch as batch, digits_flags, only_run, run_summary
from conftest import ema_predictions, semilearn_eval
from kill_resume import kill_then_resume
from run_helpers import digits_cfg, digits_yaml  # noqa: F401  (fixtures)
from semi_usb.cli import main
from semi_usb.imb_algorithms.cpe.losses import branch_weights, expert_pseudo_labels, routed_unsup_loss
from semi_usb.imb_algorithms.cpe.priors import PseudoLabelPriors


# --------------------------------------------------------------------------- formulas
def test_expert_pseudo_labels_and_masks():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 5.0, 0.0], [0.0, 0.0, 1.0]]])  # (E=2, N=2, C=3)
    label, mask = expert_pseudo_labels(logits, 0.7)
    top = torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 2)  # 0.787
    assert top > 0.7
    assert label.tolist() == [[0, 0], [1, 2]]
    assert mask.tolist() == [[1.0, 0.0], [1.0, 0.0]]  # uniform row 1/3, and e/(e+2) = 0.576


def test_branch_weights_route_by_class_index():
    label = torch.tensor([0, 1, 2, 3, 4, 5, 4])
    mask = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    w = branch_weights(label, mask, cut1=2, cut2=4)
    assert w.tolist() == [[1, 1, 1, 1, 1, 1, 0],   # head branch: every confident sample
                          [0, 0, 1, 1, 1, 1, 0],   # medium: pseudo-label >= 2
                          [0, 0, 0, 0, 1, 1, 0]]   # tail: pseudo-label >= 4


def test_routed_unsup_loss_by_hand():
    s = torch.zeros(3, 2, 2)  # uniform logits: CE = log 2 everywhere ...
    s[2, 1] = torch.tensor([0.0, 3.0])  # ... except the tail branch's second sample: CE(.,1) = log(1 + e^-3)
    label = torch.tensor([0, 1])
    w = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    expect = (3 * torch.log(torch.tensor(2.0)) + torch.log1p(torch.exp(torch.tensor(-3.0)))) / 4
    assert torch.allclose(routed_unsup_loss(s, label, w), expect)
    assert routed_unsup_loss(s, label, torch.zeros(3, 2)) == 0  # nothing confident: 0, not NaN


def test_priors_move_only_with_counts():
    pri = PseudoLabelPriors(num_experts=2, num_classes=3, momentum=0.9)
    label = torch.tensor([[0, 0, 2], [1, 1, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pri.update(label, mask)
    third = 1 / 3
    assert torch.allclose(pri.u_py[0], torch.tensor([0.9 * third + 0.1, 0.9 * third, 0.9 * third]))
    assert torch.allclose(pri.u_py[1], torch.full((3,), third))  # expert 2 had nothing confident: unchanged
    assert torch.allclose(pri.au_py[0], torch.tensor([0.9 * third + 0.1 * 2 / 3, 0.9 * third, 0.9 * third + 0.1 / 3]))
    assert torch.allclose(pri.au_py[1], torch.tensor([0.9 * third, 0.9 * third + 0.1, 0.9 * third]))
    again = PseudoLabelPriors(2, 3)
    again.load_state_dict(pri.state_dict())
    assert torch.equal(again.u_py, pri.u_py) and torch.equal(again.au_py, pri.au_py)
    with pytest.raises(ValueError, match="u_py: expected shape"):
        again.load_state_dict({"u_py": torch.zeros(3, 3), "au_py": torch.zeros(2, 3)})


def test_experts_net_feat_is_the_mean_branch_feature():
    """An expert's logits (mean over the three branch logits) are its classifier applied to
    ``feat`` (the mean branch feature): the classifier is linear."""
    alg = build("cpe")
    net = alg.model.module if hasattr(alg.model, "module") else alg.model
    x = batch(alg)["x_lb"]
    with torch.no_grad():
        out = net(x)
        assert out["branch_logits"].shape == (3, 3, x.shape[0], 10)
        for k, (key, head) in enumerate(zip(("logits", "logits_2", "logits_3"), net.heads())):
            assert torch.allclose(out[key], head(out["feat"]), atol=1e-5), key
            assert torch.allclose(out[key], out["branch_logits"][k].mean(0))


# --------------------------------------------------------------------------- transcription
def released_cpe_loss(net, p_hat_lb, taus, cut1, cut2, p_cutoff, lambda_u, x_lb, y_lb, x_ulb_w, x_ulb_s):
    """Line-by-line transcription of the released update (machengcheng2016/CPE-LTSSL):

    * the network: ``semilearn/nets/wrn/wrn_cbn.py`` lines 134-146 (``WideResNetCBN.forward``:
      ``BNH/BNM/BNT`` on the feature map, concatenated, pooled, ``classifier``, ``chunk(3)``,
      mean) and ``semilearn/imb_algorithms/cpe/cpe.py`` lines 28-58 (``CBNNet.forward``: the
      same for ``classifier2`` / ``classifier3``);
    * the step: ``cpe.py`` lines 192-256 and 276 (``train_step``: views split with
      ``.chunk(2)``, per head ``ce_loss(logits + tau * log p_hat_lb)``, ``compute_prob``, masks,
      ``one_hot(...)[:, cut:]`` routing, the sum of the three branch losses over the routed count
      ``+ 1e-12``; ``total_loss``).

    Our modules stand in for theirs (``BNH`` = ``branch_norms[0]``, ``classifier`` =
    ``backbone.classifier``, ``classifier2`` = ``classifiers[0]``, ...)."""
    num_lb = y_lb.shape[0]
    num_classes = p_hat_lb.numel()
    # wrn_cbn.py 134-146
    out = net.backbone.extract(torch.cat((x_lb, x_ulb_w, x_ulb_s)))
    head_fs, medium_fs, tail_fs = net.branch_norms[0](out), net.branch_norms[1](out), net.branch_norms[2](out)
    fs = torch.cat((head_fs, medium_fs, tail_fs), dim=0)
    feat = F.adaptive_avg_pool2d(fs, 1).view(fs.size(0), -1)
    outputs = {}
    for suffix, classifier in (("", net.backbone.classifier), ("2", net.classifiers[0]), ("3", net.classifiers[1])):
        all_logits = classifier(feat)
        c = all_logits.shape[0] // 3
        outputs["logitsH" + suffix] = all_logits[:c, :]
        outputs["logitsM" + suffix] = all_logits[c:c * 2, :]
        outputs["logitsT" + suffix] = all_logits[c * 2:, :]
        mean = (all_logits[:c] + all_logits[c:2 * c] + all_logits[2 * c:]) / 3
        outputs["logits" + ("" if not suffix else "_" + suffix)] = mean
    # cpe.py 192-256, one block per head
    total_loss, logs = 0, {}
    for k, (key, suffix) in enumerate((("logits", ""), ("logits_2", "2"), ("logits_3", "3"))):
        logits_x_lb = outputs[key][:num_lb]
        logits_x_ulb_w, _ = outputs[key][num_lb:].chunk(2)
        _, logits_x_ulb_sH = outputs["logitsH" + suffix][num_lb:].chunk(2)
        _, logits_x_ulb_sM = outputs["logitsM" + suffix][num_lb:].chunk(2)
        _, logits_x_ulb_sT = outputs["logitsT" + suffix][num_lb:].chunk(2)
        sup_loss = F.cross_entropy(logits_x_lb + taus[k] * torch.log(p_hat_lb), y_lb, reduction="mean")
        probs_x_ulb_w = torch.softmax(logits_x_ulb_w.detach(), dim=-1)
        mask = probs_x_ulb_w.amax(dim=-1).ge(p_cutoff)
        pseudo_label = probs_x_ulb_w.argmax(dim=-1)
        pseudo_labelH = F.one_hot(pseudo_label, num_classes).sum(dim=1) * mask.float()
        pseudo_labelM = F.one_hot(pseudo_label, num_classes)[:, cut1:].sum(dim=1) * mask.float()
        pseudo_labelT = F.one_hot(pseudo_label, num_classes)[:, cut2:].sum(dim=1) * mask.float()
        unsup_loss = (F.cross_entropy(logits_x_ulb_sH, pseudo_label, reduction="none") * pseudo_labelH).sum()
        unsup_loss += (F.cross_entropy(logits_x_ulb_sM, pseudo_label, reduction="none") * pseudo_labelM).sum()
        unsup_loss += (F.cross_entropy(logits_x_ulb_sT, pseudo_label, reduction="none") * pseudo_labelT).sum()
        unsup_loss /= (pseudo_labelH.sum() + pseudo_labelM.sum() + pseudo_labelT.sum() + 1e-12)
        total_loss = total_loss + (sup_loss + lambda_u * unsup_loss)  # cpe.py 276
        logs[k + 1] = (sup_loss, unsup_loss, mask.float().mean(), pseudo_label)
    return total_loss, logs


@pytest.mark.parametrize("p_cutoff", [0.0, 0.117])  # all confident; about half (digits at init)
def test_cpe_step_equals_the_released_code(p_cutoff):
    """The same real digits batch through our step and through the transcription above give
    the same total loss and, for each expert, the same supervised and unlabeled losses and
    utilisation, to float tolerance (the released supervised term runs in float64 because its
    prior is a float64 tensor). Checked to fail when ``>= cut1`` becomes ``> cut1`` in
    :func:`~semi_usb.imb_algorithms.cpe.losses.branch_weights` (the batch holds confident
    pseudo-labels equal to ``cut1``) or when ``log_pi`` is added with the opposite sign."""
    alg = build("cpe", p_cutoff=p_cutoff, cpe_cut1=2, cpe_cut2=4)
    b = batch(alg)
    net = alg.model.module if hasattr(alg.model, "module") else alg.model
    out, log = alg.train_step(**b)
    counts = torch.bincount(torch.as_tensor(alg.dataset_dict["train_lb"].targets), minlength=10).double()
    with torch.no_grad():
        total, logs = released_cpe_loss(net, counts / counts.sum(), (0.0, 2.0, 4.0), 2, 4, p_cutoff, alg.lambda_u,
                                        b["x_lb"], b["y_lb"], b["x_ulb_w"], b["x_ulb_s"])
    for k, (sup, unsup, util, label) in logs.items():
        assert log[f"train/sup_loss{k}"].item() == pytest.approx(sup.item(), rel=1e-5), k
        assert log[f"train/unsup_loss{k}"].item() == pytest.approx(unsup.item(), rel=1e-5, abs=1e-7), k
        assert log[f"train/util_ratio{k}"].item() == pytest.approx(util.item()), k
        assert torch.equal(out["ulb"]["pseudo_label"][k - 1], label), k
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    # the batch exercises every route: confident pseudo-labels below cut1, at cut1 and from cut2 on
    mask = out["ulb"]["mask"]
    confident = out["ulb"]["pseudo_label"][mask > 0]
    assert (confident < 2).any() and (confident == 2).any() and (confident >= 4).any()
    assert all(logs[k][1] > 0 for k in logs)
    if p_cutoff > 0:
        assert 0 < mask.mean() < 1


def test_cpe_evaluates_expert_2_of_the_ema_model():
    alg = build("cpe")
    net = alg.model.module if hasattr(alg.model, "module") else alg.model
    # expert 2 says 9, expert 3 says 0
    assert (ema_predictions(alg, nine=[net.classifiers[0]], zero=[net.classifiers[1]]) == 9).all()


# --------------------------------------------------------------------------- DDP
N_STEPS, WORLD, C = 4, 2, 5


def _labels(step, rank):
    g = torch.Generator().manual_seed(100 * step + rank)
    label = torch.randint(0, C, (3, 6), generator=g)
    label[:, :2] = 2 * rank  # each rank has its own favourite class
    return label, (torch.rand(3, 6, generator=g) < 0.6).float()


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    from semi_usb.imb_algorithms.cpe.priors import PseudoLabelPriors

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        pri = PseudoLabelPriors(3, C, momentum=0.8)
        for step in range(N_STEPS):
            pri.update(*_labels(step, rank), all_reduce=True)
        torch.save(pri.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_priors_identical_across_ranks(tmp_path):
    """Two gloo processes with different batches end with the same u_py / au_py, equal to
    one process fed both ranks' batches."""
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    ref = PseudoLabelPriors(3, C, momentum=0.8)
    for step in range(N_STEPS):
        parts = [_labels(step, r) for r in range(WORLD)]
        ref.update(torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1))
    assert not torch.allclose(ref.u_py, torch.full_like(ref.u_py, 1 / C))
    for r in range(WORLD):
        for key, value in ref.state_dict().items():
            assert torch.allclose(states[r][key], value, atol=1e-7), (r, key)


# --------------------------------------------------------------------------- real runs
def test_cpe_trains_the_quick_start(tmp_path, capsys):
    """``semilearn train --algorithm cpe --config config/quickstart/digits_lt.yaml`` (few
    iterations): a summary from expert 2 of the EMA model, which ``semilearn eval`` of the
    checkpoint reproduces, and the logged per-expert terms."""
    assert main(["train", "--algorithm", "cpe"] + digits_flags(tmp_path, iters=8, num_log_iter=4,
                                                                cpe_est_epoch=0, p_cutoff=0.3)) == 0
    run = only_run(tmp_path)
    s = run_summary(run)
    assert s["method"] == "fixmatch+cpe" and s["head"] == "expert2" and s["iterations_done"] == 8
    log = open(os.path.join(run, "log.txt"), encoding="utf-8").read()
    for key in ("train/sup_loss3", "train/unsup_loss1", "train/util_ratio2", "train/u_py3/9", "train/au_py1/0"):
        assert key in log, key
    evaluated = semilearn_eval(run, capsys)
    assert evaluated["head"] == "expert2"
    assert evaluated["final"]["confusion_matrix"] == s["final"]["confusion_matrix"]


def test_cpe_resumes_bitwise_after_a_kill(tmp_path, digits_yaml):  # noqa: F811
    """SIGKILL after the first checkpoint, resume: bitwise the uninterrupted run, logged
    pseudo-label distributions included (they moved: est_epoch 0, 6 iterations an epoch)."""
    out = kill_then_resume("cpe", {"p_cutoff": 0.3, "cpe_est_epoch": 0}, digits_yaml, tmp_path)
    assert not torch.allclose(out["cpe_priors"]["u_py"], torch.full((3, 10), 0.1))


def test_cpe_two_strong_views_train(tmp_path):
    assert main(["train", "--algorithm", "cpe"] + digits_flags(tmp_path, iters=2, num_strong_views=2)) == 0
    assert run_summary(only_run(tmp_path))["iterations_done"] == 2


def test_cpe_keys_in_help(capsys):
    assert main(["train", "--algorithm", "cpe", "--help"]) == 0
    text = capsys.readouterr().out
    for key, default in (("cpe_tau1", "0.0"), ("cpe_tau2", "2.0"), ("cpe_tau3", "4.0"), ("cpe_cut1", "2"),
                         ("cpe_cut2", "4"), ("cpe_est_epoch", "0"), ("cpe_prior_momentum", "0.9")):
        assert any(line.split()[:2] == [f"--{key}", default] for line in text.splitlines()), key
