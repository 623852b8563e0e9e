"""The per-sample reference of SeMi's memory bank, for the tests (``test_memory_bank``) and the
benchmark (``benchmarks/bench_bank.py``, which times the vectorised bank against it).

:class:`ReferenceBank` is written in the style of the authors' script (a Python loop over the
samples, a sort of the class's confidences per sample; Python loops over the classes for the
decay and the prototypes) with the spec's fixes (SEMI_METHOD.md, SeMi §1-2): each feature keeps
its own confidence, a candidate enters a class when it beats the lowest confidence held there
(an empty slot holds ``-inf``), only entries not written since the last decay decay, and a
prototype is the mean of the filled slots. :func:`reference_q` is PLCE's ``q``, one sample at a
time. No import of the package: the benchmark runs it as it is.
"""
from __future__ import annotations

import torch


class ReferenceBank:
    """Per-sample reference bank over ``feats (C, K, d)``, ``conf (C, K)``, ``filled (C, K)``."""

    def __init__(self, feats: torch.Tensor, conf: torch.Tensor, filled: torch.Tensor, beta: float):
        self.feats, self.conf, self.filled = feats.clone(), conf.clone(), filled.clone()
        self.fresh = torch.zeros_like(filled)
        self.beta = beta

    @classmethod
    def empty(cls, C: int, K: int, d: int, beta: float) -> "ReferenceBank":
        """A bank of ``C`` classes with ``K`` empty slots of ``d`` features each."""
        return cls(torch.zeros(C, K, d), torch.full((C, K), float("-inf")), torch.zeros(C, K, dtype=torch.bool), beta)

    def push(self, feats, labels, conf, mask) -> None:
        for i in range(feats.shape[0]):
            if not bool(mask[i]):
                continue
            c = int(labels[i])
            vals, idx = torch.sort(self.conf[c])  # ascending: the lowest first
            if bool(conf[i] > vals[0]):
                j = int(idx[0])
                self.feats[c, j] = feats[i]
                self.conf[c, j] = conf[i]
                self.filled[c, j] = True
                self.fresh[c, j] = True

    def decay(self) -> None:
        for c in range(self.conf.shape[0]):
            stale = self.filled[c] & ~self.fresh[c]
            self.conf[c] = torch.where(stale, self.conf[c] * self.beta, self.conf[c])
            self.fresh[c] = False

    def prototypes(self):
        C, _, d = self.feats.shape
        protos = torch.zeros(C, d, device=self.feats.device)
        has = torch.zeros(C, dtype=torch.bool, device=self.feats.device)
        for c in range(C):
            if bool(self.filled[c].any()):
                protos[c] = self.feats[c][self.filled[c]].mean(0)
                has[c] = True
        return protos, has

    def class_entries(self, c: int) -> list:
        """The filled entries of class ``c`` as ``(conf, feature tuple, fresh)``, by confidence
        (highest first), then feature."""
        ents = ((float(self.conf[c, j]), tuple(self.feats[c, j].tolist()), bool(self.fresh[c, j]))
                for j in range(self.conf.shape[1]) if bool(self.filled[c, j]))
        return sorted(ents, key=lambda e: (-e[0], e[1]))


def reference_q(feats_s, protos, has, T_p: float = 0.1):
    """``q``: per sample, the softmax over the classes with a prototype of ``-||f - proto|| / T_p``."""
    out = torch.zeros(feats_s.shape[0], protos.shape[0], device=feats_s.device)
    for n in range(feats_s.shape[0]):
        dist = (protos - feats_s[n]).norm(dim=1)
        logits = torch.where(has, -dist / T_p, torch.full_like(dist, float("-inf")))
        out[n] = torch.softmax(logits, dim=0)
    return out
