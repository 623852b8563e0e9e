"""Tests of Pseudo-Label Certainty Enhancement (SEMI_METHOD.md, SeMi §2)."""

import math

import pytest
import torch

from semi_usb.imb_algorithms.semi.plce import PseudoLabelHistogram, enhance, mix_weights, semantic_label


def _t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def _slow_semantic_label(f, protos, has, T_p):
    N, C = f.shape[0], protos.shape[0]
    q = torch.zeros(N, C, dtype=torch.float64)
    for n in range(N):
        logits = {}
        for c in range(C):
            if bool(has[c]):
                sq = sum((float(f[n, j]) - float(protos[c, j])) ** 2 for j in range(f.shape[1]))
                logits[c] = -math.sqrt(sq) / T_p
        if not logits:
            continue
        m = max(logits.values())
        z = sum(math.exp(v - m) for v in logits.values())
        for c, v in logits.items():
            q[n, c] = math.exp(v - m) / z
    return q


def test_semantic_label_tiny_hand_example():
    protos = _t([[0.0, 0.0], [3.0, 4.0]])
    f = _t([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    q = semantic_label(f, protos, torch.tensor([True, True]), T_p=1.0)
    # distances: sample 0 -> (0, 5); sample 1 -> (5, 0); sample 2 -> (1, sqrt(18))
    e5 = math.exp(-5.0)
    assert q[0].tolist() == pytest.approx([1 / (1 + e5), e5 / (1 + e5)], rel=1e-5)
    assert q[1].tolist() == pytest.approx([e5 / (1 + e5), 1 / (1 + e5)], rel=1e-5)
    a, b = math.exp(-1.0), math.exp(-math.sqrt(18.0))
    assert q[2].tolist() == pytest.approx([a / (a + b), b / (a + b)], rel=1e-5)
    # T_p sharpens: default 0.1
    q01 = semantic_label(f[2:], protos, torch.tensor([True, True]))
    a, b = math.exp(-10.0), math.exp(-10 * math.sqrt(18.0))
    assert q01[0].tolist() == pytest.approx([a / (a + b), b / (a + b)], rel=1e-5)


def test_semantic_label_class_without_prototype_gets_zero():
    protos = _t([[0.0, 0.0], [100.0, 100.0], [1.0, 0.0]])  # row 1 is "empty": must be ignored
    has = torch.tensor([True, False, True])
    f = _t([[100.0, 100.0], [0.5, 0.0]])
    q = semantic_label(f, protos, has, T_p=1.0)
    assert torch.all(q[:, 1] == 0)
    assert torch.allclose(q.sum(1), torch.ones(2))
    assert q[1, 0].item() == pytest.approx(0.5) and q[1, 2].item() == pytest.approx(0.5)


def test_semantic_label_no_prototype_is_all_zero_without_nan():
    q = semantic_label(torch.randn(4, 3), torch.zeros(5, 3), torch.zeros(5, dtype=torch.bool))
    assert q.shape == (4, 5)
    assert torch.equal(q, torch.zeros(4, 5))


def test_semantic_label_matches_slow_reference():
    torch.manual_seed(0)
    f = torch.randn(7, 4)
    protos = torch.randn(6, 4)
    has = torch.tensor([True, False, True, True, False, True])
    q = semantic_label(f, protos, has, T_p=0.5)
    ref = _slow_semantic_label(f, protos, has, 0.5)
    assert torch.allclose(q.double(), ref, atol=1e-5)


def test_mix_weights():
    pi_hat = _t([0.5, 0.3, 0.2])
    lam = mix_weights(pi_hat, alpha=0.4, progress=0.5)
    assert lam.tolist() == pytest.approx([0.1, 0.06, 0.04])
    lam_t = mix_weights(pi_hat, alpha=0.4, progress=torch.tensor(0.5))
    assert torch.allclose(lam_t, lam)
    assert torch.equal(mix_weights(torch.zeros(3), 0.4, 0.9), torch.zeros(3))


def test_enhance_mixes_per_class_without_renormalising():
    p = _t([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = _t([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # second row: no prototype at all
    lam = _t([0.5, 0.25, 0.0])
    pt = enhance(p, q, lam)
    expect = [[0.35, 0.15 + 0.25, 0.1], [0.05, 0.075, 0.8]]
    assert torch.allclose(pt, _t(expect))
    # rows need not sum to 1
    assert not torch.allclose(pt.sum(1), torch.ones(2))
    # lambda = 0 leaves p unchanged
    assert torch.equal(enhance(p, q, torch.zeros(3)), p)


def test_histogram_counts_and_refresh_semantics():
    h = PseudoLabelHistogram(3)
    assert torch.equal(h.pi_hat, torch.zeros(3))
    p = _t([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.7, 0.2]])
    h.update(p, _t([1, 1, 0, 1]))
    assert h.counts.tolist() == [1, 2, 0]
    # pi_hat only changes on refresh
    assert torch.equal(h.pi_hat, torch.zeros(3))
    assert h.refresh().tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    # (N,) labels and a bool mask work too; counts accumulate since the start of training
    h.update(torch.tensor([2, 2, 0]), torch.tensor([True, True, False]))
    assert h.counts.tolist() == [1, 2, 2]
    assert h.pi_hat.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    h.refresh()
    assert h.pi_hat.tolist() == pytest.approx([0.2, 0.4, 0.4])
    # with duplicate labels in one batch each sample counts (true counts, not presence)
    h2 = PseudoLabelHistogram(2)
    h2.update(torch.tensor([1, 1, 1]), torch.ones(3))
    assert h2.counts.tolist() == [0, 3]


def test_histogram_refresh_without_counts_stays_zero():
    h = PseudoLabelHistogram(4)
    h.update(torch.tensor([0, 1]), torch.zeros(2))
    assert torch.equal(h.refresh(), torch.zeros(4))
    assert not torch.isnan(h.pi_hat).any()


def test_histogram_state_dict_round_trip():
    h = PseudoLabelHistogram(3)
    h.update(torch.tensor([0, 2, 2]), torch.ones(3))
    h.refresh()
    h.update(torch.tensor([1]), torch.ones(1))
    other = PseudoLabelHistogram(3)
    other.load_state_dict(h.state_dict())
    assert torch.equal(other.counts, h.counts) and torch.equal(other.pi_hat, h.pi_hat)
    other.refresh()
    h.refresh()
    assert torch.equal(other.pi_hat, h.pi_hat)
    with pytest.raises(ValueError):
        PseudoLabelHistogram(4).load_state_dict(h.state_dict())


def test_pipeline_bank_to_enhanced_label():
    """Bank prototypes -> q -> p~ wiring on a tiny example."""
    from semi_usb.imb_algorithms.semi.memory_bank import ConfidenceDecayMemoryBank

    bank = ConfidenceDecayMemoryBank(2, 2, size=2)
    bank.push(_t([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0]]), torch.tensor([0, 0, 1]),
              _t([0.9, 0.9, 0.9]), torch.ones(3))
    protos, has = bank.prototypes()
    assert torch.allclose(protos, _t([[1.0, 0.0], [10.0, 0.0]]))
    q = semantic_label(_t([[1.0, 0.0]]), protos, has, T_p=1.0)
    e9 = math.exp(-9.0)
    assert q[0].tolist() == pytest.approx([1 / (1 + e9), e9 / (1 + e9)], rel=1e-5)
    lam = mix_weights(_t([0.5, 0.5]), alpha=0.4, progress=1.0)
    pt = enhance(_t([[0.4, 0.6]]), q, lam)
    q0, q1 = q[0].tolist()
    assert pt[0].tolist() == pytest.approx([0.8 * 0.4 + 0.2 * q0, 0.8 * 0.6 + 0.2 * q1])


def test_class_weights_freq_and_inverse_frequency():
    from semi_usb.imb_algorithms.semi.plce import class_weights

    counts = torch.tensor([6, 3, 0, 1])
    assert class_weights(counts).tolist() == pytest.approx([0.6, 0.3, 0.0, 0.1])
    inv = [1 / 6, 1 / 3, 0.0, 1.0]
    assert class_weights(counts, "inv_freq").tolist() == pytest.approx([v / sum(inv) for v in inv])
    assert torch.equal(class_weights(torch.zeros(3, dtype=torch.long), "inv_freq"), torch.zeros(3))
    with pytest.raises(ValueError):
        class_weights(counts, "inverse")
    h = PseudoLabelHistogram(4, weights="inv_freq")
    h.update(torch.tensor([0, 0, 1]), torch.ones(3))
    assert h.refresh().tolist() == pytest.approx([1 / 3, 2 / 3, 0.0, 0.0])
