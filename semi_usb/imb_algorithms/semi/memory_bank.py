"""Balanced Confidence Decay Memory Bank (BCDMB) of SeMi.

Spec: docs/method.md, "SeMi: memory bank" (where it departs from the authors' released
script: each feature keeps its own confidence, prototypes average filled slots only, the
feature size comes from the backbone, and the push is vectorised).

Each class owns ``K`` slots holding a detached feature and the confidence it was stored
with. A push keeps, per class, the top-``K`` by confidence of (stored entries + the step's
candidates of that class); a decay multiplies the confidence of every filled slot not written
since the previous decay by ``beta``; prototypes are the means of the filled slots.

All per-step operations (:meth:`ConfidenceDecayMemoryBank.push`,
:meth:`~ConfidenceDecayMemoryBank.decay`, :meth:`~ConfidenceDecayMemoryBank.prototypes`)
are vectorised with static shapes: no Python loop over samples or classes, no boolean
indexing, no host-device synchronisation. The bank holds no global state; under DDP the
caller gathers the candidates of all ranks with :func:`gather_candidates` so that every rank
pushes the same candidates in the same order and the banks stay identical.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor

from ..state import Device, all_gather_cat

__all__ = ["ConfidenceDecayMemoryBank", "gather_candidates"]

#: Confidence of an empty slot (and of a masked-out candidate). Real confidences are in
#: ``[0, 1]``, so an empty slot is always evicted before any stored entry.
EMPTY_CONF = float("-inf")


class ConfidenceDecayMemoryBank:
    """Per-class top-``K`` feature queue with confidence decay (docs/method.md, "SeMi: memory bank").

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``d`` (the backbone's ``num_features``, not a fixed 128).
        size: slots per class ``K`` (128 in the authors' runs). Equal capacity per class is
            what makes the bank "balanced".
        decay_beta: factor ``beta`` applied by :meth:`decay` to stale confidences (0.99).
        device: device of the bank's tensors (default CPU).
        dtype: dtype of the stored features (default ``torch.float32``). Confidences are
            always stored as ``float32``.

    Public tensors (views, shapes static):
        ``feats`` ``(C, K, d)``, ``conf`` ``(C, K)`` (``-inf`` in empty slots),
        ``filled`` ``(C, K)`` bool, ``fresh`` ``(C, K)`` bool (written since the last
        :meth:`decay`).

    Implementation note: the tensors are views of flat buffers with one extra *scratch* slot
    at the end. :meth:`push` writes every candidate with one static-shape ``index_put_``;
    candidates that do not enter are written to the scratch slot. A push costs
    ``O(min(N, C)*K*log K)`` on confidences (one row sort per class or per candidate) plus
    ``O(N*K)`` comparisons and ``O(N*d)`` feature writes; the ``(C, K, d)`` feature tensor is
    never rewritten.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        size: int = 128,
        decay_beta: float = 0.99,
        device: Device = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_classes < 1 or feat_dim < 1 or size < 1:
            raise ValueError("num_classes, feat_dim and size must be positive")
        self.num_classes = int(num_classes)
        self.feat_dim = int(feat_dim)
        self.size = int(size)
        self.decay_beta = float(decay_beta)
        self.dtype = dtype
        device = torch.device("cpu") if device is None else torch.device(device)
        n = self.num_classes * self.size + 1  # + 1 scratch slot
        self._feat_buf = torch.zeros(n, self.feat_dim, device=device, dtype=dtype)
        self._conf_buf = torch.full((n,), EMPTY_CONF, device=device, dtype=torch.float32)
        self._filled_buf = torch.zeros(n, device=device, dtype=torch.bool)
        self._fresh_buf = torch.zeros(n, device=device, dtype=torch.bool)

    # ------------------------------------------------------------------ views
    @property
    def device(self) -> torch.device:
        return self._conf_buf.device

    @property
    def _n(self) -> int:
        return self.num_classes * self.size

    @property
    def feats(self) -> Tensor:
        """Stored features, ``(C, K, d)``; empty slots hold zeros."""
        return self._feat_buf[: self._n].view(self.num_classes, self.size, self.feat_dim)

    @property
    def conf(self) -> Tensor:
        """Stored confidences, ``(C, K)``; empty slots hold ``-inf``."""
        return self._conf_buf[: self._n].view(self.num_classes, self.size)

    @property
    def filled(self) -> Tensor:
        """Whether a slot holds an entry, ``(C, K)`` bool."""
        return self._filled_buf[: self._n].view(self.num_classes, self.size)

    @property
    def fresh(self) -> Tensor:
        """Whether a slot was written since the last :meth:`decay`, ``(C, K)`` bool."""
        return self._fresh_buf[: self._n].view(self.num_classes, self.size)

    # ------------------------------------------------------------------ ops
    @torch.no_grad()
    def push(self, feats: Tensor, labels: Tensor, conf: Tensor, mask: Tensor) -> None:
        """Offer candidates to the bank (docs/method.md, "SeMi: memory bank", push).

        After the call, each class holds the top-``K`` by confidence of (its stored entries +
        the candidates with that label and ``mask`` true). Each feature is stored with its
        own confidence (the released script lets them drift apart), detached and cast to the bank dtype; entries that enter
        are marked ``filled`` and ``fresh``.

        Ties: a stored entry wins over a candidate of equal confidence (a candidate must
        *exceed* the lowest stored confidence to enter, as in the spec); among candidates of
        equal confidence the earlier one in the batch wins; among stored entries of equal
        confidence the one in the lower slot index is evicted first (so empty slots fill
        from slot 0). The slot order carries no meaning.

        Args:
            feats: ``(N, d)`` candidate features (e.g. the strong view's ``feat``).
            labels: ``(N,)`` long pseudo-labels in ``[0, C)`` (not checked: a check would
                need a host sync).
            conf: ``(N,)`` confidences in ``[0, 1]`` (``max p~``).
            mask: ``(N,)`` 0/1 or bool; only candidates with a non-zero mask (and a finite
                confidence) are offered.

        Vectorised: no loop over samples or classes, static shapes, no host sync. Under DDP
        pass the output of :func:`gather_candidates`.
        """
        n_cand = feats.shape[0]
        if feats.dim() != 2 or feats.shape[1] != self.feat_dim:
            raise ValueError(f"feats must be (N, {self.feat_dim}), got {tuple(feats.shape)}")
        if labels.shape != (n_cand,) or conf.shape != (n_cand,) or mask.shape != (n_cand,):
            raise ValueError("labels, conf and mask must all be (N,) with N = feats.shape[0]")
        if n_cand == 0:
            return
        dev = self.device
        C, K = self.num_classes, self.size

        feats = feats.detach().to(device=dev, dtype=self.dtype)
        labels = labels.detach().to(device=dev, dtype=torch.long)
        conf = conf.detach().to(device=dev, dtype=torch.float32)
        mask = (mask.detach().to(device=dev) != 0) & torch.isfinite(conf)  # NaN/inf never enter
        cand_conf = torch.where(mask, conf, torch.full_like(conf, EMPTY_CONF))

        # 1. Rank of each candidate within its class, by descending confidence (stable:
        #    earlier in the batch first among equals). Two stable sorts = sort on (label, -conf).
        order = torch.sort(cand_conf, descending=True, stable=True).indices
        order = order[torch.sort(labels[order], stable=True).indices]
        counts = torch.zeros(C, device=dev, dtype=torch.long)
        counts.scatter_add_(0, labels, torch.ones_like(labels))
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(labels)
        rank.scatter_(0, order, torch.arange(n_cand, device=dev) - starts[labels[order]])

        # 2. Position of each candidate in its class's merged order (stored entries first
        #    among equals): #(stored >= c_i) + rank_i. It enters iff that position is < K.
        #    Masked-out candidates (-inf) have K stored entries >= them and never enter.
        rows = self.conf[labels]  # (N, K) stored confidences of each candidate's class
        n_ge = (rows >= cand_conf.unsqueeze(1)).sum(dim=1)
        enters = (n_ge + rank < K) & mask

        # 3. The entering candidates of a class are its ranks 0..n_c-1; the one of rank r
        #    takes the slot of the r-th lowest stored entry (the n_c lowest are exactly the
        #    ones that lose their seat; among equal stored confidences the lower slot index
        #    goes first, so empty slots fill from slot 0).
        #    Sort whichever is smaller, the (C, K) bank or the (N, K) rows (same result).
        r = rank.clamp(max=K - 1)
        if C <= n_cand:
            slot = torch.sort(self.conf, dim=1, stable=True).indices[labels, r]
        else:
            asc = torch.sort(rows, dim=1, stable=True).indices  # (N, K)
            slot = asc.gather(1, r.unsqueeze(1)).squeeze(1)
        dest = torch.where(enters, labels * K + slot, torch.full_like(slot, C * K))

        # 4. One static-shape write per candidate (non-entering ones hit the scratch slot).
        self._feat_buf.index_put_((dest,), feats)
        self._conf_buf.index_put_((dest,), cand_conf)
        self._filled_buf.index_put_((dest,), torch.ones_like(enters))
        self._fresh_buf.index_put_((dest,), torch.ones_like(enters))

    @torch.no_grad()
    def decay(self) -> None:
        """Confidence decay (docs/method.md, "SeMi: memory bank", confidence decay).

        Every filled slot that was not written since the previous decay has its confidence
        multiplied by ``beta``; then all ``fresh`` flags are cleared. The caller decides when
        (every ``decay_step`` iterations).
        """
        stale = self.filled & ~self.fresh
        c = self.conf
        c.copy_(torch.where(stale, c * self.decay_beta, c))
        self._fresh_buf.zero_()

    @torch.no_grad()
    def prototypes(self) -> Tuple[Tensor, Tensor]:
        """Class prototypes ``mu_c`` (docs/method.md, "SeMi: memory bank", prototypes: filled slots only).

        Returns:
            ``(protos, has_proto)``: ``protos`` ``(C, d)`` is the mean of each class's filled
            slots only (a class with no entry gets a zero row), ``has_proto`` ``(C,)`` bool
            tells which classes have at least one entry.
        """
        w = self.filled.to(self.dtype)  # (C, K)
        sums = torch.bmm(w.unsqueeze(1), self.feats).squeeze(1)  # (C, d)
        cnt = w.sum(dim=1, keepdim=True)
        protos = sums / cnt.clamp(min=1.0)
        return protos, cnt.squeeze(1) > 0

    def fill(self) -> Tensor:
        """Number of filled slots per class, ``(C,)`` long."""
        return self.filled.sum(dim=1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Tensor]:
        """Bank state (features, confidences, filled and written-since-decay flags) as clones."""
        return {
            "feats": self.feats.clone(),
            "conf": self.conf.clone(),
            "filled": self.filled.clone(),
            "fresh": self.fresh.clone(),
        }

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        """Load a :meth:`state_dict`; tensors are moved to the bank's device and dtype."""
        C, K, d = self.num_classes, self.size, self.feat_dim
        expected = {"feats": (C, K, d), "conf": (C, K), "filled": (C, K), "fresh": (C, K)}
        for key, shape in expected.items():
            if key not in state:
                raise KeyError(f"missing key {key!r} in memory bank state")
            if tuple(state[key].shape) != shape:
                raise ValueError(f"{key}: expected shape {shape}, got {tuple(state[key].shape)}")
        filled = state["filled"].to(device=self.device, dtype=torch.bool)
        self.filled.copy_(filled)
        self.fresh.copy_(state["fresh"].to(device=self.device, dtype=torch.bool) & filled)
        conf = state["conf"].to(device=self.device, dtype=torch.float32)
        self.conf.copy_(torch.where(filled, conf, torch.full_like(conf, EMPTY_CONF)))
        feats = state["feats"].to(device=self.device, dtype=self.dtype)
        self.feats.copy_(feats * filled.unsqueeze(-1).to(self.dtype))  # empty slots stay zero

    def to(self, device: Device) -> "ConfidenceDecayMemoryBank":
        """Move the bank to ``device`` (in place); returns ``self``."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        self._feat_buf = self._feat_buf.to(device)
        self._conf_buf = self._conf_buf.to(device)
        self._filled_buf = self._filled_buf.to(device)
        self._fresh_buf = self._fresh_buf.to(device)
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, feat_dim={self.feat_dim}, "
            f"size={self.size}, decay_beta={self.decay_beta}, device={self.device}, "
            f"dtype={self.dtype})"
        )


@torch.no_grad()
def gather_candidates(
    feats: Tensor, labels: Tensor, conf: Tensor, mask: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gather the bank candidates of all DDP ranks (docs/method.md, "SeMi: memory bank", under DDP).

    When ``torch.distributed`` is initialised with ``world_size > 1``, returns the
    concatenation over ranks (rank 0 first) of each input, so that every rank pushes the same
    candidates in the same order and the banks stay identical; otherwise returns the inputs
    (detached) unchanged. Every rank must pass the same ``N`` (true for USB's ``drop_last``
    loaders). The mask keeps its dtype (a bool mask travels as ``uint8``).
    """
    return tuple(all_gather_cat(t.detach()) for t in (feats, labels, conf, mask))
