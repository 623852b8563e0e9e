"""Variants of one method: runs of the same method whose configurations differ (say SeMi at
``p_cutoff`` 0.7 beside SeMi at 0.95, or SeMi with a part switched off) are reported as
separate rows, each named by what sets it apart.

For each method, over all its runs (every setting), a key's *usual* value is the one most of
the runs have. A run's label is the method followed by the keys in which it differs from the
usual values, ``fixmatch+semi (p_cutoff 0.7)``; the runs with the usual values keep the plain
method name. A key without a majority (two values, as many runs each) names every run. The
setting's own keys (dataset, sizes, ratios), the seed, names, paths and runtime keys
(:data:`semi_usb.config.RUNTIME_KEYS`) never make a variant.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Dict, List, Sequence

from .protocol import IDENTITY_KEYS, protocol_values
from .runs import Run

#: Keys that define the setting (its name shows them) rather than the method's variant.
SETTING_KEYS = frozenset({"dataset", "data_dir", "num_classes", "num_labels", "lb_imb_ratio",
                          "ulb_num_labels", "ulb_imb_ratio", "ulb_distribution", "img_size"})


def _comparable_config(run: Run) -> Dict[str, str]:
    from semi_usb.config import RUNTIME_KEYS

    config = {**run.config, **protocol_values(run)}
    skip = RUNTIME_KEYS | IDENTITY_KEYS | SETTING_KEYS
    return {k: str(v) for k, v in config.items() if k not in skip}


def variant_labels(runs: Sequence[Run]) -> List[str]:
    """The label of each run (in order): its method, plus ``(key value, ...)`` for the keys
    in which its configuration differs from the usual values of its method's runs."""
    configs = [_comparable_config(r) for r in runs]
    labels = [r.method for r in runs]
    by_method: Dict[str, List[int]] = {}
    for i, run in enumerate(runs):
        by_method.setdefault(run.method, []).append(i)
    for method, idx in by_method.items():
        keys = sorted({k for i in idx for k in configs[i]})
        usual: Dict[str, Any] = {}
        for key in keys:
            counts = Counter(configs[i].get(key) for i in idx).most_common()
            if len(counts) > 1:
                top = counts[0][1]
                usual[key] = counts[0][0] if sum(c == top for _, c in counts) == 1 else None
        for i in idx:
            diff = [f"{k} {configs[i].get(k)}" for k in usual if configs[i].get(k) != usual[k]]
            if diff:
                labels[i] = f"{method} ({', '.join(diff)})"
    return labels


def label_variants(runs: Sequence[Run]) -> List[Run]:
    """``runs`` with each ``method`` replaced by its :func:`variant_labels` label."""
    return [replace(run, method=label) for run, label in zip(runs, variant_labels(runs))]
