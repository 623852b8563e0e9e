"""The small CPU networks (semi_usb/nets.py): USB's optimizer exempts only biases and
batch-norm parameters from weight decay, never a conv kernel or a linear weight."""
from __future__ import annotations

import pytest

from conftest import build_on_digits as build


@pytest.mark.parametrize("method", ["fixmatch", "acr"])
def test_weight_decay_on_every_kernel_and_on_no_bias_or_batch_norm(method):
    alg = build(method)
    decay = {id(p): g["weight_decay"] for g in alg.optimizer.param_groups for p in g["params"]}
    names = dict(alg.model.named_parameters())
    assert any(".1.0.weight" in n and p.ndim == 4 for n, p in names.items())  # the kernel the old rule exempted
    for name, p in names.items():
        expected = 0.0 if p.ndim <= 1 else alg.args.weight_decay
        assert decay[id(p)] == expected, name
