"""BaCon (docs/method.md, "BaCon"): its formulas on hand-made tensors, its step against a
line-by-line transcription of the authors' released code, its step on a real digits batch,
exact resume, identical state on two DDP ranks, the quick start and ``--help``."""
from __future__ import annotations

import datetime
import math
import os

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
from semi_usb.imb_algorithms.bacon.feature_bank import FeatureBank
from semi_usb.imb_algorithms.bacon.hooks import FeatureBankHook
from semi_usb.imb_algorithms.bacon.losses import (abc_loss, balanced_temperatures, contrastive_loss,
                                                  lb_keep_probability, reliable_negatives)


# --------------------------------------------------------------------------- formulas
def test_keep_probability_and_temperatures_by_hand():
    assert lb_keep_probability(torch.tensor([100, 20, 5])).tolist() == pytest.approx([0.05, 0.25, 1.0])
    t = balanced_temperatures(torch.tensor([400.0, 100.0, 0.0]), 0.1, 0.0005, 0.5)
    assert t.tolist() == pytest.approx([0.1 - 0.25 * 0.0005, 0.1 - 0.25 * 0.0005 * 0.5, 0.1])
    assert balanced_temperatures(torch.zeros(2), 0.1, 0.0005, 0.0).tolist() == pytest.approx([0.1, 0.1])


def test_reliable_negatives_by_hand():
    y_lb = torch.tensor([0, 2])
    top = torch.tensor([[1, 0], [2, 1]])  # top-2 of two unlabeled rows
    neg = reliable_negatives(y_lb, top, 3)
    assert neg.tolist() == [[False, True, False, True],   # class 0: lb row 1, ulb row 1 (0 not in its top)
                            [True, True, False, False],   # class 1: both lb rows, no ulb row
                            [True, False, True, False]]   # class 2: lb row 0, ulb row 0


def test_abc_loss_by_hand():
    aux_lb = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    aux_w = torch.tensor([[5.0, 0.0], [0.0, 0.1]])
    aux_s = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    keep = torch.tensor([0.25, 1.0])
    torch.manual_seed(3)
    loss, mask = abc_loss(aux_lb, torch.tensor([0, 1]), aux_w, aux_s, keep, 0.5, 0.95)
    torch.manual_seed(3)
    m_lb = torch.bernoulli(torch.tensor([0.25, 1.0]))
    m_ulb = torch.bernoulli(torch.tensor([1 - 0.5 * 0.75, 1.0]))  # classes 0 and 1 predicted
    ce_lb = F.cross_entropy(aux_lb, torch.tensor([0, 1]), reduction="none")
    ce_s = F.cross_entropy(aux_s, torch.tensor([0, 1]), reduction="none")
    conf = torch.tensor([1.0, 0.0])  # softmax([5, 0]) > 0.95, softmax([0, 0.1]) is not
    assert mask.tolist() == (conf * m_ulb).tolist()
    assert loss.item() == pytest.approx(((ce_lb * m_lb).mean() + (ce_s * conf * m_ulb).mean()).item(), rel=1e-6)


def test_contrastive_loss_by_hand():
    """Two classes, three rows: row 0 and 2 of class 0, row 1 of class 1; row 1 and 2 are the
    negatives of class 0, row 0 of class 1."""
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    centres = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    negatives = torch.tensor([[False, True, True], [True, False, False]])
    select = torch.tensor([True, True, False])
    temps = torch.tensor([0.5, 0.25])
    out = contrastive_loss(feats, y, centres, negatives, select, temps, 0.1, 2.0)
    c = 1 / math.sqrt(2)
    pos = [math.exp(1 / 0.5), math.exp(c / 0.25), math.exp(c / 0.5)]
    # class 0: rows 0, 2 against negatives 1, 2: cos 0, c (row 0); c, 1 (row 2)
    neg0 = (math.exp(0) + math.exp(c / 0.1) + math.exp(c / 0.1) + math.exp(1 / 0.1)) / 4
    neg1 = math.exp(0 / 0.1)  # row 1 against row 0
    losses = [-math.log(pos[0] / (pos[0] + 2 * neg0 + 1e-8)), -math.log(pos[1] / (pos[1] + 2 * neg1 + 1e-8))]
    assert out.item() == pytest.approx(sum(losses) / 2, rel=1e-5)
    # a class whose negative set is empty: a zero negative term, no NaN
    out = contrastive_loss(feats, y, centres, torch.zeros_like(negatives), select, temps, 0.1, 2.0)
    assert out.item() == pytest.approx(-math.log(pos[0] / (pos[0] + 1e-8)) / 2 - math.log(pos[1] / (pos[1] + 1e-8)) / 2,
                                       abs=1e-6)


def test_feature_bank_by_hand():
    bank = FeatureBank(n_lb=3, n_ulb=4, num_classes=2, dim=2)
    assert bank.labels.tolist() == [-1] * 7 and torch.equal(bank.feats, torch.ones(7, 2))
    # no unlabeled image selected: the labeled ones are not written either (as released)
    bank.update_labels(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([1, 3]), torch.tensor([0, 1]),
                       torch.tensor([False, False]))
    assert bank.labels.tolist() == [-1] * 7 and bank.class_freq.tolist() == [0.0, 0.0]
    bank.update_labels(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([1, 3]), torch.tensor([0, 1]),
                       torch.tensor([True, False]))
    assert bank.labels.tolist() == [1, -1, 0, -1, 0, -1, -1] and bank.class_freq.tolist() == [2.0, 1.0]
    bank.update_features(torch.tensor([0, 2]), torch.tensor([[4.0, 0.0], [2.0, 2.0]]), torch.tensor([False, True]),
                         torch.tensor([1, 3]), torch.tensor([[0.0, 6.0], [9.0, 9.0]]), torch.tensor([True, False]))
    assert bank.feats.tolist() == [[1, 1], [1, 1], [2, 2], [1, 1], [0, 6], [1, 1], [1, 1]]
    assert bank.centres.tolist() == [[1.0, 4.0], [1.0, 1.0]]  # class 0: rows 2 and 4; class 1: row 0 (ones)
    bank = FeatureBank(1, 1, 3, 2)
    bank.update_features(torch.tensor([0]), torch.ones(1, 2), torch.tensor([True]), torch.tensor([0]),
                         torch.ones(1, 2), torch.tensor([True]))
    assert bank.centres.tolist() == [[0.0, 0.0]] * 3  # no class has a row yet


# --------------------------------------------------------------------------- the released code
class Released:
    """fqhank/AAAI24-BaCon-CISSL (the authors' release), ``semilearn/imb_algorithms/bacon/bacon.py``
    (commit f540b37), lines 142-223 (``train_step`` after the forward pass) and 381-430
    (``contrastive_loss``, ``compute_abc_loss``), transcribed in plain torch with the USB
    calls they make spelled out (FixMatch's threshold and hard pseudo-labels, ``compute_prob``
    = softmax, ``consistency_loss`` = masked mean CE). ``it_total`` stands for the code's
    300000 (its config's ``num_train_iter``), ``start`` for its 150000."""

    def __init__(self, lb_counts, n_lb, n_ulb, num_classes, proj_dim, it_total, start):
        lb_class_dist = lb_counts.numpy()                                        # lines 75-78
        self.lb_class_dist = torch.from_numpy(lb_class_dist.min() / lb_class_dist)   # line 79
        self.lb_dest_len, self.num_classes, self.it_total, self.start = n_lb, num_classes, it_total, start
        self.selected_label = torch.ones((n_lb + n_ulb,), dtype=torch.long) * -1     # line 99
        self.cls_freq = torch.ones((num_classes,))                                # line 101
        self.feat_list = torch.ones((n_lb + n_ulb, proj_dim))                     # line 102
        self.class_feat_center = torch.ones((num_classes, proj_dim))              # line 103

    def step(self, it, epoch, epochs, idx_lb, y_lb, idx_ulb, logits_x_lb, logits_x_ulb_w, logits_x_ulb_s,
             abc_logits_x_lb, abc_logits_x_ulb_w, abc_logits_x_ulb_s, proj_lb, proj_ulb_w,
             p_cutoff=0.95, abc_p_cutoff=0.95):
        self.it, self.epoch, self.epochs = it, epoch, epochs
        sup_loss = F.cross_entropy(logits_x_lb, y_lb, reduction="mean")            # line 142
        probs = logits_x_ulb_w.softmax(-1).clone().detach()                       # lines 144-150
        max_probs, pseudo_label = probs.max(-1)
        mask = max_probs.ge(p_cutoff).float()
        unsup_loss = (F.cross_entropy(logits_x_ulb_s, pseudo_label, reduction="none") * mask).mean()  # 151-154
        abc_max_probs, abc_max_idx = torch.max(abc_logits_x_ulb_w, dim=-1)        # line 163
        select = abc_max_probs.ge(0.95)                                           # line 164
        if idx_ulb[select == 1].nelement() != 0:                                  # line 165
            self.selected_label[self.lb_dest_len + idx_ulb[select == 1]] = abc_max_idx[select == 1]  # 166
            self.selected_label[idx_lb] = y_lb                                    # line 167
        for i in range(self.num_classes):                                         # lines 168-169
            self.cls_freq[i] = torch.sum(self.selected_label == i)
        abc_loss, mask_ulb = self.compute_abc_loss(abc_logits_x_lb, y_lb, abc_logits_x_ulb_w,
                                                   abc_logits_x_ulb_s, abc_p_cutoff)   # lines 175-180
        select_lb = (torch.max(abc_logits_x_lb.softmax(-1), dim=-1)[0]).ge(0.98)  # line 182
        select_ulb = (torch.max(abc_logits_x_ulb_w.softmax(-1), dim=-1)[0]).ge(0.98)  # line 183
        select_all = torch.cat((select_lb, select_ulb), dim=0)                   # line 184
        contra_loss = torch.tensor(0.0)                                           # line 191
        if self.it > self.start:                                                  # line 192
            contra_loss = self.contrastive_loss(self.class_feat_center, torch.cat((proj_lb, proj_ulb_w), dim=0),
                                                y_lb, abc_logits_x_ulb_w.topk(3, dim=-1)[1], select_all)  # 194-200
        total_loss = abc_loss + contra_loss + sup_loss + unsup_loss               # line 205
        self.feat_list[idx_lb[select_lb == 1]] = proj_lb[select_lb == 1].clone().detach()        # line 217
        self.feat_list[(idx_ulb + self.lb_dest_len)[select_ulb == 1]] = proj_ulb_w[select_ulb == 1].clone().detach()
        for i in range(self.num_classes):                                         # lines 219-220
            self.class_feat_center[i] = torch.mean(self.feat_list[self.selected_label == i], 0)
        return {"sup": sup_loss, "unsup": unsup_loss, "abc": abc_loss, "contra": contra_loss, "total": total_loss}

    def contrastive_loss(self, anchors, feats, y_lb, top_ulb, select):           # lines 381-397
        contra_loss = 0
        y = torch.cat((y_lb, top_ulb[:, 0]), dim=0)
        for i in range(self.num_classes):
            temp = top_ulb - i
            idx = torch.nonzero(temp == 0)[:, 0]
            neg_idx = torch.ones((top_ulb.shape[0],))
            neg_idx[idx] = 0
            neg_idx = torch.cat((y_lb[:] != i, neg_idx), dim=0).to(torch.long)
            neg_samples = feats[neg_idx == 1]
            pos = torch.exp(torch.cosine_similarity(feats[y == i], anchors[y][y == i], dim=-1) / (
                0.1 - (1 - self.it / self.it_total) ** 2 * 0.0005 * torch.sqrt(self.cls_freq[i] / torch.max(self.cls_freq))))
            neg = torch.exp(torch.cosine_similarity(feats[y == i].unsqueeze(1).repeat(1, neg_samples.shape[0], 1),
                                                    neg_samples.unsqueeze(0).repeat(feats[y == i].shape[0], 1, 1),
                                                    dim=-1) / 0.1)
            loss = pos / (pos + 64 * neg.mean() + 1e-8)
            contra_loss += (-1 * torch.log(loss) * select[y == i]).sum()
        return contra_loss / (select.sum() + 1e-8)

    def compute_abc_loss(self, logits_x_lb, y_lb, logits_x_ulb_w, logits_x_ulb_s, abc_p_cutoff):  # 404-430
        mask_lb = torch.bernoulli(self.lb_class_dist[y_lb].detach()).float()
        abc_lb_loss = (F.cross_entropy(logits_x_lb, y_lb, reduction="none") * mask_lb).mean()
        with torch.no_grad():
            probs_x_ulb_w = torch.softmax(logits_x_ulb_w, dim=-1)
            max_probs, y_ulb = torch.max(probs_x_ulb_w, dim=1)
            mask_ulb_1 = max_probs.ge(abc_p_cutoff).to(logits_x_ulb_w.dtype)
            ulb_class_dist = 1 - (self.epoch / self.epochs) * (1 - self.lb_class_dist)
            mask_ulb_2 = torch.bernoulli(ulb_class_dist[y_ulb].detach()).float()
            mask_ulb = mask_ulb_1 * mask_ulb_2
        abc_ulb_loss = (F.cross_entropy(logits_x_ulb_s, y_ulb, reduction="none") * mask_ulb).mean()
        return abc_lb_loss + abc_ulb_loss, mask_ulb


def _ours_step(bank, hook, alg, it, b, keep_lb, it_total, start, epoch, epochs):
    """Our functions in the order ``BaCon.train_step`` and its hook call them (the model's
    outputs given)."""
    mask = (b["logits_w"].softmax(-1).max(-1).values >= 0.95).float()
    sup = F.cross_entropy(b["logits_lb"], b["y_lb"])
    unsup = (F.cross_entropy(b["logits_s"], b["logits_w"].argmax(-1), reduction="none") * mask).mean()
    conf, pred = b["aux_w"].max(-1)  # bacon_freq_input: logits
    bank.update_labels(b["idx_lb"], b["y_lb"], b["idx_ulb"], pred, conf >= 0.95)
    abc, _ = abc_loss(b["aux_lb"], b["y_lb"], b["aux_w"], b["aux_s"], keep_lb, epoch / epochs, 0.95)
    select_lb = b["aux_lb"].softmax(-1).max(-1).values >= 0.98
    select_ulb = b["aux_w"].softmax(-1).max(-1).values >= 0.98
    contra = torch.zeros(())
    if it > start:
        top = b["aux_w"].topk(3, dim=-1).indices
        temps = balanced_temperatures(bank.class_freq, 0.1, 0.0005, it / it_total)
        contra = contrastive_loss(torch.cat((b["proj_lb"], b["proj_w"])), torch.cat((b["y_lb"], top[:, 0])),
                                  bank.centres, reliable_negatives(b["y_lb"], top, bank.num_classes),
                                  torch.cat((select_lb, select_ulb)), temps, 0.1, 64.0)
    alg.out_dict = {"ulb": {"idx_lb": b["idx_lb"], "idx_ulb": b["idx_ulb"], "proj_lb": b["proj_lb"],
                            "proj_w": b["proj_w"], "select_lb": select_lb, "select_ulb": select_ulb}}
    hook.after_train_step(alg)
    return {"sup": sup, "unsup": unsup, "abc": abc, "contra": contra, "total": sup + unsup + abc + contra}


def test_step_equals_bacon_released_code():
    """The same batches (model outputs, sample indices, the same Bernoulli draws) through the
    authors' released lines and through ours: equal losses at every step and equal labels,
    class frequencies, stored projections and centres after every step (12 steps, the
    contrastive loss from step 5). One deliberate difference (docs/deviations.md): the centre
    of a class that no row is labelled with is NaN in the released code (the mean of nothing),
    zeros here; it is compared only where the released one is finite.

    One-line mutation checked to fail: ``pairs = onehot.sum(0) * negatives.float().sum(-1)`` in
    ``contrastive_loss`` changed to ``pairs = negatives.float().sum(-1)`` (a sum over the rows
    of a class instead of their mean) fails at the first contrastive step."""
    C, B, U, d, n_lb, n_ulb, steps, start = 5, 6, 10, 4, 20, 40, 12, 4
    g = torch.Generator().manual_seed(0)
    lb_counts = torch.tensor([8, 5, 4, 2, 1])
    ref = Released(lb_counts, n_lb, n_ulb, C, d, it_total=steps, start=start)
    bank = FeatureBank(n_lb, n_ulb, C, d)
    hook, alg = FeatureBankHook(), type("Alg", (), {})()
    alg.feature_bank = bank
    keep_lb = lb_keep_probability(lb_counts)
    n_contra = n_empty = 0
    for it in range(steps):
        b = {"idx_lb": torch.randperm(n_lb, generator=g)[:B], "y_lb": torch.randint(0, C, (B,), generator=g),
             "idx_ulb": torch.randperm(n_ulb, generator=g)[:U]}
        for k, n in (("logits_lb", B), ("logits_w", U), ("logits_s", U), ("aux_lb", B), ("aux_w", U), ("aux_s", U)):
            b[k] = torch.randn(n, C, generator=g) * 4
        b["aux_lb"][torch.arange(B), b["y_lb"]] += 6.0  # some labeled rows above 0.98
        b["proj_lb"], b["proj_w"] = torch.randn(B, d, generator=g), torch.randn(U, d, generator=g)
        torch.manual_seed(100 + it)
        r = ref.step(it, it // 4, 3, b["idx_lb"], b["y_lb"], b["idx_ulb"], b["logits_lb"], b["logits_w"],
                     b["logits_s"], b["aux_lb"], b["aux_w"], b["aux_s"], b["proj_lb"], b["proj_w"])
        torch.manual_seed(100 + it)
        o = _ours_step(bank, hook, alg, it, b, keep_lb, steps, start, it // 4, 3)
        for k in r:
            assert o[k].item() == pytest.approx(float(r[k]), rel=1e-5, abs=1e-6), (it, k)
        n_contra += bool(r["contra"] > 0)
        assert torch.equal(bank.labels, ref.selected_label) and torch.equal(bank.class_freq, ref.cls_freq), it
        assert torch.equal(bank.feats, ref.feat_list), it
        known = ~ref.class_feat_center.isnan().any(-1)  # released: the mean of no row is NaN
        assert torch.allclose(bank.centres[known], ref.class_feat_center[known], atol=1e-6), it
        assert (bank.centres[~known] == 0).all(), it  # ours: zeros (docs/deviations.md)
        n_empty += int((~known).sum())
    assert n_contra == steps - start - 1 and (bank.labels >= 0).sum() > n_lb // 2 and bank.class_freq.min() > 0
    assert n_empty > 0  # the early steps had a class without any row


# --------------------------------------------------------------------------- the algorithm
def test_bacon_step_matches_the_spec():
    """One step on a real digits batch (contrastive loss on, class centres set by hand),
    recomputed from the network's outputs with the formulas of docs/method.md."""
    alg = build("bacon", bacon_start_ratio=0.0, bacon_freq_input="probs", bacon_freq_threshold=0.0,
                bacon_select_threshold=0.0)
    alg.it = 10
    b = batch(alg)
    bank = alg.feature_bank
    bank.centres = torch.randn(10, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # (train mode: batch statistics, the same outputs as in the step)
        out = alg.model(torch.cat([b["x_lb"], b["x_ulb_w"], b["x_ulb_s"]]))
    n_lb, n_u = b["x_lb"].shape[0], b["x_ulb_w"].shape[0]
    z, a, p = out["logits"], out["logits_aux"], out["proj"]
    z_lb, z_w, z_s = z[:n_lb], z[n_lb:n_lb + n_u], z[n_lb + n_u:]
    a_lb, a_w, a_s = a[:n_lb], a[n_lb:n_lb + n_u], a[n_lb + n_u:]
    alg.p_cutoff = torch.softmax(z_w, -1).max(-1).values.sort().values[n_u // 2 - 1:n_u // 2 + 1].mean().item()
    alg.abc_p_cutoff = alg.p_cutoff
    expected_bank = FeatureBank(len(alg.dataset_dict["train_lb"]), len(alg.dataset_dict["train_ulb"]), 10, 16)
    expected_bank.update_labels(b["idx_lb"], b["y_lb"], b["idx_ulb"], a_w.argmax(-1), torch.ones(n_u, dtype=torch.bool))
    torch.manual_seed(5)
    out_dict, log = alg.train_step(**b)
    torch.manual_seed(5)
    mask = (torch.softmax(z_w, -1).max(-1).values >= alg.p_cutoff).float()
    assert 0 < mask.mean() < 1
    sup = F.cross_entropy(z_lb, b["y_lb"])
    unsup = (F.cross_entropy(z_s, z_w.argmax(-1), reduction="none") * mask).mean()
    counts = torch.bincount(torch.as_tensor(alg.dataset_dict["train_lb"].targets), minlength=10)
    abc, _ = abc_loss(a_lb, b["y_lb"], a_w, a_s, lb_keep_probability(counts), 0 / alg.epochs, alg.p_cutoff)
    top = a_w.topk(3, -1).indices
    temps = balanced_temperatures(expected_bank.class_freq, 0.1, 0.0005, 10 / alg.num_train_iter)
    contra = contrastive_loss(p[:n_lb + n_u], torch.cat([b["y_lb"], top[:, 0]]), bank.centres,
                              reliable_negatives(b["y_lb"], top, 10), torch.ones(n_lb + n_u, dtype=torch.bool),
                              temps, 0.1, 64.0)
    assert torch.equal(bank.labels, expected_bank.labels) and torch.equal(bank.class_freq, expected_bank.class_freq)
    for key, value in (("sup_loss", sup), ("unsup_loss", unsup), ("abc_loss", abc), ("contra_loss", contra)):
        assert log[f"train/{key}"].item() == pytest.approx(value.item(), rel=1e-5), key
    assert contra.item() > 0
    assert out_dict["loss"].item() == pytest.approx((sup + unsup + abc + contra).item(), rel=1e-5)


def test_contrastive_loss_waits_for_its_start():
    alg = build("bacon", bacon_select_threshold=0.0)  # every row selected; start 0.5 of 100 iterations
    for it, active in ((50, False), (51, True)):
        alg.it = it
        _, log = alg.train_step(**batch(alg))
        assert (log["train/contra_loss"].item() != 0) == active, it


def test_bacon_evaluates_the_auxiliary_head_of_the_ema_model():
    alg = build("bacon")
    assert (ema_predictions(alg, nine=[alg.model.module.aux_classifier]) == 9).all()  # the auxiliary head says 9


def test_bacon_trains_the_quick_start_and_lists_its_keys(tmp_path, capsys):
    assert main(["train", "--algorithm", "bacon"] + digits_flags(tmp_path, iters=6, bacon_start_ratio=0.3)) == 0
    summary = run_summary(only_run(tmp_path))
    assert summary["method"] == "fixmatch+bacon" and summary["head"] == "aux" and summary["iterations_done"] == 6
    ckpt = load(os.path.join(only_run(tmp_path), "latest_model.pth"))
    assert set(ckpt["bacon_state"]) == {"labels", "feats", "class_freq", "centres"}
    evaluated = semilearn_eval(only_run(tmp_path), capsys)  # semilearn eval: the same head
    assert evaluated["head"] == "aux"
    assert evaluated["final"]["confusion_matrix"] == summary["final"]["confusion_matrix"]
    lines = help_defaults("bacon", capsys)
    expected = {"--bacon_abc_p_cutoff": "0.95", "--bacon_abc_loss_ratio": "1.0", "--bacon_loss_ratio": "1.0",
                "--bacon_proj_dim": "16", "--bacon_start_ratio": "0.5", "--bacon_T": "0.1", "--bacon_T_eps": "0.0005",
                "--bacon_neg_weight": "64.0", "--bacon_neg_topk": "3", "--bacon_select_threshold": "0.98",
                "--bacon_freq_threshold": "0.95", "--bacon_freq_input": "'logits'"}
    assert {k: lines.get(k) for k in expected} == expected


def test_bacon_resume_from_a_mid_run_checkpoint_is_bitwise(tmp_path, digits_yaml, snapshots):
    """12 iterations (6 an epoch), the contrastive loss from iteration 4, a checkpoint every
    4: resuming from iteration 4 and 8 ends with exactly the uninterrupted run's checkpoint
    (the Bernoulli masks draw from the restored RNG)."""
    run_flags = {"num_train_iter": 12, "epoch": 2, "num_eval_iter": 4, "p_cutoff": 0.12, "bacon_start_ratio": 0.3,
                 "bacon_abc_p_cutoff": 0.12, "bacon_select_threshold": 0.12, "bacon_freq_input": "probs",
                 "bacon_freq_threshold": 0.12}
    assert main(["train", "--algorithm", "bacon"] + flags(digits_yaml, tmp_path / "ref", **run_flags)) == 0
    ref_run = tmp_path / "ref" / "run"
    ref = load(ref_run / "latest_model.pth")
    assert ref["it"] == 12 and (ref["bacon_state"]["labels"] >= 0).sum() > 0
    assert not torch.equal(ref["bacon_state"]["centres"], torch.ones_like(ref["bacon_state"]["centres"]))
    for it in (4, 8):
        run = resume_a_copy(snapshots[it], tmp_path / f"resumed_from_{it}", "bacon", digits_yaml, run_flags,
                            ref_run / "config.yaml")
        assert f"at iteration {it}" in (run / "log.txt").read_text()
        assert_same_final_state(ref, load(run / "latest_model.pth"))


def test_bacon_resumes_bitwise_after_a_kill(tmp_path, digits_yaml):  # noqa: F811
    """SIGKILL after the first checkpoint, resume: bitwise the uninterrupted run. The
    contrastive loss from the third step and low thresholds: at the kill (iteration 4 or later)
    the bank holds labels and projections and the centres have moved, so the loss has used
    them. Resuming without restoring ``bacon_state`` (``load_states`` skipped in
    ``BaCon.load_model``) fails here: the model, the EMA model and the bank differ."""
    def moved(ckpt):
        state = ckpt["bacon_state"]
        assert ckpt["it"] >= 4
        assert (state["labels"] >= 0).sum() > 0
        assert not torch.equal(state["feats"], torch.ones_like(state["feats"]))
        assert not torch.equal(state["centres"], torch.ones_like(state["centres"]))

    kill_then_resume("bacon", {"p_cutoff": 0.12, "bacon_start_ratio": 0.1, "bacon_abc_p_cutoff": 0.12,
                               "bacon_select_threshold": 0.12, "bacon_freq_input": "probs",
                               "bacon_freq_threshold": 0.12}, digits_yaml, tmp_path, at_kill=moved)


# --------------------------------------------------------------------------- DDP
C, D, NLB, NULB, WORLD, STEPS = 3, 2, 8, 12, 2, 3


def _rank_batch(step, rank):
    """Each rank's own sample indices (disjoint, as DistributedSampler gives them)."""
    g = torch.Generator().manual_seed(10 * step + rank)
    idx_lb = torch.arange(rank, NLB, WORLD)[torch.randperm(NLB // WORLD, generator=g)[:2]]
    idx_ulb = torch.arange(rank, NULB, WORLD)[torch.randperm(NULB // WORLD, generator=g)[:3]]
    return (idx_lb, torch.randint(0, C, (2,), generator=g), idx_ulb, torch.randint(0, C, (3,), generator=g),
            torch.rand(3, generator=g) < (0.6 if rank == step % 2 else 0.0),  # one rank selects nothing
            torch.randn(2, D, generator=g), torch.rand(2, generator=g) < 0.7, torch.randn(3, D, generator=g),
            torch.rand(3, generator=g) < 0.7)


def _apply(bank, parts, all_gather):
    idx_lb, y_lb, idx_ulb, pred, sel, p_lb, s_lb, p_w, s_w = parts
    bank.update_labels(idx_lb, y_lb, idx_ulb, pred, sel, all_gather=all_gather)
    bank.update_features(idx_lb, p_lb, s_lb, idx_ulb, p_w, s_w, all_gather=all_gather)


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    from semi_usb.imb_algorithms.bacon.feature_bank import FeatureBank

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        bank = FeatureBank(NLB, NULB, C, D)
        for step in range(STEPS):
            _apply(bank, _rank_batch(step, rank), all_gather=True)
        torch.save(bank.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_feature_bank_identical_across_ranks(tmp_path):
    """Two gloo processes with their own batches (in each step one rank selects no unlabeled
    image): both banks equal one process fed both ranks' rows, rank 0 first, whose labeled
    images are written whenever either rank selected one."""
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    ref = FeatureBank(NLB, NULB, C, D)
    for step in range(STEPS):
        parts = [_rank_batch(step, r) for r in range(WORLD)]
        _apply(ref, [torch.cat([p[i] for p in parts]) for i in range(9)], all_gather=False)
    assert (ref.labels[:NLB] >= 0).sum() >= 4 and (ref.labels[NLB:] >= 0).any()
    for r in range(WORLD):
        for key, value in ref.state_dict().items():
            assert torch.equal(states[r][key], value), (r, key)
