"""Tests of the Balanced Confidence Decay Memory Bank (SEMI_METHOD.md, SeMi §1)."""

import random

import pytest
import torch

from reference_bank import ReferenceBank
from semi_usb.imb_algorithms.semi.memory_bank import ConfidenceDecayMemoryBank, gather_candidates


def _t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def _entries(bank, c):
    """Filled entries of class c as a sorted list of (conf, feat tuple, fresh)."""
    out = []
    for k in range(bank.size):
        if bool(bank.filled[c, k]):
            out.append((float(bank.conf[c, k]), tuple(bank.feats[c, k].tolist()),
                        bool(bank.fresh[c, k])))
    return sorted(out, key=lambda e: (-e[0], e[1]))


def _feats(n, d=2, start=0.0):
    # distinct, recognisable feature rows: row i = [start + i, start + i + 0.5, ...]
    return (torch.arange(n, dtype=torch.float32).unsqueeze(1) + start) + 0.5 * torch.arange(d)


# ---------------------------------------------------------------------------------- push
def test_initial_state():
    bank = ConfidenceDecayMemoryBank(3, 4, size=5)
    assert bank.feats.shape == (3, 5, 4)
    assert bank.conf.shape == (3, 5)
    assert torch.all(bank.conf == float("-inf"))
    assert not bank.filled.any() and not bank.fresh.any()
    assert torch.equal(bank.fill(), torch.zeros(3, dtype=torch.long))
    protos, has = bank.prototypes()
    assert torch.equal(protos, torch.zeros(3, 4)) and not has.any()


def test_push_keeps_each_feature_with_its_confidence():
    bank = ConfidenceDecayMemoryBank(3, 2, size=2)
    f = _feats(5)
    bank.push(f, _t([0, 0, 0, 1, 2], torch.long), _t([0.5, 0.9, 0.7, 0.3, 0.2]), _t([1, 1, 1, 1, 0]))
    # class 0: three candidates, K = 2 -> the two best (0.9 -> row 1, 0.7 -> row 2)
    assert _entries(bank, 0) == [(pytest.approx(0.9), tuple(f[1].tolist()), True),
                                 (pytest.approx(0.7), tuple(f[2].tolist()), True)]
    assert _entries(bank, 1) == [(pytest.approx(0.3), tuple(f[3].tolist()), True)]
    assert _entries(bank, 2) == []  # its only candidate is masked out
    assert torch.equal(bank.fill(), _t([2, 1, 0], torch.long))
    # empty slots keep the sentinel and zero features
    assert bank.conf[1][~bank.filled[1]].eq(float("-inf")).all()
    assert bank.feats[2].eq(0).all()


def test_push_evicts_lowest_and_keeps_top_k():
    bank = ConfidenceDecayMemoryBank(1, 1, size=3)
    bank.push(_t([[1.0], [2.0], [3.0]]), _t([0, 0, 0], torch.long), _t([0.6, 0.8, 0.7]), _t([1, 1, 1]))
    # a lower candidate does not enter; an equal one does not either (stored entries win ties)
    bank.push(_t([[4.0], [5.0]]), _t([0, 0], torch.long), _t([0.5, 0.6]), _t([1, 1]))
    assert sorted(bank.feats[0, :, 0].tolist()) == [1.0, 2.0, 3.0]
    # a higher one evicts the lowest (0.6, feature 1.0)
    bank.push(_t([[6.0]]), _t([0], torch.long), _t([0.65]), _t([1]))
    ents = _entries(bank, 0)
    assert [e[1][0] for e in ents] == [2.0, 3.0, 6.0]
    assert [round(e[0], 4) for e in ents] == [0.8, 0.7, 0.65]


def test_masked_out_candidates_are_ignored_even_if_confident():
    bank = ConfidenceDecayMemoryBank(2, 1, size=2)
    bank.push(_t([[1.0], [2.0], [3.0]]), _t([0, 0, 1], torch.long), _t([0.99, 0.1, 1.0]),
              torch.tensor([False, True, False]))
    assert _entries(bank, 0) == [(pytest.approx(0.1), (2.0,), True)]
    assert _entries(bank, 1) == []
    # float mask 0/1 behaves the same
    bank.push(_t([[4.0]]), _t([1], torch.long), _t([0.5]), _t([0.0]))
    assert _entries(bank, 1) == []


def test_non_finite_confidences_never_enter():
    bank = ConfidenceDecayMemoryBank(1, 1, size=3)
    bank.push(_t([[1.0], [2.0], [3.0]]), _t([0, 0, 0], torch.long), _t([float("nan"), float("inf"), 0.2]),
              _t([1, 1, 1]))
    assert _entries(bank, 0) == [(pytest.approx(0.2), (3.0,), True)]


def test_many_candidates_of_one_class_in_one_push_more_than_k():
    bank = ConfidenceDecayMemoryBank(2, 1, size=3)
    bank.push(_t([[10.0], [11.0]]), _t([0, 0], torch.long), _t([0.55, 0.95]), _t([1, 1]))
    conf = [0.3, 0.9, 0.5, 0.8, 0.1, 0.85, 0.6]
    f = _t([[float(i)] for i in range(7)])
    bank.push(f, torch.zeros(7, dtype=torch.long), _t(conf), torch.ones(7))
    ents = _entries(bank, 0)
    # top-3 of {0.55, 0.95 (stored)} + candidates: 0.95 (stored, not fresh? written in the first
    # push and no decay since -> still fresh), 0.9, 0.85
    assert [round(e[0], 4) for e in ents] == [0.95, 0.9, 0.85]
    assert [e[1][0] for e in ents] == [11.0, 1.0, 5.0]
    assert _entries(bank, 1) == []


def test_candidate_ties_earlier_in_batch_wins():
    bank = ConfidenceDecayMemoryBank(1, 1, size=2)
    bank.push(_t([[1.0], [2.0], [3.0]]), _t([0, 0, 0], torch.long), _t([0.5, 0.5, 0.5]), _t([1, 1, 1]))
    assert sorted(bank.feats[0, :, 0].tolist()) == [1.0, 2.0]


def test_empty_slots_fill_before_eviction():
    bank = ConfidenceDecayMemoryBank(1, 1, size=3)
    bank.push(_t([[1.0]]), _t([0], torch.long), _t([0.9]), _t([1]))
    bank.push(_t([[2.0]]), _t([0], torch.long), _t([0.0]), _t([1]))  # conf 0 still enters
    assert int(bank.fill()[0]) == 2
    assert sorted(bank.feats[0, :, 0].tolist()) == [0.0, 1.0, 2.0]  # one zero = empty slot


def test_push_detaches_and_casts():
    bank = ConfidenceDecayMemoryBank(2, 3, size=2)
    f = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    bank.push(f * 2, _t([0, 1, 0, 1], torch.long), torch.rand(4, dtype=torch.float64),
              torch.ones(4, dtype=torch.bool))
    assert bank.feats.dtype == torch.float32 and not bank.feats.requires_grad
    assert bank.conf.dtype == torch.float32
    stored = bank.feats[bank.filled].sort(0).values
    assert torch.allclose(stored, (f * 2).detach().float().sort(0).values)


def test_push_empty_batch_and_shape_checks():
    bank = ConfidenceDecayMemoryBank(2, 3, size=2)
    bank.push(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0))
    assert not bank.filled.any()
    with pytest.raises(ValueError):
        bank.push(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError):
        bank.push(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), torch.zeros(2), torch.ones(2))


# ---------------------------------------------------------------------------------- decay
def test_decay_only_stale_entries_and_clears_fresh():
    beta = 0.5
    bank = ConfidenceDecayMemoryBank(2, 1, size=2, decay_beta=beta)
    bank.push(_t([[1.0], [2.0]]), _t([0, 1], torch.long), _t([0.8, 0.6]), _t([1, 1]))
    bank.decay()  # both fresh -> untouched, flags cleared
    assert sorted(bank.conf[bank.filled].tolist()) == pytest.approx([0.6, 0.8])
    assert not bank.fresh.any()
    bank.push(_t([[3.0]]), _t([0], torch.long), _t([0.7]), _t([1]))  # new entry in class 0
    assert int(bank.fresh.sum()) == 1
    bank.decay()
    assert _entries(bank, 0) == [(pytest.approx(0.7), (3.0,), False),
                                 (pytest.approx(0.4), (1.0,), False)]
    assert _entries(bank, 1) == [(pytest.approx(0.3), (2.0,), False)]
    assert not bank.fresh.any()
    # empty slots stay at the sentinel
    assert bank.conf[~bank.filled].eq(float("-inf")).all()
    bank.decay()
    assert _entries(bank, 0)[0][0] == pytest.approx(0.35)


def test_decay_lets_fresh_entries_take_the_seat():
    bank = ConfidenceDecayMemoryBank(1, 1, size=1, decay_beta=0.5)
    bank.push(_t([[1.0]]), _t([0], torch.long), _t([0.9]), _t([1]))
    bank.decay()
    bank.decay()  # 0.9 -> 0.45
    bank.push(_t([[2.0]]), _t([0], torch.long), _t([0.5]), _t([1]))
    assert _entries(bank, 0) == [(pytest.approx(0.5), (2.0,), True)]


# ---------------------------------------------------------------------------------- prototypes
def test_prototypes_mean_of_filled_slots_only():
    bank = ConfidenceDecayMemoryBank(3, 2, size=4)
    f = _t([[1.0, 2.0], [3.0, 6.0], [5.0, -1.0]])
    bank.push(f, _t([0, 0, 2], torch.long), _t([0.9, 0.8, 0.7]), _t([1, 1, 1]))
    protos, has = bank.prototypes()
    assert torch.equal(has, torch.tensor([True, False, True]))
    assert torch.allclose(protos[0], _t([2.0, 4.0]))  # not (1+3)/4
    assert torch.equal(protos[1], torch.zeros(2))
    assert torch.allclose(protos[2], _t([5.0, -1.0]))
    assert torch.equal(bank.fill(), _t([2, 0, 1], torch.long))


# ---------------------------------------------------------------------------------- state
def test_state_dict_round_trip():
    torch.manual_seed(0)
    bank = ConfidenceDecayMemoryBank(4, 3, size=3)
    for _ in range(3):
        bank.push(torch.randn(6, 3), torch.randint(0, 4, (6,)), torch.rand(6), torch.rand(6) > 0.3)
        bank.decay()
    bank.push(torch.randn(6, 3), torch.randint(0, 4, (6,)), torch.rand(6), torch.ones(6))
    state = bank.state_dict()
    assert set(state) == {"feats", "conf", "filled", "fresh"}
    other = ConfidenceDecayMemoryBank(4, 3, size=3)
    other.load_state_dict({k: v.clone() for k, v in state.items()})
    for k, v in state.items():
        assert torch.equal(getattr(other, k), v), k
    # the state is a copy, not a view
    state["conf"].fill_(7.0)
    assert not torch.equal(bank.conf, state["conf"])
    # both banks evolve identically afterwards
    args = (torch.randn(8, 3), torch.randint(0, 4, (8,)), torch.rand(8), torch.ones(8))
    bank.decay(); other.decay()
    bank.push(*args); other.push(*args)
    for k in ("feats", "conf", "filled", "fresh"):
        assert torch.equal(getattr(other, k), getattr(bank, k)), k
    with pytest.raises(ValueError):
        ConfidenceDecayMemoryBank(4, 3, size=2).load_state_dict(bank.state_dict())


def test_to_device_keeps_state():
    bank = ConfidenceDecayMemoryBank(2, 2, size=2)
    bank.push(torch.randn(3, 2), _t([0, 1, 1], torch.long), torch.rand(3), torch.ones(3))
    before = bank.state_dict()
    assert bank.to("cpu") is bank
    assert bank.device == torch.device("cpu")
    for k, v in bank.state_dict().items():
        assert torch.equal(v, before[k])


def test_gather_candidates_without_dist_is_identity():
    f, y = torch.randn(3, 2, requires_grad=True), _t([0, 1, 0], torch.long)
    c, m = torch.rand(3), torch.ones(3, dtype=torch.bool)
    out = gather_candidates(f, y, c, m)
    assert torch.equal(out[0], f.detach()) and not out[0].requires_grad
    assert torch.equal(out[1], y) and torch.equal(out[2], c) and torch.equal(out[3], m)


@pytest.mark.parametrize("C,K,max_n", [(3, 4, 24), (12, 3, 6), (1, 5, 9)])
def test_vectorised_push_matches_per_sample_reference(C, K, max_n):
    # (3, 4, 24): C <= N mostly (class-wise sort); (12, 3, 6): C > N (per-candidate sort)
    rng = random.Random(1234 + C)
    torch.manual_seed(C * 100 + K)
    beta = 0.9
    d = 3
    bank = ConfidenceDecayMemoryBank(C, d, size=K, decay_beta=beta)
    ref = ReferenceBank.empty(C, K, d, beta)
    for step in range(150):
        n = rng.randint(1, max_n)
        # skewed labels so that some classes get more than K candidates in one push
        probs = torch.tensor([2.0 ** -c for c in range(C)])
        labels = torch.multinomial(probs, n, replacement=True)
        conf = torch.rand(n)
        mask = torch.rand(n) < 0.7
        feats = torch.randn(n, d)
        bank.push(feats, labels, conf, mask)
        ref.push(feats, labels, conf, mask)
        if step % 5 == 4:
            bank.decay()
            ref.decay()
        for c in range(C):
            got, want = _entries(bank, c), ref.class_entries(c)
            assert len(got) == len(want), (step, c)
            for g, w in zip(got, want):
                assert g[0] == pytest.approx(w[0], rel=1e-6, abs=1e-7), (step, c)
                assert g[1] == pytest.approx(w[1]), (step, c)
                assert g[2] == w[2], (step, c)
        # empty slots untouched
        assert bank.conf[~bank.filled].eq(float("-inf")).all()
        assert bank.feats[~bank.filled].eq(0).all()
        assert torch.equal(bank.fresh & ~bank.filled, torch.zeros_like(bank.fresh))
    # prototypes agree with the reference's means
    protos, has = bank.prototypes()
    for c in range(C):
        ents = ref.class_entries(c)
        assert bool(has[c]) == (len(ents) > 0)
        if ents:
            mean = torch.tensor([e[1] for e in ents]).mean(0)
            assert torch.allclose(protos[c], mean, atol=1e-6)
