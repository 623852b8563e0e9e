"""Tests of OHEML weights and Embedding Align (SEMI_METHOD.md, SeMi §3 and §4)."""

import math

import pytest
import torch

from semi_usb.imb_algorithms.semi.hard_examples import (
    embedding_align_loss,
    hard_example_weights,
    normalized_entropy,
    update_center,
)


def _t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


# ---------------------------------------------------------------------------------- OHEML
def test_normalized_entropy_extremes_and_hand_value():
    p = _t([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    h = normalized_entropy(p)
    assert h[0].item() < 1e-6
    assert h[1].item() == pytest.approx(1.0, abs=1e-6)
    h2 = normalized_entropy(_t([[0.9, 0.1]]))
    expect = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert h2.item() == pytest.approx(expect, rel=1e-5)
    # single class: no division by log(1) = 0
    assert torch.equal(normalized_entropy(torch.ones(3, 1)), torch.zeros(3))


def test_hard_example_weights_extremes():
    s = 0.75
    p = torch.cat([torch.eye(5), torch.full((1, 5), 0.2)])
    w = hard_example_weights(p, s=s)
    assert torch.allclose(w[:5], torch.full((5,), 1 - s), atol=1e-6)
    assert w[5].item() == pytest.approx(1.0, abs=1e-6)
    # default s = 0.75 and monotone in the entropy
    w2 = hard_example_weights(_t([[0.9, 0.1], [0.6, 0.4]]))
    assert 0.25 < w2[0].item() < w2[1].item() < 1.0
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert w2[0].item() == pytest.approx(0.75 * h + 0.25, rel=1e-5)


# ---------------------------------------------------------------------------------- Embedding Align
def _slow_align(fw, fs, center, mask, T_e):
    N, d = fw.shape
    total = 0.0
    for n in range(N):
        tl = [(float(fw[n, j]) - float(center[j])) / (T_e / 5) for j in range(d)]
        m = max(tl)
        tz = sum(math.exp(v - m) for v in tl)
        t = [math.exp(v - m) / tz for v in tl]
        sl = [float(fs[n, j]) / T_e for j in range(d)]
        m2 = max(sl)
        lse = m2 + math.log(sum(math.exp(v - m2) for v in sl))
        ce = -sum(t[j] * (sl[j] - lse) for j in range(d))
        total += ce * (1 - float(mask[n]))
    return total / N


def test_embedding_align_matches_slow_reference():
    torch.manual_seed(0)
    fw, fs = torch.randn(5, 4), torch.randn(5, 4)
    center = torch.randn(4) * 0.1
    mask = _t([1, 0, 0, 1, 0])
    loss, teacher = embedding_align_loss(fw, fs, center, mask, T_e=0.5)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(_slow_align(fw, fs, center, mask, 0.5), rel=1e-5)
    assert torch.allclose(teacher, torch.softmax((fw - center) / 0.1, dim=1))
    assert not teacher.requires_grad
    # default temperature 0.09 (teacher 0.018)
    loss_d, _ = embedding_align_loss(fw, fs, center, mask)
    assert loss_d.item() == pytest.approx(_slow_align(fw, fs, center, mask, 0.09), rel=1e-4)


def test_embedding_align_only_masked_out_samples_contribute():
    torch.manual_seed(1)
    fw, fs = torch.randn(4, 6), torch.randn(4, 6)
    center = torch.zeros(6)
    mask = torch.tensor([True, False, True, False])
    loss, _ = embedding_align_loss(fw, fs, center, mask)
    # changing the features of a confident (mask = 1) sample changes nothing
    fw2, fs2 = fw.clone(), fs.clone()
    fw2[0, 0] += 5.0
    fs2[2, 1] -= 3.0
    loss2, _ = embedding_align_loss(fw2, fs2, center, mask)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    # ... but changing a masked-out one does
    fs2[1, 0] += 1.0  # (a constant shift of a whole row would not change log_softmax)
    loss3, _ = embedding_align_loss(fw2, fs2, center, mask)
    assert loss3.item() != pytest.approx(loss.item(), rel=1e-6)
    # all confident -> 0; mean over all N, not over the masked-out ones
    zero, _ = embedding_align_loss(fw, fs, center, torch.ones(4))
    assert zero.item() == 0.0
    one_out, _ = embedding_align_loss(fw, fs, center, _t([1, 0, 1, 1]))
    full, _ = embedding_align_loss(fw[1:2], fs[1:2], center, torch.zeros(1))
    assert one_out.item() == pytest.approx(full.item() / 4, rel=1e-6)


def test_embedding_align_gradient_only_to_masked_out_strong_features():
    torch.manual_seed(2)
    fw = torch.randn(4, 5, requires_grad=True)
    fs = torch.randn(4, 5, requires_grad=True)
    mask = _t([1, 0, 1, 0])
    loss, _ = embedding_align_loss(fw, fs, torch.zeros(5), mask, T_e=0.2)
    loss.backward()
    assert fw.grad is None  # teacher detached
    g = fs.grad
    assert torch.all(g[0] == 0) and torch.all(g[2] == 0)
    assert g[1].abs().sum() > 0 and g[3].abs().sum() > 0


def test_update_center():
    center = torch.zeros(3)
    teacher = _t([[0.2, 0.3, 0.5], [0.4, 0.5, 0.1]])
    c1 = update_center(center, teacher)  # default momentum 0.9
    assert c1.tolist() == pytest.approx([0.03, 0.04, 0.03])
    assert torch.equal(center, torch.zeros(3))  # not modified in place
    c2 = update_center(c1, teacher, momentum=0.5)
    assert c2.tolist() == pytest.approx([0.5 * 0.03 + 0.5 * 0.3, 0.5 * 0.04 + 0.5 * 0.4,
                                         0.5 * 0.03 + 0.5 * 0.3])
    # a (d,) batch mean is accepted too; all_reduce is a no-op without a process group
    c3 = update_center(center, teacher.mean(0), all_reduce=True)
    assert torch.allclose(c3, c1)


def test_center_feeds_back_into_teacher():
    fw = _t([[1.0, 0.0]])
    fs = _t([[0.0, 0.0]])
    _, t0 = embedding_align_loss(fw, fs, torch.zeros(2), torch.zeros(1), T_e=5.0)  # teacher T = 1
    assert t0[0].tolist() == pytest.approx([math.e / (math.e + 1), 1 / (math.e + 1)], rel=1e-6)
    _, t1 = embedding_align_loss(fw, fs, _t([1.0, 0.0]), torch.zeros(1), T_e=5.0)
    assert t1[0].tolist() == pytest.approx([0.5, 0.5])
