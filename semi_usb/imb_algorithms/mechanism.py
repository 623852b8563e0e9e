"""What the parts of ACR and SeMi did during a run: running means of the mechanism metrics
(docs/method.md, "Mechanism metrics") for ``summary.json``'s ``mechanism`` section.

The metrics themselves are computed in the logged steps (``num_log_iter``) as device tensors
and logged under ``train/<name>`` (log.txt, TensorBoard); :class:`MechanismLog` adds them up
on the device, so no step reads them on the host. It is saved in the checkpoint, so a
resumed run's means cover the whole run. No semilearn import here.
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import Tensor

#: The metrics, by log key ``train/<name>`` (docs/method.md, "Mechanism metrics").
MECHANISM_KEYS = ("tau1", "bank_fill", "plce_changed", "plce_added", "plce_lambda_max", "oheml_scale",
                  "oheml_weight_mean", "oheml_weight_std", "ealign_share", "ealign_frac")


class MechanismLog:
    """Sums, counts and last values of the mechanism metrics logged from iteration
    ``from_it`` on (SeMi: the end of its warm-up, when PLCE, OHEML and Embedding Align start)."""

    def __init__(self, from_it: int = 0) -> None:
        self.from_it = int(from_it)
        self.sums: Dict[str, Tensor] = {}
        self.counts: Dict[str, int] = {}
        self.last: Dict[str, Tensor] = {}

    def add(self, it: int, log_dict: Mapping) -> None:
        """Add the metrics present in ``log_dict`` (keys ``train/<name>``) of iteration ``it``."""
        if it < self.from_it:
            return
        for name in MECHANISM_KEYS:
            value = log_dict.get("train/" + name)
            if value is None:
                continue
            value = torch.as_tensor(value).detach().float()
            total = self.sums.get(name)
            self.sums[name] = value if total is None else total.to(value.device) + value
            self.counts[name] = self.counts.get(name, 0) + 1
            self.last[name] = value

    def summary(self) -> dict:
        """``{"from_it", "logged_steps", "mean": {name: float}, "last": {name: float}}`` (reads
        the device once, at the end of training)."""
        return {"from_it": self.from_it, "logged_steps": max(self.counts.values(), default=0),
                "mean": {k: float(self.sums[k]) / self.counts[k] for k in MECHANISM_KEYS if k in self.sums},
                "last": {k: float(self.last[k]) for k in MECHANISM_KEYS if k in self.last}}

    def state_dict(self) -> dict:
        return {"from_it": self.from_it, "sums": {k: v.clone() for k, v in self.sums.items()},
                "counts": dict(self.counts), "last": {k: v.clone() for k, v in self.last.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        self.from_it = int(state["from_it"])
        self.sums = {k: v.clone() for k, v in state["sums"].items()}
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.last = {k: v.clone() for k, v in state["last"].items()}
