"""Method state of ACR and SeMi: one protocol, the DDP reductions, saving and loading.

The state objects (ACR's :class:`~semi_usb.imb_algorithms.acr.distribution_estimate.Tau1Estimator`,
SeMi's memory bank, pseudo-label histogram and Embedding Align centre) live outside the
model, so USB neither moves nor saves them. Each has

* ``state_dict()``: its tensors (as copies), what ``load_state_dict`` takes back;
* ``load_state_dict(state)``: restore them, on the object's own device;
* ``to(device)``: move them in place, returning the object.

An algorithm names its state objects in a class attribute ``state_attributes``, shaped like
the checkpoint entries (checkpoint key -> attribute name, or -> a mapping of the same kind
for a nested entry), and saves, loads and moves them with :func:`save_states`,
:func:`load_states` and :func:`move_states`.

Under DDP every rank must hold the same state. The reductions below are the only places
that talk to ``torch.distributed``; without an initialised process group of more than one
rank each returns its input unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Union

import torch
import torch.distributed as dist
from torch import Tensor

Device = Union[str, torch.device, None]


class MethodState(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...

    def to(self, device: Device) -> "MethodState": ...


# ------------------------------------------------------------------------------ DDP
def world_size() -> int:
    """Number of DDP ranks (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum of ``t`` over all ranks (a new tensor; ``t`` itself without DDP)."""
    if world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def all_reduce_mean(t: Tensor) -> Tensor:
    """The mean of ``t`` over all ranks (``t`` itself without DDP)."""
    n = world_size()
    return t if n == 1 else all_reduce_sum(t) / n


def all_gather_cat(t: Tensor) -> Tensor:
    """The ranks' ``t`` concatenated along dim 0, rank 0 first (``t`` itself without DDP).
    Every rank must pass the same shape. A bool tensor travels as ``uint8`` and comes back bool."""
    n = world_size()
    if n == 1:
        return t
    sent = (t.to(torch.uint8) if t.dtype == torch.bool else t).contiguous()
    parts = [torch.empty_like(sent) for _ in range(n)]
    dist.all_gather(parts, sent)
    return torch.cat(parts, dim=0).to(t.dtype)


# ------------------------------------------------------------------------------ algorithm state
def save_states(algorithm, layout: Mapping) -> dict:
    """The checkpoint entries of ``layout``: each attribute name replaced by that object's
    ``state_dict()``."""
    return {key: save_states(algorithm, attr) if isinstance(attr, Mapping) else getattr(algorithm, attr).state_dict()
            for key, attr in layout.items()}


def load_states(algorithm, layout: Mapping, checkpoint: Mapping) -> None:
    """Load each state object of ``layout`` from ``checkpoint`` (a missing key raises KeyError)."""
    for key, attr in layout.items():
        if isinstance(attr, Mapping):
            load_states(algorithm, attr, checkpoint[key])
        else:
            getattr(algorithm, attr).load_state_dict(checkpoint[key])


def move_states(algorithm, layout: Mapping, device: Device) -> None:
    """Move each state object of ``layout`` to ``device``."""
    for attr in layout.values():
        if isinstance(attr, Mapping):
            move_states(algorithm, attr, device)
        else:
            getattr(algorithm, attr).to(device)
