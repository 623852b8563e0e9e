"""The memory bank stays identical on every DDP rank (docs/method.md, "SeMi: memory bank"),
and so do the Embedding Align centre, the PLCE pseudo-label histogram's ``pi_hat`` and ACR's
distribution estimate (u_py, hence tau1): the reductions of ``semi_usb.imb_algorithms.state``.

Two CPU processes with the gloo backend; each rank has its own candidates, gathers them with
``gather_candidates`` and pushes; both banks must be equal to each other and to a
single-process bank fed the concatenated candidates (rank 0 first).

The method's formula modules import only torch (no semilearn), so the spawned workers import
them as they are.
"""

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

C, D, K, N, STEPS, WORLD = 4, 3, 3, 6, 6, 2


def _candidates(step, rank):
    g = torch.Generator().manual_seed(1000 * step + rank)
    feats = torch.randn(N, D, generator=g)
    labels = torch.randint(0, C, (N,), generator=g)
    conf = torch.rand(N, generator=g)
    mask = torch.rand(N, generator=g) < 0.7
    return feats, labels, conf, mask


def _teacher(rank):
    g = torch.Generator().manual_seed(77 + rank)
    return torch.softmax(torch.randn(N, D, generator=g), dim=1)


def _probs(step, rank):
    """Balanced-head probabilities: rank 0's batches are confident on classes 0/1 only,
    rank 1's on 2/3, so a per-rank estimate would differ from the global one."""
    g = torch.Generator().manual_seed(500 + 10 * step + rank)
    logits = torch.randn(N, C, generator=g)
    logits[:, 2 * rank + step % 2] += 4.0
    return torch.softmax(logits, dim=1)


KINDS = ("acr_code", "presence", "counts")


def _estimator(module, kind):
    return module.Tau1Estimator(torch.tensor([0.4, 0.3, 0.2, 0.1]), tau1=2.0, momentum=0.9, kind=kind)


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    from semi_usb.imb_algorithms.acr import distribution_estimate as de
    from semi_usb.imb_algorithms.semi import hard_examples as he
    from semi_usb.imb_algorithms.semi import memory_bank as mb
    from semi_usb.imb_algorithms.semi.plce import PseudoLabelHistogram

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        bank = mb.ConfidenceDecayMemoryBank(C, D, size=K, decay_beta=0.9)
        for step in range(STEPS):
            f, y, c, m = mb.gather_candidates(*_candidates(step, rank))
            assert f.shape == (world * N, D) and m.dtype == torch.bool
            bank.push(f, y, c, m)
            if step % 2 == 1:
                bank.decay()
        center = he.EmbeddingCenter(D)
        center.update(_teacher(rank), momentum=0.9)
        hist = PseudoLabelHistogram(C)
        hist.update(_candidates(0, rank)[1], torch.ones(N))
        hist.refresh(all_reduce=True)
        est = {kind: _estimator(de, kind) for kind in KINDS}
        for step in range(STEPS):
            for e in est.values():
                e.step(_probs(step, rank), 0.9, all_reduce=True)
        for e in est.values():
            e.end_epoch(update_tau1=True, epoch_steps=STEPS)
        torch.save({"bank": bank.state_dict(), "center": center.state_dict(), "hist": hist.state_dict(),
                    "est": {k: e.state_dict() for k, e in est.items()}}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_bank_identical_across_ranks(tmp_path):
    from semi_usb.imb_algorithms.semi.memory_bank import ConfidenceDecayMemoryBank

    mp.spawn(_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    ref = ConfidenceDecayMemoryBank(C, D, size=K, decay_beta=0.9)
    for step in range(STEPS):
        parts = [_candidates(step, r) for r in range(WORLD)]
        ref.push(*(torch.cat([p[i] for p in parts]) for i in range(4)))
        if step % 2 == 1:
            ref.decay()
    ref_state = ref.state_dict()
    assert ref.filled.any()

    for r in range(WORLD):
        for key, value in ref_state.items():
            assert torch.equal(states[r]["bank"][key], value), (r, key)

    # the Embedding Align centre, averaged over ranks, is identical too
    expect = 0.1 * torch.cat([_teacher(r) for r in range(WORLD)]).mean(0)
    for r in range(WORLD):
        assert torch.allclose(states[r]["center"], expect, atol=1e-7)

    # pi_hat from the counts of both ranks; each rank keeps its own counts
    labels = torch.cat([_candidates(0, r)[1] for r in range(WORLD)])
    pi_hat = torch.bincount(labels, minlength=C).float() / labels.numel()
    for r in range(WORLD):
        assert torch.allclose(states[r]["hist"]["pi_hat"], pi_hat), r
        assert torch.equal(states[r]["hist"]["counts"], torch.bincount(_candidates(0, r)[1], minlength=C)), r

    # ACR's estimate (each class vector) equals one process fed the global batch
    from semi_usb.imb_algorithms.acr import distribution_estimate as de

    for counts in KINDS:
        ref_est = _estimator(de, counts)
        for step in range(STEPS):
            ref_est.step(torch.cat([_probs(step, r) for r in range(WORLD)]), 0.9)
        ref_est.end_epoch(update_tau1=True, epoch_steps=STEPS)
        assert ref_est.u_py[2:].sum() > 0.3 and ref_est.u_py[:2].sum() > 0.3  # both ranks' classes
        for r in range(WORLD):
            for key, value in ref_est.state_dict().items():
                assert torch.allclose(states[r]["est"][counts][key], value, atol=1e-6), (r, counts, key)
